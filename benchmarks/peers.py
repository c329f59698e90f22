"""The ways to compute A^{-1/2} Z that fastlanczos is compared with, behind one signature.

Every method is `run(op, Z, knob) -> X` with Z, X of shape (k, n) in Z's dtype, where op is an
`Operator` (a block product in torch, plus a dense float64 form for references). Peers are
optional (the `bench` extra): `missing()` names the ones that cannot be imported, and the
callers skip them with that message.

Each method's knob is its own accuracy/cost setting:
  fastlanczos, matfree, paper loop  m, the number of Lanczos steps;
  GPyTorch CIQ                      (Q, tol): contour quadrature points and MINRES tolerance;
  dense eigh                        none (materialize A, eigh, apply).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from report import forced_backend

import fastlanczos as fl


@dataclass
class Operator:
    """A symmetric positive definite operator given by block products V (k, n) -> V A."""

    name: str
    n: int
    block: Callable  # (k, n) tensor in a float dtype -> (k, n) tensor in the same dtype
    dense64: Callable  # () -> (n, n) float64 tensor, the reference (may materialize)
    model: object = None  # for laplace-torch: (model, x, y, prior_precision), or None


class Counter:
    """Wraps a block product and counts calls and columns (single-vector products)."""

    def __init__(self, block):
        self.block, self.calls, self.columns = block, 0, 0

    def __call__(self, V):
        self.calls += 1
        self.columns += V.shape[0] if V.dim() == 2 else 1
        return self.block(V)


# ---------------------------------------------------------------- fastlanczos and dense


def fastlanczos_run(op, Z, m, backend=""):
    """fastlanczos.inv_sqrt_apply at fixed m; backend="torch" forces the pure-torch path."""
    with forced_backend(backend or None):
        return fl.inv_sqrt_apply(op.block, Z, min(m, op.n))


def inv_sqrt_from_eigh(lam, Q, Z):
    """A^{-1/2} Z for rows Z, from A's eigen-decomposition (lam, Q)."""
    return ((Q * lam.rsqrt()) @ (Q.T @ Z.T)).T


def wishart(n, generator):
    """The paper's random SPD test matrix: G G^T / n + 1e-3 I, G standard normal, float64."""
    G = torch.randn(n, n, generator=generator, dtype=torch.float64)
    return G @ G.T / n + 1e-3 * torch.eye(n, dtype=torch.float64)


def dense_eigh_run(op, Z, _knob=None):
    """Materialize A (model operators: n products with identity rows, timed; dense operators:
    the matrix itself), eigh, apply."""
    if op.model is not None:
        A = materialize(op.block, op.n, Z.dtype, Z.device)
    else:
        A = op.dense64().to(Z.device, Z.dtype)
    lam, Q = torch.linalg.eigh(A)
    if lam.min() <= 0:
        raise ArithmeticError("dense eigh: A is not positive definite in this dtype")
    return inv_sqrt_from_eigh(lam, Q, Z)


def materialize(block, n, dtype=torch.float64, device="cpu", chunk=256):
    """A as a dense matrix from block products of identity rows (A is symmetric)."""
    rows = []
    for i in range(0, n, chunk):
        E = torch.zeros(min(chunk, n - i), n, dtype=dtype, device=device)
        E[:, i:i + chunk].fill_diagonal_(1.0)
        rows.append(block(E))
    A = torch.cat(rows)
    return (A + A.T) / 2


# ---------------------------------------------------------------- the paper's approach


def paper_lanczos_run(op, Z, m, orthtol=1e-5):
    """The approach of the paper (section 3), written from its description: a SciPy
    LinearOperator around the torch product and a NumPy Lanczos loop with one host round trip
    per step, one right-hand side at a time. A new vector is reorthogonalized against the whole
    basis when its largest overlap with it exceeds orthtol (the paper's orthtol = 1e-5); the
    small problem is solved with a dense eigh of T."""
    from scipy.sparse.linalg import LinearOperator

    dtype = Z.dtype
    np_dtype = np.float64 if dtype == torch.float64 else np.float32

    def matvec(v):  # NumPy -> torch (-> device) -> NumPy on every product
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=np_dtype)).reshape(1, -1)
        return op.block(t.to(Z.device)).reshape(-1).cpu().numpy()

    A = LinearOperator((op.n, op.n), matvec=matvec, dtype=np_dtype)
    out = [_paper_one(A, z.cpu().numpy(), min(m, op.n), orthtol) for z in Z]
    return torch.from_numpy(np.stack(out)).to(Z.device, dtype)


def _paper_one(A, z, m, orthtol):
    n = z.shape[0]
    V = np.zeros((m, n), dtype=z.dtype)
    alpha, beta = np.zeros(m), np.zeros(m)
    znorm = np.linalg.norm(z)
    V[0] = z / znorm
    steps = m
    for j in range(m):
        w = A.matvec(V[j])
        alpha[j] = float(w @ V[j])
        w = w - alpha[j] * V[j] - (beta[j - 1] * V[j - 1] if j > 0 else 0)
        overlap = V[: j + 1] @ w
        if np.abs(overlap).max() > orthtol * np.linalg.norm(w):
            w -= V[: j + 1].T @ overlap
        beta[j] = np.linalg.norm(w)
        if j + 1 == m or beta[j] <= 1e-12 * abs(alpha[j]):
            steps = j + 1
            break
        V[j + 1] = w / beta[j]
    T = np.diag(alpha[:steps]) + np.diag(beta[: steps - 1], 1) + np.diag(beta[: steps - 1], -1)
    theta, S = np.linalg.eigh(T)
    y = S @ (theta ** -0.5 * S[0])
    return znorm * (V[:steps].T @ y.astype(z.dtype))


