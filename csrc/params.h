// Plain parameter structs handed to the kernels. No torch headers here, so the kernel code
// (and the shared QL header) can be read and compiled without ATen.
#pragma once
#include <cstdint>

// A batch of k symmetric tridiagonal matrices of order m (float64).
struct TridiagParams {
  const double* alpha;  // (k, m) diagonal
  const double* beta;   // (k, m - 1) off-diagonal
  double* evals;        // (k, m) out: ascending eigenvalues, NaN if not converged
  double* evecs;        // (k, m, m) out: column i is the eigenvector of evals[i]
  double* work;         // (k, m, m) scratch: eigenvectors stored column-contiguous
  int64_t k;
  int64_t m;
};

// One CGS2 step for k Lanczos recurrences of length n, with basis rows 0..j in use.
template <typename scalar_t>
struct ReorthParams {
  scalar_t* basis;  // (k, m, n) contiguous
  scalar_t* w;      // (k, n) contiguous
  double* alpha;    // (k,) out
  double* beta;     // (k,) out
  int64_t k;
  int64_t m;
  int64_t n;
  int64_t j;
  // (k,) Gram-Schmidt passes per vector, 0, 1 or 2 (partial reorthogonalization); nullptr: 2
  // for all. With 0, w is left as it is and only beta = ||w|| and basis[j + 1] are formed.
  const uint8_t* passes = nullptr;
  // (k,) ||w|| on entry, or nullptr. Where given, vectors with 0 passes take beta from it
  // instead of reading w once more (the three-term step has just computed it).
  const double* beta_in = nullptr;
};
