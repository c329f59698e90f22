// One CGS2 reorthogonalization step on the CPU, fused so the basis is streamed from memory
// three times instead of four (see reorth.py for the semantics, DESIGN.md for why it matters):
//   pass 1: h1 = V w
//   pass 2: per cache-sized chunk of n, w -= V^T h1, then h2 += V_chunk w_chunk while the
//           chunk of V is still in L2
//   pass 3: w -= V^T h2 and ||w||^2
// then basis[j + 1] = w / beta (one vector). Dot products accumulate in float64 even for
// float32 vectors: alpha and beta feed the float64 tridiagonal problem, and the Ritz values
// are only as good as them.
// Determinism: chunk and task boundaries depend on (n, j, dtype) only, never on the thread
// count, and the per-task partial sums are added in task order.
// reorth_step_masked runs the same passes for a per-vector count of Gram-Schmidt passes.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../checks.h"
#include "../params.h"
#include "clones.h"

namespace fastlanczos {
namespace {

constexpr int64_t kChunkBytes = 256 * 1024;  // rows 0..j of one chunk of V: a quarter of L2
constexpr int64_t kTaskElems = 65536;        // per-task partials stay small next to V
constexpr int64_t kTasksPerVector = 8;       // where chunks allow: one vector uses every core
constexpr int kLanes = 8;                    // independent accumulators: lets -O3 vectorize

// sum_t x[t] * y[t] in float64 with kLanes interleaved partial sums (fixed order). Cloned
// like the kernels below: with partial reorthogonalization most steps run no pass, and this
// norm and the write of the next vector are then all the kernel does.
template <typename T, typename U>
FL_CPU_CLONES double dot(const T* x, const U* y, int64_t len) {
  double acc[kLanes] = {};
  int64_t t = 0;
  for (; t + kLanes <= len; t += kLanes)
    for (int u = 0; u < kLanes; ++u)
      acc[u] += static_cast<double>(x[t + u]) * static_cast<double>(y[t + u]);
  for (; t < len; ++t) acc[0] += static_cast<double>(x[t]) * static_cast<double>(y[t]);
  double s = 0.0;
  for (int u = 0; u < kLanes; ++u) s += acc[u];
  return s;
}

// h[i] += V_i . x for rows i < rows of a chunk (row stride n). Four rows share each pass over
// x, so x is loaded once per four multiply-adds: one row at a time, the loads of x and the
// one-row-at-a-time loop overhead made the kernel slower than BLAS's matrix-vector product.
template <typename T, typename U>
FL_CPU_CLONES void dot_rows(const T* v, int64_t n, const U* x, int64_t rows, int64_t len, double* h) {
  constexpr int kRows = 4, kL = 4;  // 16 accumulators: fits the 16 SSE2 registers with room
  int64_t i = 0;
  for (; i + kRows <= rows; i += kRows) {
    double acc[kRows][kL] = {};
    int64_t t = 0;
    for (; t + kL <= len; t += kL)
      for (int u = 0; u < kL; ++u) {
        const double xu = static_cast<double>(x[t + u]);
        for (int r = 0; r < kRows; ++r)
          acc[r][u] += static_cast<double>(v[(i + r) * n + t + u]) * xu;
      }
    for (int r = 0; r < kRows; ++r) {
      for (int64_t tt = t; tt < len; ++tt)
        acc[r][0] += static_cast<double>(v[(i + r) * n + tt]) * static_cast<double>(x[tt]);
      h[i + r] += (acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3]);
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
struct Layout {
  int64_t rows, chunk, task, ntask;
  explicit Layout(const ReorthParams<T>& p) {
    rows = p.j + 1;
    chunk = std::clamp<int64_t>(kChunkBytes / (rows * int64_t(sizeof(T))), 256, 8192) / 64 * 64;
    // A task is a whole number of chunks, at most ~kTaskElems elements, but small enough that
    // a single vector (k = 1) splits into kTasksPerVector tasks: torch's matrix-vector
    // products use every core there, and so must this.
    const int64_t most = (kTaskElems + chunk - 1) / chunk * chunk;
    const int64_t even = (p.n + kTasksPerVector - 1) / kTasksPerVector;
    task = std::clamp<int64_t>((even + chunk - 1) / chunk * chunk, chunk, most);
    ntask = (p.n + task - 1) / task;
  }
};

// Runs body(b, start, len, part) over every chunk of the vectors listed in cols, grouped in
// tasks; part points at the task's `width` partial sums, which the body accumulates into.
// Only the listed vectors' tasks are handed out, so the cores share whatever work there is
// (with partial reorthogonalization often one vector of k).
template <typename T, typename Body>
std::vector<double> over_chunks(const ReorthParams<T>& p, const Layout<T>& L, int64_t width,
                                const std::vector<int64_t>& cols, const Body& body) {
  std::vector<double> part(p.k * L.ntask * width, 0.0);
  const int64_t count = int64_t(cols.size()) * L.ntask;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> buf(L.chunk);
    for (int64_t q = begin; q < end; ++q) {
      const int64_t b = cols[q / L.ntask], idx = b * L.ntask + q % L.ntask;
      const int64_t first = (q % L.ntask) * L.task, last = std::min(first + L.task, p.n);
      for (int64_t s = first; s < last; s += L.chunk)
        body(b, s, std::min(L.chunk, last - s), buf.data(), part.data() + idx * width);
    }
  });
  return part;
}

// Sums the per-task partials of vector b in task order.
void reduce_tasks(const std::vector<double>& part, int64_t b, int64_t ntask, int64_t width,
                  double* out) {
  std::fill(out, out + width, 0.0);
  for (int64_t t = 0; t < ntask; ++t)
    for (int64_t i = 0; i < width; ++i) out[i] += part[(b * ntask + t) * width + i];
}

template <typename T>
void reorth_step_kernel(const ReorthParams<T>& p) {
  const Layout<T> L(p);
  const int64_t R = L.rows, n = p.n;
  auto V = [&](int64_t b, int64_t s) { return p.basis + b * p.m * n + s; };
  auto W = [&](int64_t b, int64_t s) { return p.w + b * n + s; };
  auto passes = [&](int64_t b) { return p.passes ? std::min(int(p.passes[b]), 2) : 2; };
  std::vector<int64_t> all, once, twice;  // vectors with >= 0, >= 1, 2 passes
  for (int64_t b = 0; b < p.k; ++b) {
    all.push_back(b);
    if (passes(b) >= 1) once.push_back(b);
    if (passes(b) >= 2) twice.push_back(b);
  }

  // pass 1: h1 = V w
  auto part = over_chunks(p, L, R, once, [&](int64_t b, int64_t s, int64_t len, double*, double* h) {
    dot_rows(V(b, s), n, W(b, s), R, len, h);
  });
  std::vector<double> h1(p.k * R), h2(p.k * R);
  for (int64_t b = 0; b < p.k; ++b) reduce_tasks(part, b, L.ntask, R, h1.data() + b * R);

  // pass 2 (second Gram-Schmidt pass only): w -= V^T h1, then h2 = V w on the same chunk
  part = over_chunks(p, L, R, twice, [&](int64_t b, int64_t s, int64_t len, double* acc, double* h) {
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
  part = over_chunks(p, L, 1, all, [&](int64_t b, int64_t s, int64_t len, double* acc, double* sq) {
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
    p.beta[b] = std::sqrt(sq);
    p.alpha[b] = h1[b * R + p.j] + h2[b * R + p.j];  // zero for the passes not run
    inv[b] = p.beta[b] > 0 ? 1.0 / p.beta[b] : 0.0;
  }

  if (p.j + 1 >= p.m) return;  // no row left to write
  over_chunks(p, L, 0, all, [&](int64_t b, int64_t s, int64_t len, double*, double*) {
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
// mask is read here directly, which costs nothing on the CPU.
std::tuple<at::Tensor, at::Tensor> reorth_step_masked_cpu(at::Tensor basis, at::Tensor w,
                                                          at::Tensor passes, int64_t j) {
  check_reorth_inputs(basis, w, j);
  check_passes(basis, passes);
  const int64_t k = basis.size(0);
  at::Tensor alpha = at::empty({k}, basis.options().dtype(at::kDouble));
  at::Tensor beta = at::empty({k}, basis.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(basis.scalar_type(), "reorth_step_masked_cpu", [&] {
    ReorthParams<scalar_t> p{basis.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                             alpha.data_ptr<double>(), beta.data_ptr<double>(), k, basis.size(1),
                             basis.size(2), j};
    p.passes = passes.data_ptr<uint8_t>();
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
