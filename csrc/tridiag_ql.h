// Implicit QL with Wilkinson shifts for one symmetric tridiagonal matrix (EISPACK tql2 family),
// written once for the host compiler and nvcc so that the CPU tests exercise the arithmetic
// the GPU runs.
//
// The work is split in two so that the GPU can spread it over threads:
//   ql_next()       the scalar recurrence of one QL sweep (one thread on the GPU). It records
//                   the sweep's Givens rotations (c, s) instead of applying them at once. Its
//                   parts (ql_begin_sweep, ql_chase_step, ql_end_sweep) let the CPU run two
//                   matrices' recurrences side by side;
//   ql_rotate_row() applies a recorded sweep to one row of the eigenvector matrix. Rows are
//                   independent, so the GPU gives one per thread; the CPU kernel applies the
//                   same arithmetic to blocks of rows (tridiag_eigh_cpu.cpp).
// Delaying the rotations this way (as LAPACK's dlasr does) needs a couple of barriers per
// sweep (tridiag_team.h), not one per rotation.
//
// The eigenvector matrix z is stored column-contiguous: z[c * m + r] is row r of column c, so
// consecutive GPU threads (rows) touch consecutive addresses.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FL_HD __host__ __device__
#define FL_UNROLL _Pragma("unroll")
#else
#define FL_HD
#define FL_UNROLL
#endif

