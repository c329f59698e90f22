// Batched tridiagonal eigensolver on the CPU: one matrix per task, the QL arithmetic from
// tridiag_ql.h shared with the GPU kernel.
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

namespace fastlanczos {
namespace {

void fill_nan(double* evals, double* evecs, int64_t m) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::fill(evals, evals + m, nan);
  std::fill(evecs, evecs + m * m, nan);
}

// Solves matrix b of the batch; scratch vectors are reused across the matrices of one task.
void solve_one(const TridiagParams& p, int64_t b, std::vector<double>& d, std::vector<double>& e,
               std::vector<double>& cs, std::vector<double>& sn, std::vector<int>& perm) {
  const int m = static_cast<int>(p.m);
  double* evals = p.evals + b * m;
  double* evecs = p.evecs + b * m * m;
  double* z = p.work + b * m * m;
  std::copy(p.alpha + b * m, p.alpha + (b + 1) * m, d.begin());
  std::copy(p.beta + b * (m - 1), p.beta + (b + 1) * (m - 1), e.begin());
  if (!all_finite(d.data(), m) || !all_finite(e.data(), m - 1)) return fill_nan(evals, evecs, m);

  std::fill(z, z + m * m, 0.0);
  for (int i = 0; i < m; ++i) z[i * m + i] = 1.0;
  QLState q;
  ql_init(q, d.data(), e.data(), m);
  QLSweep sw;
  int status;
  while ((status = ql_next(q, cs.data(), sn.data(), sw)) == 1)
    ql_rotate_rows(z, m, sw.lo, sw.hi, sw, cs.data(), sn.data());
  if (status < 0) return fill_nan(evals, evecs, m);

  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int c) { return d[a] < d[c]; });
  for (int c = 0; c < m; ++c) evals[c] = d[perm[c]];
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < m; ++c) evecs[r * m + c] = z[perm[c] * m + r];
}

std::tuple<at::Tensor, at::Tensor> tridiag_eigh_cpu(const at::Tensor& alpha,
                                                    const at::Tensor& beta) {
  check_tridiag_inputs(alpha, beta);
  const at::Tensor a = alpha.contiguous(), bt = beta.contiguous();
  const int64_t k = a.size(0), m = a.size(1);
  at::Tensor evals = at::empty({k, m}, a.options());
  at::Tensor evecs = at::empty({k, m, m}, a.options());
  at::Tensor work = at::empty({k, m, m}, a.options());
  TridiagParams p{a.data_ptr<double>(), bt.data_ptr<double>(), evals.data_ptr<double>(),
                  evecs.data_ptr<double>(), work.data_ptr<double>(), k, m};
  // A matrix costs O(m^3); keep tasks of at least ~1e5 flops so threads are worth waking.
  const int64_t grain = std::max<int64_t>(1, 100000 / (m * m * m + 1));
  at::parallel_for(0, k, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> d(m), e(m), cs(m), sn(m);
    std::vector<int> perm(m);
    for (int64_t b = begin; b < end; ++b) solve_one(p, b, d, e, cs, sn, perm);
  });
  return {evals, evecs};
}

}  // namespace
}  // namespace fastlanczos

TORCH_LIBRARY_IMPL(fastlanczos, CPU, m) {
  m.impl("tridiag_eigh", &fastlanczos::tridiag_eigh_cpu);
}
