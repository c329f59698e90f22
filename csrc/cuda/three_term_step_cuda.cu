// The plain Lanczos update of partial reorthogonalization on the GPU (semantics: ops.cpp's
// schema and reorth.three_term_step_scaled_torch). Four small launches on the current stream,
// no host synchronization:
//   pass 1   w = c w - beta_prev v_prev; partial sums of v . w and ||c w||^2 per block
//   reduce   alpha, ||c w||
//   pass 2   w -= alpha v; partial sums of ||w||^2
//   reduce   beta
// w is read twice and written twice, against six reads and four writes for the torch ops.
// Sums accumulate in float64 and are reduced in block order (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"

namespace fastlanczos {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

struct ThreeTermArgs {
  const double* beta_prev;  // (k,)
  const double* scale;      // (k,)
  double* alpha;            // (k,) out
  double* beta;             // (k,) out
  double* wnorm;            // (k,) out
  double* part;             // (k, blocks, 2) partial sums
  int64_t m, n, j;
};

// The block's sum of a[0..W) over its threads, in a fixed order; valid in thread 0.
template <int W>
__device__ void block_sum(double (&a)[W], double* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int q = 0; q < W; ++q) {
    for (int o = 16; o > 0; o >>= 1) a[q] += __shfl_xor_sync(0xffffffffu, a[q], o);
    if (lane == 0) red[warp * W + q] = a[q];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int q = 0; q < W; ++q) {
      a[q] = 0.0;
      for (int wp = 0; wp < kWarps; ++wp) a[q] += red[wp * W + q];
    }
  }
}

// Pass 1 (Second false) or 2 (Second true) over vector blockIdx.y, grid-strided.
template <typename T, bool Second>
__global__ void __launch_bounds__(kThreads)
    three_term_pass(const T* basis, T* w, ThreeTermArgs a) {
  __shared__ double red[kWarps * 2];
  const int64_t b = blockIdx.y, n = a.n;
  const T* v = basis + (b * a.m + a.j) * n;
  const T* vp = a.j > 0 ? v - n : nullptr;
  T* wb = w + b * n;
  const double c = a.scale[b], bp = a.beta_prev[b];
  const double al = Second ? a.alpha[b] : 0.0;
  double sums[2] = {0.0, 0.0};
  for (int64_t t = blockIdx.x * int64_t(kThreads) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * kThreads) {
    const double vt = static_cast<double>(v[t]);
    if (Second) {
      const T s = static_cast<T>(static_cast<double>(wb[t]) - al * vt);
      wb[t] = s;
      sums[0] += static_cast<double>(s) * static_cast<double>(s);
    } else {
      const double cw = static_cast<double>(wb[t]) * c;
      const T s = static_cast<T>(vp != nullptr ? cw - bp * static_cast<double>(vp[t]) : cw);
      wb[t] = s;
      sums[0] += vt * static_cast<double>(s);
      sums[1] += cw * cw;
    }
  }
  block_sum(sums, red);
  if (threadIdx.x == 0) {
    double* out = a.part + (b * gridDim.x + blockIdx.x) * 2;
    out[0] = sums[0];
    out[1] = sums[1];
  }
}

// Sums vector blockIdx.x's partials in block order (one thread: the block count is small).
template <bool Second>
__global__ void three_term_reduce(ThreeTermArgs a, int blocks) {
  const int64_t b = blockIdx.x;
  double s0 = 0.0, s1 = 0.0;
  for (int blk = 0; blk < blocks; ++blk) {
    s0 += a.part[(b * blocks + blk) * 2];
    s1 += a.part[(b * blocks + blk) * 2 + 1];
  }
  if (Second) {
    a.beta[b] = sqrt(s0);
  } else {
    a.alpha[b] = s0;
    a.wnorm[b] = sqrt(s1);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> three_term_step_cuda(at::Tensor basis,
                                                                    at::Tensor w,
                                                                    at::Tensor beta_prev,
                                                                    at::Tensor scale, int64_t j) {
  check_three_term_inputs(basis, w, beta_prev, scale, j);
  const c10::cuda::CUDAGuard guard(basis.device());
  const int64_t k = basis.size(0), n = basis.size(2);
  auto opts = basis.options().dtype(at::kDouble);
  at::Tensor alpha = at::empty({k}, opts), beta = at::empty({k}, opts),
             wnorm = at::empty({k}, opts);
  if (k == 0) return {alpha, beta, wnorm};
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  // enough resident blocks over all k vectors to keep memory busy, each with work to do
  const int64_t per_vector = std::max<int64_t>(sms * (2048 / kThreads) / k, 1);
  const int blocks = static_cast<int>(
      std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, per_vector));
  at::Tensor part = at::empty({k * blocks * 2}, opts);
  ThreeTermArgs a{beta_prev.data_ptr<double>(), scale.data_ptr<double>(), alpha.data_ptr<double>(),
                  beta.data_ptr<double>(), wnorm.data_ptr<double>(), part.data_ptr<double>(),
                  basis.size(1), n, j};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(k));
  AT_DISPATCH_FLOATING_TYPES(basis.scalar_type(), "three_term_step_cuda", [&] {
    const scalar_t* V = basis.data_ptr<scalar_t>();
    scalar_t* W = w.data_ptr<scalar_t>();
    three_term_pass<scalar_t, false><<<grid, kThreads, 0, stream>>>(V, W, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    three_term_reduce<false><<<static_cast<unsigned>(k), 1, 0, stream>>>(a, blocks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    three_term_pass<scalar_t, true><<<grid, kThreads, 0, stream>>>(V, W, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    three_term_reduce<true><<<static_cast<unsigned>(k), 1, 0, stream>>>(a, blocks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {alpha, beta, wnorm};
}

}  // namespace
}  // namespace fastlanczos

TORCH_LIBRARY_IMPL(fastlanczos, CUDA, m) {
  m.impl("three_term_step", &fastlanczos::three_term_step_cuda);
}
