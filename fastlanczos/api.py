"""The public entry points: the user's operator and z in, results of z's own type out.

Each call adapts the operator (fastlanczos.operators: callable, dense, SciPy, torch sparse,
CuPy, NumPy) into one checked block product and runs the Krylov engine (fastlanczos.krylov)
on z as a (k, n) block.
"""

from .krylov import FunmInfo, funm_block
from .krylov.lanczos import LanczosResult, lanczos_full, lanczos_partial, lanczos_three_term
from .krylov.validate import check_arguments
from .operators import adapt, as_block_matvec


def funm_apply(hvp, z, f, m, *, tol=None, shift=0.0, reorth="full", return_info=False,
               check_every=4, check=True, check_symmetry=False):
    """f(A + shift I) z for z of shape (n,) or (k, n), A given by hvp (callable or dense matrix).

    f: "inv_sqrt", "sqrt", "inv", "exp", "log", or a callable on a float64 tensor of
    eigenvalues. m: the most Lanczos steps. tol: stop once every column's estimated relative
    error is below tol (checked every few steps, one host sync per check). reorth: "full"
    (CGS2 against the stored basis every step), "partial" (the stored basis, Gram-Schmidt only
    at the steps where Simon's omega recurrence estimates orthogonality lost past sqrt(eps))
    or "none" (three vectors in memory; the basis is
    regenerated in a second pass, so twice the products). check=False skips the final
    validation, so a fixed-m run on a GPU never synchronizes with the host.
    Failures (a non-positive Ritz value, non-finite numbers, an unsolvable tridiagonal)
    spend one more product to test whether the operator is symmetric, and raise
    NotSymmetricError when it is not; check_symmetry=True runs that probe before the run.
    """
    hvp, z, restore = adapt(hvp, z)  # NumPy/SciPy/CuPy in, the same out (info stays torch)
    z2 = check_arguments(z, m, tol, shift, reorth, check_every)
    matvec = as_block_matvec(hvp, z, float(shift))
    x, info = funm_block(matvec, z2, f, m, tol=tol, reorth=reorth, check_every=check_every,
                         check=check, check_symmetry=check_symmetry, single=z.dim() == 1)
    if z.dim() == 1:
        x = x[0]
        info = FunmInfo(*(t[0] for t in info[:-1]), info.products)
    return (restore(x), info) if return_info else restore(x)


def inv_sqrt_apply(hvp, z, m, *, tol=None, shift=0.0, reorth="full", return_info=False,
                   check_every=4, check=True, check_symmetry=False):
    """(A + shift I)^{-1/2} z: with z ~ N(0, I), a sample of N(0, (A + shift I)^{-1})."""
    return funm_apply(hvp, z, "inv_sqrt", m, tol=tol, shift=shift, reorth=reorth,
                      return_info=return_info, check_every=check_every, check=check,
                      check_symmetry=check_symmetry)


def lanczos(hvp, z, m, *, shift=0.0, reorth="full"):
    """The Lanczos basis and tridiagonal of A + shift I from z ((n,) or (k, n)).

    Returns LanczosResult(basis (k, m, n), alpha (k, m), beta (k, m-1), residual (k, n),
    steps (k,)) with A V^T = V^T T + residual e_m^T; the k axis is dropped for 1-D z.
    Columns that reach an invariant subspace stop early (see `steps`)."""
    hvp, z, restore = adapt(hvp, z)  # NumPy/CuPy in: every field comes back as NumPy/CuPy
    z2 = check_arguments(z, m, None, shift, reorth, 1)
    matvec = as_block_matvec(hvp, z, float(shift))
    if reorth == "full":
        result, _ = lanczos_full(matvec, z2, m, None, None)
    elif reorth == "partial":
        result, _ = lanczos_partial(matvec, z2, m, None, None)
    else:
        result, _ = lanczos_three_term(matvec, z2, m, None, None, keep_basis=True)
    result = LanczosResult(*(t[0] for t in result)) if z.dim() == 1 else result
    return LanczosResult(*map(restore, result))
