"""One Lanczos step's orthogonalization, written in plain torch ops.

This is the reference every compiled kernel is tested against, and the CPU/GPU fallback.

Semantics (shared with ``torch.ops.fastlanczos.reorth_step``):
  basis (k, m, n): rows 0..j hold the orthonormal Lanczos vectors v_0..v_j of each column.
  w     (k, n):    A v_j on entry.
  Classical Gram-Schmidt applied twice (CGS2, "twice is enough"):
      h1 = V w; w -= V^T h1; h2 = V w; w -= V^T h2
  alpha = h1[j] + h2[j] (the diagonal of T), beta = ||w|| after both passes.
  On return w holds the orthogonalized residual and, when j + 1 < m, basis[:, j + 1] holds
  w / beta (zero where beta == 0). alpha and beta are float64 tensors of shape (k,).
"""

import torch


def cgs2_step_torch(basis: torch.Tensor, w: torch.Tensor, j: int):
    if w.device.type == "cpu":
        # Column by column: CPU bmm of a (k, j+1, n) block with a vector streams V at 3.5 GB/s
        # (float32; 7 for float64) on one thread against 20-24 for the matrix-vector products,
        # whose many partial sums also err 2-3x less in float32 (2 cores, MKL wheel).
        passes = torch.full((w.shape[0],), 2, dtype=torch.uint8)
        return masked_cgs_step_torch(basis, w, passes, j)
    V = basis[:, : j + 1]  # (k, j+1, n): a view, no copy
    h1 = torch.bmm(V, w.unsqueeze(-1))  # (k, j+1, 1)
    w.sub_(torch.bmm(V.transpose(1, 2), h1).squeeze(-1))
    h2 = torch.bmm(V, w.unsqueeze(-1))
    w.sub_(torch.bmm(V.transpose(1, 2), h2).squeeze(-1))
    alpha = (h1[:, j, 0] + h2[:, j, 0]).double()
    beta = torch.linalg.vector_norm(w, dim=1)
    if j + 1 < basis.shape[1]:
        inv = torch.where(beta > 0, 1.0 / beta, torch.zeros_like(beta))
        basis[:, j + 1] = w * inv.unsqueeze(1)
    return alpha, beta.double()


def three_term_step_torch(v: torch.Tensor, v_prev: torch.Tensor, beta_prev: torch.Tensor,
                          w: torch.Tensor, work: torch.Tensor | None = None):
    """Plain Lanczos (no reorthogonalization), Paige's ordering. Overwrites w with the residual.

    No (k, n) temporaries: the updates are in-place addcmul_ and the products for the dots
    go to `work` (a (k, n) buffer of w's dtype, made here if None). On the CPU a fresh
    (k, n) temporary of tens of MB is a new mapping whose pages fault in on first touch: at
    k = 8, n = 1.33M float32 each one cost ~40 ms against ~7 ms for the arithmetic.
    sum(1) (pairwise) rather than a BLAS dot: the float32 sdot erred by 3e-4 there."""
    subtract_scaled_(w, beta_prev, v_prev)
    if work is None:
        work = torch.empty_like(w)
    alpha = torch.mul(v, w, out=work).sum(1)
    subtract_scaled_(w, alpha, v)
    beta = torch.linalg.vector_norm(w, dim=1)
    return alpha.double(), beta.double()


def three_term_step_scaled_torch(basis: torch.Tensor, w: torch.Tensor, beta_prev: torch.Tensor,
                                 scale: torch.Tensor, j: int, work: torch.Tensor | None = None):
    """Semantics of ``ops.three_term_step`` (partial reorthogonalization's plain update):
    w = c w (c = scale, powers of two), then three_term_step_torch with v = basis[:, j] and
    v_prev = basis[:, j - 1] (none at j = 0). Returns float64 (alpha, beta, ||c w||)."""
    w.mul_(scale.to(w.dtype).unsqueeze(1))
    wnorm = row_norm(w)
    v = basis[:, j]
    v_prev, beta_prev = (basis[:, j - 1], beta_prev) if j else (v, torch.zeros_like(beta_prev))
    alpha, beta = three_term_step_torch(v, v_prev, beta_prev, w, work)
    return alpha, beta, wnorm


def row_norm(w: torch.Tensor) -> torch.Tensor:
    """(k,) float64 norms of the rows of w. For float32, dtype=float64 would cast w into a
    (k, n) float64 temporary: 88 ms against 5 ms at k = 8, n = 1.33M on the CPU. A float32
    norm overflows only past 1.8e19, with c A v_0 scaled to O(1): an operator float32
    cannot hold anyway."""
    if w.dtype == torch.float32:
        return torch.linalg.vector_norm(w, dim=1).double()
    return torch.linalg.vector_norm(w, dim=1, dtype=torch.float64)


def subtract_scaled_(w: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """w -= s[:, None] * v in place, without a (k, n) temporary (both Lanczos passes use it,
    so the two-pass mode rebuilds the same vectors)."""
    return w.addcmul_(v, s.to(w.dtype).unsqueeze(1), value=-1)


def masked_cgs_step_torch(basis: torch.Tensor, w: torch.Tensor, passes: torch.Tensor, j: int,
                          beta: torch.Tensor | None = None):
    """Partial reorthogonalization's step (semantics of ``reorth_step_masked``): passes[b]
    (uint8, 0, 1 or 2) classical Gram-Schmidt passes of w[b] against rows 0..j, then
    beta = ||w|| and basis[:, j + 1] = w / beta for every column. Returns float64 (h, beta):
    h[b] the v_j components removed over the passes (0 without any), added to alpha.
    beta given ((k,) float64, ||w|| on entry): the columns with 0 passes return it.

    On the CPU the mask is read (free there) and only the listed columns are touched; on
    other devices every column is computed and the mask applied arithmetically, so nothing
    waits for the host."""
    if branch_on_mask(w.device):
        h = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
        for b, count in enumerate(passes.tolist()):
            V = basis[b, : j + 1]
            for _ in range(min(count, 2)):
                c = V @ w[b]
                w[b].addmv_(V.T, c, alpha=-1)  # no (n,) temporary
                h[b] += c[j].double()
    else:
        V = basis[:, : j + 1]
        h = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
        for p in (1, 2):
            on = (passes >= p).to(w.dtype).unsqueeze(1)  # (k, 1)
            c = torch.bmm(V, w.unsqueeze(-1)).squeeze(-1) * on
            w.sub_(torch.bmm(V.transpose(1, 2), c.unsqueeze(-1)).squeeze(-1))
            h += c[:, j].double()
    if beta is None:
        beta = row_norm(w)
    elif branch_on_mask(w.device):  # the norms only of the columns that changed
        beta = beta.clone()
        for b in (passes > 0).nonzero().flatten().tolist():
            beta[b] = row_norm(w[b : b + 1])[0]
    else:
        beta = torch.where(passes == 0, beta, row_norm(w))
    if j + 1 < basis.shape[1]:
        inv = torch.where(beta > 0, 1.0 / beta, torch.zeros_like(beta))
        torch.mul(w, inv.to(w.dtype).unsqueeze(1), out=basis[:, j + 1])
    return h, beta


def branch_on_mask(device: torch.device) -> bool:
    """Whether a step may read a per-column mask on the host (the partial step's passes, the
    done columns to zero): on the CPU it lives there. The host-sync tests patch it to False."""
    return device.type == "cpu"
