// Batched tridiagonal eigensolver on the CPU: each task solves its matrices two at a time,
// with the QL arithmetic from tridiag_ql.h shared with the GPU kernel. The time goes to two
// things: the scalar chase of each sweep (latency-bound, hence two matrices side by side) and
// applying its rotations to z (throughput-bound, hence row blocks in registers, several sweeps
// per pass and AVX2 where the CPU has it).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "../checks.h"
#include "../params.h"
#include "../tridiag_ql.h"
#include "clones.h"

namespace fastlanczos {
namespace {

// Sweeps of one block are recorded and applied together, so a block of rows stays in L1
// while all of them pass over it.
constexpr int kSweepsPerBatch = 8;

struct SweepBatch {
  int n = 0;
  QLSweep sw[kSweepsPerBatch];  // sweep i's rotations are at cs + i * m, sn + i * m
};

// Column stride of the CPU's z: a multiple of 8 doubles (64 bytes) whose count of 64-byte
// lines is odd, so that the columns a block of rows walks through map to different cache
// sets (with a stride of m = 2^j they would compete for a few sets of L1 and L2).
int64_t column_stride(int64_t m) {
  const int64_t ld = (m + 7) / 8 * 8;
  return (ld / 8) % 2 ? ld : ld + 8;
}

bool same_block(const QLSweep& a, const QLSweep& b) {
  return a.lo == b.lo && a.hi == b.hi && a.flip == b.flip;
}

// Four rows of z at a time: one AVX register, or two SSE2 registers in the default build.
typedef double Vec4 __attribute__((vector_size(32)));

// Applies sweep sw to rows r..r+N*lanes-1, V being double or Vec4. The entries of the column
// shared by consecutive rotations stay in registers, so each entry of z is loaded and stored
// once per rotation (rotation-by-rotation order needs two of each). Same arithmetic as
// ql_rotate_row. memcpy is an unaligned vector load or store that breaks no aliasing rule.
template <typename V, int N>
__attribute__((always_inline)) inline void rotate_block(double* z, int64_t ld, int r,
                                                        const QLSweep& sw, const double* cs,
                                                        const double* sn) {
  constexpr int L = sizeof(V) / sizeof(double);
  const int64_t step = sw.flip ? ld : -ld;  // from column col(i) to col(i - 1)
  double* zn = z + ql_col(sw, sw.first + 1) * ld + r;
  V carry[N];
  for (int u = 0; u < N; ++u) __builtin_memcpy(&carry[u], zn + u * L, sizeof(V));
  for (int t = 0; t < sw.count; ++t) {
    double* zi = zn + step;
    const double c = cs[t], s = sn[t];
    for (int u = 0; u < N; ++u) {
      V v;
      __builtin_memcpy(&v, zi + u * L, sizeof(V));
      const V w = s * v + c * carry[u];
      __builtin_memcpy(zn + u * L, &w, sizeof(V));
      carry[u] = c * v - s * carry[u];
    }
    zn = zi;
  }
  for (int u = 0; u < N; ++u) __builtin_memcpy(zn + u * L, &carry[u], sizeof(V));
}

template <typename V, int N>
__attribute__((always_inline)) inline void rotate_batch(double* z, int64_t ld, int m, int r,
                                                        const SweepBatch& bt, const double* cs,
                                                        const double* sn) {
  for (int i = 0; i < bt.n; ++i)
    rotate_block<V, N>(z, ld, r, bt.sw[i], cs + i * m, sn + i * m);
}

// All sweeps of the batch share their block, so they act on the same rows lo..hi.
FL_CPU_CLONES void apply_batch(double* z, int64_t ld, int m, const SweepBatch& bt,
                               const double* cs, const double* sn) {
  int r = bt.sw[0].lo;
  const int end = bt.sw[0].hi + 1;
  for (; r + 16 <= end; r += 16) rotate_batch<Vec4, 4>(z, ld, m, r, bt, cs, sn);
  if (r + 8 <= end) rotate_batch<Vec4, 2>(z, ld, m, r, bt, cs, sn), r += 8;
  if (r + 4 <= end) rotate_batch<Vec4, 1>(z, ld, m, r, bt, cs, sn), r += 4;
  if (r + 2 <= end) rotate_batch<double, 2>(z, ld, m, r, bt, cs, sn), r += 2;
  if (r < end) rotate_batch<double, 1>(z, ld, m, r, bt, cs, sn);
}

// One matrix in flight: its QL state, the chase in progress and the sweeps waiting to be
// applied to z. The sweep being chased is recorded in batch slot bt.n of cs / sn.
struct Job {
  int64_t b = -1;  // matrix of the batch; -1 when the slot is idle
  int status = 0;  // 1 while iterating, 0 converged, -1 non-finite input or no convergence
  QLState q;
  QLChase w;
  SweepBatch bt;
  int64_t ld;  // column stride of z
  std::vector<double> z, d, e, cs, sn;  // z is reused by the matrices of a task: it stays cached
  explicit Job(int m)
      : ld(column_stride(m)), z(ld * m), d(m), e(m), cs(m * kSweepsPerBatch),
        sn(m * kSweepsPerBatch) {}
  void apply() { apply_batch(z.data(), ld, static_cast<int>(d.size()), bt, cs.data(), sn.data()); }
};

void start_job(const TridiagParams& p, Job& j, int64_t b) {
  const int m = static_cast<int>(p.m);
  j.b = b;
  j.bt.n = 0;
  std::copy(p.alpha + b * m, p.alpha + (b + 1) * m, j.d.begin());
  std::copy(p.beta + b * (m - 1), p.beta + (b + 1) * (m - 1), j.e.begin());
  j.status = all_finite(j.d.data(), m) && all_finite(j.e.data(), m - 1) ? 1 : -1;
  if (j.status < 0) return;
  std::fill(j.z.begin(), j.z.end(), 0.0);
  for (int i = 0; i < m; ++i) j.z[i * j.ld + i] = 1.0;
  ql_init(j.q, j.d.data(), j.e.data(), m);
}

// Starts the job's next chase; false when it has none (status then says why).
bool begin_chase(Job& j, int m) {
  if (j.status != 1) return false;
  const int status = ql_begin_sweep(j.q, j.w);
  if (status == 1) return true;
  if (j.bt.n > 0) j.apply();
  j.status = status;
  return false;
}

// Runs one rotation of the chase, into the batch's free slot. Inlined, so that the compiler
// can interleave the two chases' instructions.
__attribute__((always_inline)) inline bool chase_step(Job& j, int m) {
  return ql_chase_step(j.q, j.w, j.cs.data() + j.bt.n * m, j.sn.data() + j.bt.n * m);
}

// Adds the finished chase to the batch. Rotations only touch z, so they wait until the batch
// is full or the block changes.
void end_chase(Job& j, int m) {
  QLSweep sw;
  if (!ql_end_sweep(j.q, j.w, sw)) return;
  SweepBatch& bt = j.bt;
  if (bt.n == 0 || same_block(sw, bt.sw[0])) {
    bt.sw[bt.n++] = sw;
    if (bt.n == kSweepsPerBatch) j.apply(), bt.n = 0;
    return;
  }
  j.apply();
  const int64_t at = int64_t(bt.n) * m;  // the new block's first sweep moves to slot 0
  std::copy(j.cs.begin() + at, j.cs.begin() + at + sw.count, j.cs.begin());
  std::copy(j.sn.begin() + at, j.sn.begin() + at + sw.count, j.sn.begin());
  bt.sw[0] = sw;
  bt.n = 1;
}

void finish_job(const TridiagParams& p, Job& j, std::vector<int>& perm) {
  const int m = static_cast<int>(p.m);
  double* evals = p.evals + j.b * m;
  double* evecs = p.evecs + j.b * m * m;
  j.b = -1;
  if (j.status < 0) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::fill(evals, evals + m, nan);
    std::fill(evecs, evecs + m * m, nan);
    return;
  }
  const std::vector<double>& d = j.d;
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int c) { return d[a] < d[c]; });
  for (int c = 0; c < m; ++c) evals[c] = d[perm[c]];
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) evecs[r * m + c] = j.z[perm[c] * j.ld + r];
}

