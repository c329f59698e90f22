// The GPU's tridiag_eigh program (csrc/tridiag_team.h) run by a team of one CPU thread, for
// the tests (test_ops.py compiles this file with the host compiler and calls it via ctypes):
// on a machine without a GPU it executes every line the CUDA kernel executes, except that
// each loop over rows is walked by one thread instead of a block of them.
#include <cstdint>
#include <vector>

#include "../csrc/tridiag_team.h"

namespace {
struct SerialTeam {
  int rank() const { return 0; }
  int size() const { return 1; }
  void sync() const {}
};
}  // namespace

extern "C" void tridiag_eigh_serial_team(const double* alpha, const double* beta, int64_t k,
                                         int64_t m, double* evals, double* evecs) {
  using namespace fastlanczos;
  std::vector<double> d(m), e(m), cs(m), sn(m), z(m * m);
  std::vector<int> perm(m);
  QLSweep sweep;
  int status = 0;
  const TeamScratch s{d.data(), e.data(), cs.data(), sn.data(), perm.data(), &sweep, &status};
  for (int64_t b = 0; b < k; ++b)
    tridiag_eigh_team(SerialTeam{}, s, alpha + b * m, beta + b * (m - 1), static_cast<int>(m),
                      z.data(), evals + b * m, evecs + b * m * m);
}
