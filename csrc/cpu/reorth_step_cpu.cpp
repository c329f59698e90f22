// One CGS2 reorthogonalization step on the CPU, fused so the basis is streamed from memory
// three times instead of four (see reorth.py for the semantics, DESIGN.md for why it matters):
//   pass 1: h1 = V w
//   pass 2: per cache-sized chunk of n, w -= V^T h1, then h2 += V_chunk w_chunk while the
//           chunk of V is still in L2
//   pass 3: w -= V^T h2 and ||w||^2
// then basis[j + 1] = w / beta (one vector). Dot products accumulate in float64 even for
// float32 vectors: alpha and beta feed the float64 tridiagonal problem, and the Ritz values
// are only as good as them.
// Determinism: see chunked.h.
// reorth_step_masked runs the same passes for a per-vector count of Gram-Schmidt passes.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "../checks.h"
#include "../params.h"
#include "chunked.h"
#include "clones.h"

namespace fastlanczos {
namespace {

// h[i] += V_i . x for rows i < rows of a chunk (row stride n). Four rows share each pass over
// x, so x is loaded once per four multiply-adds: one row at a time, the loads of x and the
// one-row-at-a-time loop overhead made the kernel slower than BLAS's matrix-vector product.
// Eight lanes per row, the rows' loop outside the lanes' loop: gcc then keeps each row's
// lanes in two AVX2 registers (the 4 x 4 layout this replaces ran at 9-10 GB/s on one core,
// this at 14-19, the speed of a plain sum over the same strided rows). The next four rows'
// streams start cold, so their lines are prefetched while these four are read (14.6 -> 19-20
// GB/s on one core at a 2000-element chunk, measured outside the kernel).
template <typename T, typename U>
FL_CPU_CLONES void dot_rows(const T* v, int64_t n, const U* x, int64_t rows, int64_t len, double* h) {
  constexpr int kRows = 4, kL = 8;
  int64_t i = 0;
  for (; i + kRows <= rows; i += kRows) {
    double acc[kRows][kL] = {};
    const bool next = i + 2 * kRows <= rows;
    int64_t t = 0;
    for (; t + kL <= len; t += kL) {
      if (next && t % (64 / sizeof(T)) == 0)  // one 64-byte line of each of the next rows
        for (int r = 0; r < kRows; ++r) __builtin_prefetch(v + (i + kRows + r) * n + t, 0, 1);
      for (int r = 0; r < kRows; ++r)
        for (int u = 0; u < kL; ++u)
          acc[r][u] += static_cast<double>(v[(i + r) * n + t + u]) * static_cast<double>(x[t + u]);
    }
    for (int r = 0; r < kRows; ++r) {
      for (int64_t tt = t; tt < len; ++tt)
        acc[r][0] += static_cast<double>(v[(i + r) * n + tt]) * static_cast<double>(x[tt]);
      double s = 0.0;
      for (int u = 0; u < kL; ++u) s += acc[r][u];
      h[i + r] += s;
    }
  }
  for (; i < rows; ++i) h[i] += dot(v + i * n, x, len);
}

// acc[t] -= sum_i h[i] * V[i][t] over rows 0..rows-1 of a chunk (row stride n). Four rows per
// pass over acc, subtracted one after another in row order, so the rounding is that of the
// row-by-row loop with a quarter of the loads and stores of acc.
template <typename T>
FL_CPU_CLONES void subtract_rows(double* acc, const T* v, int64_t n, const double* h, int64_t rows,
                   int64_t len) {
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {
    const T *v0 = v + i * n, *v1 = v0 + n, *v2 = v1 + n, *v3 = v2 + n;
    const double h0 = h[i], h1 = h[i + 1], h2 = h[i + 2], h3 = h[i + 3];
    for (int64_t t = 0; t < len; ++t)
      acc[t] = acc[t] - h0 * static_cast<double>(v0[t]) - h1 * static_cast<double>(v1[t]) -
               h2 * static_cast<double>(v2[t]) - h3 * static_cast<double>(v3[t]);
  }
  for (; i < rows; ++i) {
    const T* vi = v + i * n;
    const double hi = h[i];
    for (int64_t t = 0; t < len; ++t) acc[t] -= hi * static_cast<double>(vi[t]);
  }
}

// next[t] = w[t] / beta, as w[t] * (1 / beta) in float64 (the order the kernels have always
// used).
template <typename T>
FL_CPU_CLONES void scale_into(T* next, const T* w, double inv, int64_t len) {
  for (int64_t t = 0; t < len; ++t) next[t] = static_cast<T>(static_cast<double>(w[t]) * inv);
}

template <typename T>
void reorth_step_kernel(const ReorthParams<T>& p) {
  const Layout L(p.n, p.j + 1, sizeof(T));
  const int64_t R = L.rows, n = p.n;
  auto V = [&](int64_t b, int64_t s) { return p.basis + b * p.m * n + s; };
  auto W = [&](int64_t b, int64_t s) { return p.w + b * n + s; };
  auto passes = [&](int64_t b) { return p.passes ? std::min(int(p.passes[b]), 2) : 2; };
  std::vector<int64_t> all, once, twice, normed;  // >= 0, >= 1, 2 passes; norm computed here
  for (int64_t b = 0; b < p.k; ++b) {
    all.push_back(b);
    if (passes(b) >= 1 || p.beta_in == nullptr) normed.push_back(b);
    if (passes(b) >= 1) once.push_back(b);
    if (passes(b) >= 2) twice.push_back(b);
  }

  // pass 1: h1 = V w
  auto part = over_chunks(p.k, p.n, L, R, once, [&](int64_t b, int64_t s, int64_t len, double*, double* h) {
    dot_rows(V(b, s), n, W(b, s), R, len, h);
  });
  std::vector<double> h1(p.k * R), h2(p.k * R);
  for (int64_t b = 0; b < p.k; ++b) reduce_tasks(part, b, L.ntask, R, h1.data() + b * R);

  // pass 2 (second Gram-Schmidt pass only): w -= V^T h1, then h2 = V w on the same chunk
  part = over_chunks(p.k, p.n, L, R, twice, [&](int64_t b, int64_t s, int64_t len, double* acc, double* h) {
    T* w = W(b, s);
    for (int64_t t = 0; t < len; ++t) acc[t] = static_cast<double>(w[t]);
    subtract_rows(acc, V(b, s), n, h1.data() + b * R, R, len);
    for (int64_t t = 0; t < len; ++t) w[t] = static_cast<T>(acc[t]);
    dot_rows(V(b, s), n, w, R, len, h);
  });
  for (int64_t b = 0; b < p.k; ++b) reduce_tasks(part, b, L.ntask, R, h2.data() + b * R);

  // pass 3: w -= V^T h_last (h2 after two passes, h1 after one, nothing after none) and
  // ||w||^2 of the values as stored
  const std::vector<double>* last[3] = {nullptr, &h1, &h2};
  part = over_chunks(p.k, p.n, L, 1, normed, [&](int64_t b, int64_t s, int64_t len, double* acc, double* sq) {
    T* w = W(b, s);
    if (passes(b) > 0) {
      for (int64_t t = 0; t < len; ++t) acc[t] = static_cast<double>(w[t]);
      subtract_rows(acc, V(b, s), n, last[passes(b)]->data() + b * R, R, len);
      for (int64_t t = 0; t < len; ++t) w[t] = static_cast<T>(acc[t]);
    }
    sq[0] += dot(w, w, len);
  });
  std::vector<double> inv(p.k);
  for (int64_t b = 0; b < p.k; ++b) {
    double sq;
    reduce_tasks(part, b, L.ntask, 1, &sq);
    const bool given = passes(b) == 0 && p.beta_in != nullptr;
    p.beta[b] = given ? p.beta_in[b] : std::sqrt(sq);
    p.alpha[b] = h1[b * R + p.j] + h2[b * R + p.j];  // zero for the passes not run
    inv[b] = p.beta[b] > 0 ? 1.0 / p.beta[b] : 0.0;
  }

  if (p.j + 1 >= p.m) return;  // no row left to write
  over_chunks(p.k, p.n, L, 0, all, [&](int64_t b, int64_t s, int64_t len, double*, double*) {
    scale_into(V(b, s) + (p.j + 1) * n, W(b, s), inv[b], len);
  });
}

std::tuple<at::Tensor, at::Tensor> reorth_step_cpu(at::Tensor basis, at::Tensor w, int64_t j) {
  check_reorth_inputs(basis, w, j);
  const int64_t k = basis.size(0);
  at::Tensor alpha = at::empty({k}, basis.options().dtype(at::kDouble));
  at::Tensor beta = at::empty({k}, basis.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(basis.scalar_type(), "reorth_step_cpu", [&] {
    reorth_step_kernel(ReorthParams<scalar_t>{
        basis.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), alpha.data_ptr<double>(),
        beta.data_ptr<double>(), k, basis.size(1), basis.size(2), j});
  });
  return {alpha, beta};
}

// Partial reorthogonalization: passes[b] Gram-Schmidt passes for vector b (0, 1 or 2); the
// mask is read here directly, which costs nothing on the CPU. beta_in: see params.h.
std::tuple<at::Tensor, at::Tensor> reorth_step_masked_cpu(at::Tensor basis, at::Tensor w,
                                                          at::Tensor passes, int64_t j,
                                                          const std::optional<at::Tensor>& beta_in) {
  check_reorth_inputs(basis, w, j);
  check_passes(basis, passes);
  check_beta_in(basis, beta_in);
  const int64_t k = basis.size(0);
  at::Tensor alpha = at::empty({k}, basis.options().dtype(at::kDouble));
  at::Tensor beta = at::empty({k}, basis.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(basis.scalar_type(), "reorth_step_masked_cpu", [&] {
    ReorthParams<scalar_t> p{basis.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                             alpha.data_ptr<double>(), beta.data_ptr<double>(), k, basis.size(1),
                             basis.size(2), j};
    p.passes = passes.data_ptr<uint8_t>();
    p.beta_in = beta_in ? beta_in->data_ptr<double>() : nullptr;
    reorth_step_kernel(p);
  });
  return {alpha, beta};
}

}  // namespace
}  // namespace fastlanczos

TORCH_LIBRARY_IMPL(fastlanczos, CPU, m) {
  m.impl("reorth_step", &fastlanczos::reorth_step_cpu);
  m.impl("reorth_step_masked", &fastlanczos::reorth_step_masked_cpu);
}