// Solves matrices begin..end-1, two at a time: a chase is a chain of dependent divisions and
// square roots, so two independent ones run in about the time of one.
void solve_range(const TridiagParams& p, int64_t begin, int64_t end) {
  const int m = static_cast<int>(p.m);
  Job jobs[2] = {Job(m), Job(m)};
  std::vector<int> perm(m);
  int64_t next = begin;
  for (;;) {
    for (Job& j : jobs) {
      for (;;) {  // refill the slot; a matrix with non-finite input finishes at once
        if (j.b >= 0 && j.status != 1) finish_job(p, j, perm);
        if (j.b >= 0 || next >= end) break;
        start_job(p, j, next++);
      }
    }
    if (jobs[0].b < 0 && jobs[1].b < 0) return;
    bool a = begin_chase(jobs[0], m), b = begin_chase(jobs[1], m);
    const bool a_on = a, b_on = b;
    while (a && b) {
      a = chase_step(jobs[0], m);
      b = chase_step(jobs[1], m);
    }
    while (a) a = chase_step(jobs[0], m);
    while (b) b = chase_step(jobs[1], m);
    if (a_on) end_chase(jobs[0], m);
    if (b_on) end_chase(jobs[1], m);
  }
}

std::tuple<at::Tensor, at::Tensor> tridiag_eigh_cpu(const at::Tensor& alpha,
                                                    const at::Tensor& beta) {
  check_tridiag_inputs(alpha, beta);
  const at::Tensor a = alpha.contiguous(), bt = beta.contiguous();
  const int64_t k = a.size(0), m = a.size(1);
  at::Tensor evals = at::empty({k, m}, a.options());
  at::Tensor evecs = at::empty({k, m, m}, a.options());
  // No work tensor: each task keeps its z in a buffer it reuses.
  TridiagParams p{a.data_ptr<double>(), bt.data_ptr<double>(), evals.data_ptr<double>(),
                  evecs.data_ptr<double>(), nullptr, k, m};
  // A matrix costs O(m^3); keep tasks of at least ~1e5 flops so threads are worth waking.
  const int64_t grain = std::max<int64_t>(1, 100000 / (m * m * m + 1));
  at::parallel_for(0, k, grain, [&](int64_t begin, int64_t end) { solve_range(p, begin, end); });
  return {evals, evecs};
}

}  // namespace
}  // namespace fastlanczos

TORCH_LIBRARY_IMPL(fastlanczos, CPU, m) {
  m.impl("tridiag_eigh", &fastlanczos::tridiag_eigh_cpu);
}
