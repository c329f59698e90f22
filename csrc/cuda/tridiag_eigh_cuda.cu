// Batched tridiagonal eigensolver on the GPU: one thread block per matrix. Thread 0 runs the
// scalar QL recurrence (tridiag_ql.h) with d, e and the sweep's rotations in shared memory;
// then every thread applies the recorded sweep to its rows of the eigenvector matrix, which
// lives in global memory (512 x 512 doubles do not fit in shared memory).
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <math_constants.h>
#include <torch/library.h>

#include "../checks.h"
#include "../params.h"
#include "../tridiag_ql.h"

namespace fastlanczos {
namespace {

__global__ void tridiag_eigh_kernel(TridiagParams p) {
  extern __shared__ double smem[];
  __shared__ QLSweep sweep;
  __shared__ int status;
  const int m = static_cast<int>(p.m);
  const int64_t b = blockIdx.x;
  double* d = smem;
  double* e = d + m;
  double* cs = e + m;
  double* sn = cs + m;
  int* perm = reinterpret_cast<int*>(sn + m);
  double* z = p.work + b * m * m;
  double* evals = p.evals + b * m;
  double* evecs = p.evecs + b * m * m;

  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    d[i] = p.alpha[b * m + i];
    e[i] = i < m - 1 ? p.beta[b * (m - 1) + i] : 0.0;
  }
  for (int64_t idx = threadIdx.x; idx < int64_t(m) * m; idx += blockDim.x)
    z[idx] = (idx / m == idx % m) ? 1.0 : 0.0;
  __syncthreads();

  QLState q;  // meaningful in thread 0 only
  if (threadIdx.x == 0) {
    status = (all_finite(d, m) && all_finite(e, m - 1)) ? 1 : -1;
    if (status == 1) ql_init(q, d, e, m);
  }
  __syncthreads();
  if (status == 1) {
    for (;;) {
      if (threadIdx.x == 0) status = ql_next(q, cs, sn, sweep);
      __syncthreads();
      if (status != 1) break;
      for (int r = sweep.lo + threadIdx.x; r <= sweep.hi; r += blockDim.x)
        ql_rotate_row(z, m, r, sweep, cs, sn);
      __syncthreads();  // thread 0 overwrites cs, sn and sweep next
    }
  }
  if (status < 0) {  // non-finite input or no convergence: the caller sees NaN
    for (int i = threadIdx.x; i < m; i += blockDim.x) evals[i] = CUDART_NAN;
    for (int64_t idx = threadIdx.x; idx < int64_t(m) * m; idx += blockDim.x)
      evecs[idx] = CUDART_NAN;
    return;
  }
  for (int c = threadIdx.x; c < m; c += blockDim.x) perm[ascending_rank(d, m, c)] = c;
  __syncthreads();
  for (int i = threadIdx.x; i < m; i += blockDim.x) evals[i] = d[perm[i]];
  // Writes are coalesced along the output row; the gather from z is the transpose.
  for (int64_t idx = threadIdx.x; idx < int64_t(m) * m; idx += blockDim.x)
    evecs[idx] = z[int64_t(perm[idx % m]) * m + idx / m];
}

std::tuple<at::Tensor, at::Tensor> tridiag_eigh_cuda(const at::Tensor& alpha,
                                                     const at::Tensor& beta) {
  check_tridiag_inputs(alpha, beta);
  const c10::cuda::CUDAGuard guard(alpha.device());
  const at::Tensor a = alpha.contiguous(), bt = beta.contiguous();
  const int64_t k = a.size(0), m = a.size(1);
  at::Tensor evals = at::empty({k, m}, a.options());
  at::Tensor evecs = at::empty({k, m, m}, a.options());
  if (k == 0) return {evals, evecs};
  at::Tensor work = at::empty({k, m, m}, a.options());
  TridiagParams p{a.data_ptr<double>(), bt.data_ptr<double>(), evals.data_ptr<double>(),
                  evecs.data_ptr<double>(), work.data_ptr<double>(), k, m};
  // One warp per 32 rows, at most 256 threads: the rotations are the parallel part.
  const int threads = static_cast<int>(std::min<int64_t>(256, (m + 31) / 32 * 32));
  const size_t shmem = 4 * m * sizeof(double) + m * sizeof(int);
  tridiag_eigh_kernel<<<static_cast<unsigned>(k), threads, shmem,
                        at::cuda::getCurrentCUDAStream()>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {evals, evecs};
}

}  // namespace
}  // namespace fastlanczos

TORCH_LIBRARY_IMPL(fastlanczos, CUDA, m) {
  m.impl("tridiag_eigh", &fastlanczos::tridiag_eigh_cuda);
}