namespace fastlanczos {

// Sweep budget of a whole matrix, 30 per row as in LAPACK's steqr; a matrix that needs more
// is reported as not converged. The budget is shared, not per eigenvalue (as in tql2): where
// the Wilkinson shift degenerates (a graded matrix whose leading 2x2 blocks are singular keeps
// its shift at ~0) the first eigenvalue converges linearly, in ~m/2 sweeps, but the sweeps
// that isolate it isolate many others too (m = 512: 310 sweeps for the first eigenvalue, 655
// in all; random matrices take ~2.3 per row).
constexpr int kQLSweepsPerRow = 30;

// Unit roundoff, the tolerance of the deflation tests (LAPACK's dlamch('E')).
constexpr double kQLRoundoff = DBL_EPSILON / 2;
// A block is scaled by a power of two (exact) so that its largest entry lies in
// [kQLScaleMin, kQLScaleMax] before it is iterated on, and its eigenvalues are scaled back
// after (LAPACK's steqr does the same). Above: sqrt(DBL_MAX) / 4, so the square in negligible()
// cannot overflow, even of entries the sweeps grow to ||T||_2 <= 3 max|entry|, and safe_hypot
// mostly keeps its fast path. Below: sqrt(DBL_MIN) / roundoff^2 = 2^-405, so the absolute floor
// of negligible() (it drops |e| <= sqrt(DBL_MIN)) is below roundoff^2 of the block's norm, and
// the values the chase divides by stay clear of the subnormal range: unscaled, W21 times 2^-996
// lost orthogonality (|S^T S - I| ~ 8e-2) to c and s computed from subnormal f and g.
constexpr double kQLScaleMin = 0x1p-405;
constexpr double kQLScaleMax = 0x1p+510;
constexpr int kQLScaleMinExp = -405, kQLScaleMaxExp = 510;

// sqrt(a^2 + b^2) without overflow or harmful underflow. Written out (not ::hypot) so host and
// device evaluate the same formula.
FL_HD inline double safe_hypot(double a, double b) {
  // Usual case: the squares neither overflowed nor lost digits to underflow (subnormal parts
  // are below rounding of the sum), so plain sqrt is accurate. It keeps a division off the
  // QL sweep's critical path.
  const double sum = a * a + b * b;
  if (sum >= DBL_MIN / DBL_EPSILON && sum <= DBL_MAX) return sqrt(sum);
  a = fabs(a);
  b = fabs(b);
  const double big = a > b ? a : b;
  const double small = a > b ? b : a;
  if (big == 0.0) return 0.0;
  const double r = small / big;
  return big * sqrt(1.0 + r * r);
}

// One recorded sweep: rotation t acts on columns col(i) and col(i + 1), i = first - t.
struct QLSweep {
  int first;  // index of the first rotation's upper column, before the column map
  int count;  // number of rotations
  int lo, hi;  // the unreduced block being worked on (rows and columns)
  bool flip;  // the block is stored reversed: column i lives at lo + hi - i
};

FL_HD inline int ql_col(const QLSweep& sw, int i) { return sw.flip ? sw.lo + sw.hi - i : i; }

// Scalar state of the QL iteration on one matrix. d has m entries, e has m entries with
// e[i] coupling d[i] and d[i+1] (e[m-1] is ignored and overwritten).
struct QLState {
  double* d;
  double* e;
  int m;
  int lo, hi;        // current block; lo > hi before the first block
  int l;             // first row of the block whose eigenvalue is not yet isolated
  int sweeps_left;   // of the matrix's budget
  double unscale;    // multiplies the block's eigenvalues once it is done (a power of two)
  bool flip;
};

// Where the matrix splits into blocks, on the unscaled input. Relative to the geometric mean of
// the neighbours, so a graded matrix (entries spanning many orders of magnitude) splits only
// where the coupling is below rounding of both, and small eigenvalues keep their relative
// accuracy; exact zeros always split. Square roots, as the squares may overflow here; the
// arithmetic mean bounds the geometric one, so a coupling above it needs no square root.
FL_HD inline bool splits(const double* d, const double* e, int i) {
  const double a = fabs(d[i]), b = fabs(d[i + 1]), x = fabs(e[i]);
  return x <= kQLRoundoff * (a + b) && x <= kQLRoundoff * (sqrt(a) * sqrt(b));
}

// Deflation inside a block, which is scaled into the safe range: the same relative test in
// squares (no square root on the sweep's path), with an absolute floor. The floor lets the
// iteration finish where entries have fallen into the subnormal range (a graded matrix with
// base 10 and m = 512 reaches 1e-511): the relative test cannot pass there, as its right side
// rounds to zero, and the chase cannot shrink a subnormal e any further.
FL_HD inline bool negligible(const double* d, const double* e, int i) {
  return e[i] * e[i] <= (kQLRoundoff * kQLRoundoff) * fabs(d[i]) * fabs(d[i + 1]) + DBL_MIN;
}

FL_HD inline void reverse_block(double* d, double* e, int lo, int hi) {
  for (int a = lo, b = hi; a < b; ++a, --b) {
    const double t = d[a];
    d[a] = d[b];
    d[b] = t;
  }
  for (int a = lo, b = hi - 1; a < b; ++a, --b) {
    const double t = e[a];
    e[a] = e[b];
    e[b] = t;
  }
}

FL_HD inline void ql_init(QLState& q, double* d, double* e, int m) {
  q.d = d;
  q.e = e;
  q.m = m;
  q.lo = 0;
  q.hi = -1;
  q.l = 0;
  q.sweeps_left = kQLSweepsPerRow * m;
  q.unscale = 1.0;
  q.flip = false;
  e[m - 1] = 0.0;
}

// Scales block lo..hi into [kQLScaleMin, kQLScaleMax] by a power of two and returns the
// factor that undoes it (1 when the block is in range, as nearly every block is).
FL_HD inline double scale_block(double* d, double* e, int lo, int hi) {
  double norm = 0.0;
  for (int i = lo; i <= hi; ++i) norm = fmax(norm, fabs(d[i]));
  for (int i = lo; i < hi; ++i) norm = fmax(norm, fabs(e[i]));
  if (norm == 0.0 || (norm >= kQLScaleMin && norm <= kQLScaleMax)) return 1.0;
  int ex;
  frexp(norm, &ex);  // 2^(ex - 1) <= norm < 2^ex
  // Up: norm * 2^k >= 2^(kQLScaleMinExp); down: norm * 2^k < 2^kQLScaleMaxExp. Both factors
  // and their inverses are normal numbers.
  const int k = norm > kQLScaleMax ? kQLScaleMaxExp - ex : kQLScaleMinExp + 1 - ex;
  const double up = ldexp(1.0, k);
  for (int i = lo; i <= hi; ++i) d[i] *= up;
  for (int i = lo; i < hi; ++i) e[i] *= up;
  return ldexp(1.0, -k);
}

// Starts the next unreduced block after q.hi. Returns false when none is left.
FL_HD inline bool ql_start_block(QLState& q) {
  if (q.flip) reverse_block(q.d, q.e, q.lo, q.hi);  // put the finished block's values back
  if (q.unscale != 1.0)
    for (int i = q.lo; i <= q.hi; ++i) q.d[i] *= q.unscale;
  q.flip = false;
  q.unscale = 1.0;
  q.lo = q.hi + 1;
  if (q.lo >= q.m) return false;
  q.hi = q.lo;
  while (q.hi < q.m - 1 && !splits(q.d, q.e, q.hi)) ++q.hi;
  q.e[q.hi] = 0.0;
  if (q.hi > q.lo) q.unscale = scale_block(q.d, q.e, q.lo, q.hi);
  // QL deflates at the top of the block and is accurate when the matrix grows downwards;
  // when the bottom is smaller, run it on the reversed block (LAPACK's steqr picks QR there).
  if (fabs(q.d[q.hi]) < fabs(q.d[q.lo])) {
    reverse_block(q.d, q.e, q.lo, q.hi);
    q.flip = true;
  }
  q.l = q.lo;
  return true;
}

// A QL sweep in progress: rotation i of the chase from mm - 1 up to l, and its running values.
struct QLChase {
  int l, mm, i, count;
  double s, c, p, g;
  bool early;  // the sweep stopped at an underflow split
};

// Advances to the next sweep and sets up its chase. Returns 1 when a sweep is ready, 0 when all
// eigenvalues are isolated (d holds them, in the column order of z), -1 on no convergence.
FL_HD inline int ql_begin_sweep(QLState& q, QLChase& w) {
  double* d = q.d;
  double* e = q.e;
  for (;;) {
    if (q.l > q.hi) {
      if (!ql_start_block(q)) return 0;
      continue;
    }
    const int l = q.l;
    int mm = l;
    while (mm < q.hi && !negligible(d, e, mm)) ++mm;
    if (mm == l) {  // d[l] is isolated
      ++q.l;
      continue;
    }
    if (--q.sweeps_left < 0) return -1;

    // Wilkinson shift from the leading 2x2 block, then the implicit QL sweep from mm up to l.
    // g stays finite: |e[l]| > sqrt(DBL_MIN) = 2^-511, or negligible() would have split it off,
    // and the entries are below 3 * 2^510, so |g| < 2^1023 and g + copysign(r, g) ~ 2g fits.
    double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
    const double r = safe_hypot(g, 1.0);
    w.g = d[mm] - d[l] + e[l] / (g + copysign(r, g));
    w.s = w.c = 1.0;
    w.p = 0.0;
    w.l = l;
    w.mm = mm;
    w.i = mm - 1;
    w.count = 0;
    w.early = false;
    return 1;
  }
}

// One rotation of the chase, recorded as (cs, sn)[w.count]. Returns whether another follows.
// Kept apart so the CPU can interleave the chases of two matrices: each is a chain of
// dependent divisions and square roots that leaves most of the core idle.
FL_HD inline bool ql_chase_step(QLState& q, QLChase& w, double* cs, double* sn) {
  double* d = q.d;
  double* e = q.e;
  const int i = w.i;
  const double f = w.s * e[i];
  const double b = w.c * e[i];
  double r = safe_hypot(f, w.g);
  e[i + 1] = r;
  if (r == 0.0) {  // underflow: the matrix split at i + 1; restart the search from l
    d[i + 1] -= w.p;
    e[w.mm] = 0.0;
    w.early = true;
    return false;
  }
  const double s = f / r, c = w.g / r;
  const double g = d[i + 1] - w.p;
  r = (d[i] - g) * s + 2.0 * c * b;
  w.p = s * r;
  d[i + 1] = g + w.p;
  w.g = c * r - b;
  w.s = s;
  w.c = c;
  cs[w.count] = c;
  sn[w.count] = s;
  ++w.count;
  return --w.i >= w.l;
}

// Finishes the chase. Returns 1 when the caller must apply the sweep (described by sw) to rows
// lo..hi, 0 when it recorded no rotation.
FL_HD inline int ql_end_sweep(QLState& q, const QLChase& w, QLSweep& sw) {
  if (!w.early) {
    q.d[w.l] -= w.p;
    q.e[w.l] = w.g;
    q.e[w.mm] = 0.0;
  }
  if (w.count == 0) return 0;
  sw.first = w.mm - 1;
  sw.count = w.count;
  sw.lo = q.lo;
  sw.hi = q.hi;
  sw.flip = q.flip;
  return 1;
}

// Runs the scalar recurrence up to the next sweep and records its rotations in cs/sn (room for
// m entries each). Returns 1 when the caller must apply the sweep to rows lo..hi, 0 when all
// eigenvalues are isolated (d holds them, in the column order of z), -1 on no convergence.
FL_HD inline int ql_next(QLState& q, double* cs, double* sn, QLSweep& sw) {
  for (;;) {
    QLChase w;
    const int status = ql_begin_sweep(q, w);
    if (status != 1) return status;
    while (ql_chase_step(q, w, cs, sn)) {
    }
    if (ql_end_sweep(q, w, sw)) return 1;
  }
}

// Applies the recorded sweep to row r of z. The column shared by consecutive rotations is
// carried in a register, so each column entry is read and written once. The loads of a group
// of kAhead rotations do not depend on the arithmetic, so they are issued together: a GPU
// thread then waits for memory once per group instead of once per rotation.
FL_HD inline void ql_rotate_row(double* z, int64_t m, int r, const QLSweep& sw, const double* cs,
                                const double* sn) {
  constexpr int kAhead = 8;
  double carry = z[ql_col(sw, sw.first + 1) * m + r];
  for (int t0 = 0; t0 < sw.count; t0 += kAhead) {
    const int group = sw.count - t0 < kAhead ? sw.count - t0 : kAhead;
    double v[kAhead];
    FL_UNROLL
    for (int u = 0; u < kAhead; ++u)
      if (u < group) v[u] = z[ql_col(sw, sw.first - t0 - u) * m + r];
    FL_UNROLL
    for (int u = 0; u < kAhead; ++u) {
      if (u < group) {
        const int t = t0 + u;
        z[ql_col(sw, sw.first - t + 1) * m + r] = sn[t] * v[u] + cs[t] * carry;
        carry = cs[t] * v[u] - sn[t] * carry;
      }
    }
  }
  z[ql_col(sw, sw.first - sw.count + 1) * m + r] = carry;
}

// Position of eigenvalue c in ascending order (stable: ties keep their index order).
FL_HD inline int ascending_rank(const double* d, int m, int c) {
  int rank = 0;
  for (int i = 0; i < m; ++i) rank += (d[i] < d[c]) || (d[i] == d[c] && i < c);
  return rank;
}

// x - x is 0 exactly for finite x and NaN for inf or NaN (no isfinite overload games between
// host and device compilers).
FL_HD inline bool all_finite(const double* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    if (!(x[i] - x[i] == 0.0)) return false;
  return true;
}

}  // namespace fastlanczos