# ---------------------------------------------------------------- GPyTorch / linear_operator


def _linear_operator_class():
    from linear_operator.operators import LinearOperator

    class BlockOperator(LinearOperator):
        """A LinearOperator over our block product; only _matmul and _size are needed."""

        def __init__(self, anchor, *, block, n):
            super().__init__(anchor, block=block, n=n)
            self.fn, self.n = block, n

        def _matmul(self, rhs):
            # rhs (..., n, p): columns are vectors; our product takes rows.
            shape = rhs.shape
            R = rhs.reshape(-1, shape[-2], shape[-1]).transpose(-1, -2).reshape(-1, shape[-2])
            out = self.fn(R).reshape(-1, shape[-1], shape[-2]).transpose(-1, -2)
            return out.reshape(shape)

        def _size(self):
            return torch.Size([self.n, self.n])

        def _transpose_nonbatch(self):
            return self

    return BlockOperator


def gpytorch_ciq_run(op, Z, knob):
    """linear_operator's sqrt_inv_matmul: contour integral quadrature (Pleiss et al. 2020)
    with Q shifted solves by multi-shift MINRES. knob = (Q, MINRES tolerance); the MINRES
    iteration cap is raised to n so the tolerance decides."""
    from linear_operator import settings

    q, tol = knob
    anchor = torch.zeros(1, dtype=Z.dtype, device=Z.device)  # carries dtype and device
    A = _linear_operator_class()(anchor, block=op.block, n=op.n)
    with torch.no_grad(), settings.num_contour_quadrature(q), settings.minres_tolerance(tol), \
            settings.max_cg_iterations(op.n):
        return A.sqrt_inv_matmul(Z.T).T


# ---------------------------------------------------------------- matfree (JAX)


_MATFREE = {}


def matfree_run(op, Z, m):
    """matfree's funm_lanczos_sym with full reorthogonalization and a dense eigh of T, vmapped
    over the columns and jit-compiled (compilation happens in the warm-up run). JAX runs on
    the CPU: dense operators are JAX arrays there; model-based ones reach torch (on Z's
    device) through jax.pure_callback."""
    import jax
    import jax.numpy as jnp
    from matfree import decomp, funm

    jax.config.update("jax_enable_x64", True)
    m = min(m, op.n)
    key = (op.name, m, Z.dtype, Z.shape, Z.device)
    if key not in _MATFREE:
        np_dtype = np.float64 if Z.dtype == torch.float64 else np.float32
        if op.model is None:
            A = jnp.asarray(op.dense64().cpu().numpy().astype(np_dtype))

            def matvec(v):
                return A @ v
        else:
            def host(v):
                out = op.block(torch.from_numpy(np.array(v)).reshape(-1, op.n).to(Z.device))
                return out.cpu().numpy().reshape(np.shape(v))

            def matvec(v):
                return jax.pure_callback(host, jax.ShapeDtypeStruct(v.shape, v.dtype), v,
                                         vmap_method="broadcast_all")

        inv_sqrt = funm.dense_funm_sym_eigh(lambda x: x ** -0.5)
        estimate = funm.funm_lanczos_sym(inv_sqrt, decomp.tridiag_sym(m, reortho="full"))
        _MATFREE[key] = jax.jit(jax.vmap(lambda z: estimate(matvec, z)))
    X = _MATFREE[key](jnp.asarray(Z.cpu().numpy())).block_until_ready()
    return torch.from_numpy(np.array(X)).to(Z.device)


# ---------------------------------------------------------------- laplace-torch


def laplace_torch_fit(op):
    """laplace-torch's full-GGN Laplace, fitted: forms the n x n GGN over the data in batches
    of 64 (the whole training set as one batch needed over 24 GB for the digits CNN)."""
    from laplace import Laplace

    model, x, y, prior = op.model
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    la = Laplace(model, "classification", subset_of_weights="all", hessian_structure="full",
                 prior_precision=prior)
    la.fit(loader, progress_bar=False)
    return la


def laplace_torch_sample(la, k):
    """k parameter samples from a fitted full Laplace (Cholesky of the posterior precision)."""
    return la.sample(k)


# ---------------------------------------------------------------- availability

PEERS = {
    "gpytorch CIQ": "linear_operator",
    "matfree (JAX)": "matfree",
    "laplace-torch": "laplace",
}


def missing():
    """{method: reason} for the peers that cannot be imported here."""
    out = {}
    for name, module in PEERS.items():
        try:
            __import__(module)
            if module == "matfree":
                __import__("jax")
        except Exception as exc:  # noqa: BLE001 - any import failure means "skip it"
            out[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return out
