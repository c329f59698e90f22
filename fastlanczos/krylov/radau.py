"""The Gauss-Radau error estimate of y_j = f(T_j) e_1, given a lower bound mu of the spectrum.

For f(x) = int (x + t)^-1 dnu(t) (inv_sqrt, inv; log and sqrt likewise) the error of
x_j = ||z|| V_j y_j is exactly ||z|| beta_j h_j(A) v_{j+1}, with h_j(l) = sum_i S_ji S_1i
f[theta_i, l] of one sign and decreasing in l (krylov/projected.residual_term). Its norm is
an integral of h_j^2 against the spectral measure of v_{j+1}, which is p_j^2 times that of
v_1 (p_j the characteristic polynomial of T_j); T_j integrates that measure exactly only up
to degree 2j - 1, one short of p_j^2. The Gauss-Radau rule with one node fixed at mu
(Golub 1973; Golub and Meurant, "Matrices, Moments and Quadrature") integrates one degree
more: it is T~, T_j bordered by beta_j and the diagonal entry that makes mu an eigenvalue,
and the estimate is then

    ||f(T~) e_1 - [y_j; 0]|| / ||y_j||,

the distance from y_j to the iterate of a next step whose new Ritz value sits at mu. It needs
no more products and no earlier iterate, so it sees what the moves cannot: where the low end
of the spectrum is not yet found the node at mu carries the error that h_j is largest at
(plateaus), and where it is found the estimate falls with it. With mu <= lambda_min the
rule's remainder has the sign of an upper bound where the measure's mass lies below the Ritz
values, not in general, so it is a near bound, not a proven one. Measured estimate / error
(tests/test_radau.py, benchmarks/stopping_lab.py): 1.0-1.6 on GGNs plus their prior and on
continuous spectra once past the first ~10 steps (up to 2.5 on slow decay, 3-6 in the first
steps); as low as 0.96 over a stretch of slow decay (a Poisson MLP's GGN), 0.89 just above
a prior's cluster with isolated eigenvalues and 0.86 while theta_min converges onto a small
MLP GGN's null space (hence krylov/stopping.RADAU_MARGIN = 1.15); far from convergence
(errors above ~3e-3, before a run reaches its asymptotic rate) as low as 0.58 (hence the
margin rises to 2 there: stopping.with_margin); 0.32-0.8 while theta_min converges onto a
null space at the prior under a gapped tail, lowest one step after a tail cluster is found
(hence stopping.RADAU_DROP; the rest is not covered: benchmarks/bench_null_space_spectra.py);
and ~100x on a spectrum whose isolated
smallest eigenvalue is already found (the node at mu then stands for mass the measure no
longer has: "few outliers").
"""

import torch

from .tridiag import tridiag_eigh_unchecked

# mu is kept this far below theta_min: where theta_min has converged to mu the bordering
# entry is a ratio of two vanishing quantities (S_j1^2 beta_j^2 / (theta_1 - mu)) whose
# rounding (eps theta_max absolute in theta_1) is then larger than the ratio; measured, an
# exact mu stopped a few columns at up to 1.2x tol, and mu 1e-6 below none.
RELATIVE_GAP, ROUNDING_GAP = 1e-6, 1e3

# the named functions of the form above, for which the estimate is derived
STIELTJES_FUNCTIONS = ("inv_sqrt", "inv", "log", "sqrt")


def radau_estimate(fn, alpha, beta, steps, scale, theta, S, last, y, beta_next, bound):
    """(k,) relative Gauss-Radau estimate per column (module doc), float64.

    alpha (k, J), beta (k, J - 1): each column's T padded to J as in solve_projected (steps:
    its real size; scale: its padding value); theta, S, last, y: that solve's Ritz values,
    eigenvectors, their row at the column's last step and f(T) e_1; beta_next (k,): beta_j,
    the coupling to v_{j+1}; bound: mu, a float or (k,) per column. A non-finite beta_j gives
    inf (no stop)."""
    jj = alpha.shape[1]
    dev = alpha.device
    eps = torch.finfo(torch.float64).eps
    real = torch.arange(jj, device=dev) < steps.unsqueeze(1)
    low = torch.where(real, theta, torch.inf).amin(dim=1)  # padding never counts
    top = torch.where(real, theta, -torch.inf).amax(dim=1)
    gap = torch.maximum(RELATIVE_GAP * low.abs(), ROUNDING_GAP * eps * top.abs())
    # filled on the device: a host-to-device copy would synchronize on CUDA
    given = bound if isinstance(bound, torch.Tensor) else torch.full_like(low, float(bound))
    mu = torch.minimum(given, low - gap)
    # (T_j - mu) d = beta_j^2 e_j, and T~'s new diagonal entry is mu + d_j (padding: last = 0)
    border = mu + beta_next ** 2 * (last * last / (theta - mu.unsqueeze(1))).sum(dim=1)
    finite = torch.isfinite(border) & torch.isfinite(beta_next)
    pad = torch.where(scale > 0, scale, 1.0).unsqueeze(1)
    idx = torch.arange(jj + 1, device=dev)
    at = steps.unsqueeze(1)
    a = torch.where(idx < at, torch.nn.functional.pad(alpha, (0, 1)),
                    torch.where((idx == at) & finite.unsqueeze(1), border.unsqueeze(1), pad))
    b_idx = idx[:-1]
    b = torch.where(b_idx < at - 1, torch.nn.functional.pad(beta, (0, 1)),
                    torch.where((b_idx == at - 1) & finite.unsqueeze(1),
                                beta_next.unsqueeze(1), 0.0))
    theta_t, S_t = tridiag_eigh_unchecked(a, b)
    first = S_t[:, 0, :]
    weights = torch.where(first != 0, fn(theta_t) * first, 0.0)
    y_t = torch.where(idx <= at, (S_t @ weights.unsqueeze(2)).squeeze(2), 0.0)
    diff = torch.linalg.vector_norm(y_t - torch.nn.functional.pad(y, (0, 1)), dim=1)
    norm = torch.linalg.vector_norm(y, dim=1)
    estimate = torch.where(norm > 0, diff / norm, diff)
    return torch.where(finite & ~torch.isnan(estimate), estimate, torch.inf)
