// How the CPU kernels split k vectors of length n over the threads, and their float64 dot
// product. Determinism: chunk and task boundaries depend on (n, rows, dtype) only, never on the
// thread count, and per-task partial sums are added in task order.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "clones.h"

namespace fastlanczos {
namespace {  // internal linkage: each kernel file gets its own (cloned) copies

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

// How the n entries of a vector are cut: chunks whose `rows` rows of V fit a quarter of L2,
// grouped into tasks handed to the threads.
struct Layout {
  int64_t rows, chunk, task, ntask;
  Layout(int64_t n, int64_t rows_, int64_t elem_bytes) : rows(rows_) {
    chunk = std::clamp<int64_t>(kChunkBytes / (rows * elem_bytes), 256, 8192) / 64 * 64;
    // A task is a whole number of chunks, at most ~kTaskElems elements, but small enough that
    // a single vector (k = 1) splits into kTasksPerVector tasks: torch's matrix-vector
    // products use every core there, and so must this.
    const int64_t most = (kTaskElems + chunk - 1) / chunk * chunk;
    const int64_t even = (n + kTasksPerVector - 1) / kTasksPerVector;
    task = std::clamp<int64_t>((even + chunk - 1) / chunk * chunk, chunk, most);
    ntask = (n + task - 1) / task;
  }
};

// Runs body(b, start, len, part) over every chunk of the vectors listed in cols, grouped in
// tasks; part points at the task's `width` partial sums, which the body accumulates into.
// Only the listed vectors' tasks are handed out, so the cores share whatever work there is
// (with partial reorthogonalization often one vector of k).
template <typename Body>
std::vector<double> over_chunks(int64_t k, int64_t n, const Layout& L, int64_t width,
                                const std::vector<int64_t>& cols, const Body& body) {
  std::vector<double> part(k * L.ntask * width, 0.0);
  const int64_t count = int64_t(cols.size()) * L.ntask;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> buf(L.chunk);
    for (int64_t q = begin; q < end; ++q) {
      const int64_t b = cols[q / L.ntask], idx = b * L.ntask + q % L.ntask;
      const int64_t first = (q % L.ntask) * L.task, last = std::min(first + L.task, n);
      for (int64_t s = first; s < last; s += L.chunk)
        body(b, s, std::min(L.chunk, last - s), buf.data(), part.data() + idx * width);
    }
  });
  return part;
}

// Sums the per-task partials of vector b in task order.
inline void reduce_tasks(const std::vector<double>& part, int64_t b, int64_t ntask, int64_t width,
                  double* out) {
  std::fill(out, out + width, 0.0);
  for (int64_t t = 0; t < ntask; ++t)
    for (int64_t i = 0; i < width; ++i) out[i] += part[(b * ntask + t) * width + i];
}

}  // namespace
}  // namespace fastlanczos
