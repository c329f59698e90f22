// Batched tridiagonal eigensolver on the GPU: one thread block per matrix, running the team
// program of tridiag_team.h (thread 0 the scalar QL recurrence with d, e and the sweep's
// rotations in shared memory, every thread the rotations of its rows of the eigenvector
// matrix, which lives in global memory: 512 x 512 doubles do not fit in shared memory).
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../params.h"
#include "../tridiag_team.h"

namespace fastlanczos {
namespace {

struct BlockTeam {
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ void sync() const { __syncthreads(); }
};

__global__ void tridiag_eigh_kernel(TridiagParams p) {
  extern __shared__ double smem[];
  __shared__ QLSweep sweep;
  __shared__ int status;
  const int m = static_cast<int>(p.m);
  const int64_t b = blockIdx.x;
  const TeamScratch s{smem, smem + m, smem + 2 * m, smem + 3 * m,
                      reinterpret_cast<int*>(smem + 4 * m), &sweep, &status};
  tridiag_eigh_team(BlockTeam{}, s, p.alpha + b * m, p.beta + b * (m - 1), m, p.work + b * m * m,
                    p.evals + b * m, p.evecs + b * m * m);
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
