// The GPU's tridiag_eigh program for one matrix, written for a team of threads that share d,
// e, the recorded sweep and the eigenvector matrix z. On the GPU the team is a thread block
// (cuda/tridiag_eigh_cuda.cu); tests/team_serial.cpp runs the same code with a team of one
// CPU thread, so the CPU-only CI executes every line the GPU kernel executes.
//
// Thread 0 runs the scalar QL recurrence (ql_next) and records each sweep's rotations; then
// every thread applies them to its rows of z (ql_rotate_row). Two barriers per sweep.
#pragma once
#include <cmath>
#include <cstdint>

#include "tridiag_ql.h"

namespace fastlanczos {

// Memory the team shares: on the GPU, shared memory; d, e, cs and sn hold m doubles each,
// perm m ints.
struct TeamScratch {
  double* d;
  double* e;
  double* cs;
  double* sn;
  int* perm;
  QLSweep* sweep;
  int* status;
};

// One matrix: alpha (m), beta (m - 1) in; z (m x m, column-contiguous) is scratch; evals (m)
// ascending and evecs (m x m, row-major, column i for evals[i]) out, all NaN when the input
// is not finite or QL does not converge. Team: rank(), size(), sync() (a barrier).
template <typename Team>
FL_HD void tridiag_eigh_team(const Team& team, const TeamScratch& s, const double* alpha,
                             const double* beta, int m, double* z, double* evals, double* evecs) {
  const int t = team.rank(), threads = team.size();
  const int64_t mm = int64_t(m) * m;
  for (int i = t; i < m; i += threads) {
    s.d[i] = alpha[i];
    s.e[i] = i < m - 1 ? beta[i] : 0.0;
  }
  for (int64_t idx = t; idx < mm; idx += threads) z[idx] = (idx / m == idx % m) ? 1.0 : 0.0;
  team.sync();

  QLState q;  // meaningful in thread 0 only
  if (t == 0) {
    *s.status = (all_finite(s.d, m) && all_finite(s.e, m - 1)) ? 1 : -1;
    if (*s.status == 1) ql_init(q, s.d, s.e, m);
  }
  team.sync();
  // Every thread reads the shared status between the same two barriers, and thread 0 writes
  // it only after a barrier that follows those reads: otherwise a fast thread 0 could finish
  // the next ql_next before a slow warp has read the previous status, and the warps would
  // leave the loop at different sweeps.
  int status = *s.status;
  while (status == 1) {
    team.sync();  // the previous sweep's rotations are done: cs, sn, sweep and status are free
    if (t == 0) *s.status = ql_next(q, s.cs, s.sn, *s.sweep);
    team.sync();
    status = *s.status;
    if (status != 1) break;
    for (int r = s.sweep->lo + t; r <= s.sweep->hi; r += threads)
      ql_rotate_row(z, m, r, *s.sweep, s.cs, s.sn);
  }
  if (status < 0) {  // the caller sees NaN and raises; nothing is read back here
    for (int i = t; i < m; i += threads) evals[i] = NAN;
    for (int64_t idx = t; idx < mm; idx += threads) evecs[idx] = NAN;
    return;
  }
  for (int c = t; c < m; c += threads) s.perm[ascending_rank(s.d, m, c)] = c;
  team.sync();
  for (int i = t; i < m; i += threads) evals[i] = s.d[s.perm[i]];
  // Writes are coalesced along the output row; the gather from z is the transpose.
  for (int64_t idx = t; idx < mm; idx += threads)
    evecs[idx] = z[int64_t(s.perm[idx % m]) * m + idx / m];
}

}  // namespace fastlanczos
