"""How large a Nystrom sketch pays: predicted Lanczos steps on a model of the spectrum.

Lanczos spends about one step per well-separated outlier eigenvalue and sqrt(kappa) log(1/tol)
steps on a bulk, so what a rank-r preconditioner saves depends on how the top of the
spectrum is spread, which the sketch itself shows. The model: the sketch's eigenvalues (plus
an extrapolation of their decay for the next, unseen block), over a bulk of 64 values
spread geometrically from the last known eigenvalue down to the floor. The same bulk appears
in every candidate, so the differences between candidates are what the top costs. Steps are
counted by a plain Lanczos on that small diagonal model (a few hundred values, float64 on
the CPU, no product with the operator), against the model's exact answer.
"""

import torch

BULK = 64


def extrapolate(lam, count):
    """`count` more eigenvalues continuing the geometric decay of the sketch's last half."""
    r = lam.numel()
    half = max(r // 2, 1)
    first, last = lam[r - half - 1] if r > half else lam[0], lam[-1]
    if last <= 0 or first <= 0:
        return torch.zeros(count, dtype=lam.dtype, device=lam.device)
    rate = (last / first) ** (1.0 / half)
    return last * rate ** torch.arange(1, count + 1, dtype=lam.dtype, device=lam.device)


def predicted_steps(top, mu, captured, tol, bulk_floor):
    """Steps to tol for f = x^{-1/2} on the model: top (descending eigenvalues of A), the
    leading `captured` ones mapped to 1 by the preconditioner, the rest divided by mu, over a
    bulk from top[-1] down to bulk_floor (>= mu when there is a prior floor)."""
    top = top.double().cpu()
    lo, hi = max(float(bulk_floor), 1e-300), max(float(top[-1]), float(bulk_floor))
    bulk = torch.logspace(torch.log10(torch.tensor(hi)), torch.log10(torch.tensor(lo)), BULK,
                          dtype=torch.float64)
    d = torch.cat([torch.ones(captured, dtype=torch.float64), top[captured:] / mu, bulk / mu])
    d = d.clamp_min(d.max() * 1e-14)  # model, not data: keep it well posed
    return model_steps(d, tol)


def model_steps(d, tol, every=4):
    """Smallest j (checked every `every` steps) with ||x_j - d^{-1/2} z|| <= tol ||d^{-1/2} z||
    for Lanczos on diag(d) from z = ones, x_j = ||z|| V_j T_j^{-1/2} e_1. Reorthogonalized
    against the whole basis: the model is small, and its answer should not depend on
    rounding. About 0.1 ms a step: this runs before the real run, so it must stay cheap."""
    n = d.numel()
    z = torch.ones(n, dtype=torch.float64) / n ** 0.5
    exact = d.rsqrt() * z
    goal = tol * torch.linalg.vector_norm(exact)
    basis = torch.zeros(n, n, dtype=torch.float64)
    basis[0] = z
    t = torch.zeros(n, n, dtype=torch.float64)  # T, filled as it grows
    for j in range(n):
        w = d * basis[j]
        h = basis[: j + 1] @ w
        w -= basis[: j + 1].T @ h
        t[j, j] = h[j]
        b = torch.linalg.vector_norm(w)
        last = j + 1 == n or b < 1e-12
        if (j + 1) % every == 0 or last:
            theta, s = torch.linalg.eigh(t[: j + 1, : j + 1])
            x = basis[: j + 1].T @ (s @ (theta.rsqrt() * s[0]))
            if last or torch.linalg.vector_norm(x - exact) <= goal:
                return j + 1
        t[j, j + 1] = t[j + 1, j] = b
        basis[j + 1] = w / b
    return n
