// One CGS2 reorthogonalization step on the GPU (semantics: reorth.py). Seven small launches on
// the current stream and no host synchronization: j, n and the grid are kernel arguments.
//   pass 1   h1 = V w                                  (partial sums per block)
//   reduce   h1
//   pass 2   w -= V^T h1, then h2 += V w on the same tile  (partial sums per block)
//   reduce   h2, alpha = h1[j] + h2[j]
//   pass 3   w -= V^T h2 and ||w||^2                    (partial sums per block)
//   reduce   beta = ||w||
//   scale    basis[j + 1] = w / beta
// Pass 2 reads each tile of V twice; its grid is sized so that the tiles in flight fit in half
// of L2 where that leaves enough blocks to keep memory busy, making the second read an L2 hit:
// the basis then comes from DRAM three times, not four. For large j * k the tiles do not fit
// and the second read partly goes to DRAM. Partial sums are reduced in block order (deterministic, no atomics) and accumulated in
// float64 also for float32 vectors, because alpha and beta feed the float64 tridiagonal.
// reorth_step_masked (partial reorthogonalization) takes a per-vector count of Gram-Schmidt
// passes from a device mask: blocks of vectors with fewer passes exit at once (writing zero
// partials), so the host never reads the mask. Given beta_in (the three-term step's ||w||),
// vectors with no pass skip the norm pass too.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "../checks.h"
#include "../params.h"

namespace fastlanczos {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kElems = 4;  // per thread and tile: amortizes one warp reduction per row
constexpr int64_t kTile = int64_t(kThreads) * kElems;

enum Pass { kDots = 0, kUpdateDots = 1, kUpdateNorm = 2 };

__device__ __forceinline__ int passes_of(const uint8_t* passes, int64_t b) {
  return passes == nullptr ? 2 : min(int(passes[b]), 2);
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// acc[i] += sum over the block's threads of value(i), for i < rows, in a fixed order.
template <typename F>
__device__ void block_accumulate(int64_t rows, double* acc, double* red, const F& value) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t i0 = 0; i0 < rows; i0 += 32) {
    const int count = rows - i0 < 32 ? static_cast<int>(rows - i0) : 32;
    for (int ii = 0; ii < count; ++ii) {
      const double s = warp_sum(value(i0 + ii));
      if (lane == 0) red[warp * 32 + ii] = s;
    }
    __syncthreads();
    if (threadIdx.x < count) {
      double s = 0.0;
      for (int wp = 0; wp < kWarps; ++wp) s += red[wp * 32 + threadIdx.x];
      acc[i0 + threadIdx.x] += s;
    }
    __syncthreads();
  }
}

// One pass over the tiles of vector blockIdx.y. Writes rows (or 1 for the norm) partial sums
// of this block to part[(b * gridDim.x + blockIdx.x) * width + i].
template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    cgs_pass_kernel(ReorthParams<T> p, const double* h, double* part) {
  extern __shared__ double shared[];
  const int64_t rows = p.j + 1, width = P == kUpdateNorm ? 1 : rows;
  double* acc = shared;          // width
  double* red = shared + width;  // kWarps * 32
  for (int64_t i = threadIdx.x; i < width; i += kThreads) acc[i] = 0.0;
  __syncthreads();

  const int64_t b = blockIdx.y, n = p.n;
  const int passes = passes_of(p.passes, b);
  double* out = part + (b * gridDim.x + blockIdx.x) * width;
  const bool given = P == kUpdateNorm && passes == 0 && p.beta_in != nullptr;  // beta known
  if ((P == kDots && passes < 1) || (P == kUpdateDots && passes < 2) || given) {  // not run
    for (int64_t i = threadIdx.x; i < width; i += kThreads) out[i] = 0.0;
    return;  // uniform over the block: no __syncthreads is skipped by some threads only
  }
  const T* V = p.basis + b * p.m * n;
  T* w = p.w + b * n;
  const double* hb = h + b * rows;
  for (int64_t base = blockIdx.x * kTile; base < n; base += int64_t(gridDim.x) * kTile) {
    double x[kElems];
#pragma unroll
    for (int e = 0; e < kElems; ++e) {
      const int64_t t = base + e * kThreads + threadIdx.x;
      x[e] = t < n ? static_cast<double>(w[t]) : 0.0;
    }
    if (P != kDots && passes > 0) {
      for (int64_t i = 0; i < rows; ++i) {
        const double hi = hb[i];
#pragma unroll
        for (int e = 0; e < kElems; ++e) {
          const int64_t t = base + e * kThreads + threadIdx.x;
          if (t < n) x[e] -= hi * static_cast<double>(V[i * n + t]);
        }
      }
#pragma unroll
      for (int e = 0; e < kElems; ++e) {
        const int64_t t = base + e * kThreads + threadIdx.x;
        const T stored = static_cast<T>(x[e]);
        x[e] = static_cast<double>(stored);  // later sums see the value as stored
        if (t < n) w[t] = stored;
      }
    }
    if (P == kUpdateNorm) {
      block_accumulate(1, acc, red, [&](int64_t) {
        double s = 0.0;
#pragma unroll
        for (int e = 0; e < kElems; ++e) s += x[e] * x[e];
        return s;
      });
    } else {
      block_accumulate(rows, acc, red, [&](int64_t i) {
        double s = 0.0;
#pragma unroll
        for (int e = 0; e < kElems; ++e) {
          const int64_t t = base + e * kThreads + threadIdx.x;
          if (t < n) s += static_cast<double>(V[i * n + t]) * x[e];
        }
        return s;
      });
    }
  }
  for (int64_t i = threadIdx.x; i < width; i += kThreads) out[i] = acc[i];
}

// Sums the blocks' partials in block order; one thread block per vector. Pass kUpdateDots also
// forms alpha, kUpdateNorm forms beta and 1 / beta.
template <typename T, int P>
__global__ void reduce_kernel(ReorthParams<T> p, const double* part, int blocks, double* h1,
                              double* out, double* inv) {
  const int64_t b = blockIdx.x, rows = p.j + 1, width = P == kUpdateNorm ? 1 : rows;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    double s = 0.0;
    for (int blk = 0; blk < blocks; ++blk) s += part[(b * blocks + blk) * width + i];
    if (P == kUpdateNorm) {
      const bool given = passes_of(p.passes, b) == 0 && p.beta_in != nullptr;
      const double beta = given ? p.beta_in[b] : sqrt(s);
      p.beta[b] = beta;
      inv[b] = beta > 0.0 ? 1.0 / beta : 0.0;
    } else {
      // a vector with one pass subtracts V^T h1 in pass 3, so its h1 goes to the h2 slot
      const bool one = P == kUpdateDots && passes_of(p.passes, b) == 1;
      out[b * rows + i] = one ? h1[b * rows + i] : s;
      if (P == kUpdateDots && i == p.j) p.alpha[b] = h1[b * rows + i] + s;
    }
  }
}

template <typename T>
__global__ void scale_kernel(ReorthParams<T> p, const double* inv) {
  const int64_t b = blockIdx.y;
  const T* w = p.w + b * p.n;
  T* next = p.basis + (b * p.m + p.j + 1) * p.n;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < p.n;
       t += int64_t(gridDim.x) * blockDim.x)
    next[t] = static_cast<T>(static_cast<double>(w[t]) * inv[b]);
}

template <typename T>
void launch_reorth(const ReorthParams<T>& p, const at::TensorOptions& opts) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t rows = p.j + 1, tiles = std::max<int64_t>(1, (p.n + kTile - 1) / kTile);
  const int64_t sms = prop->multiProcessorCount;
  // Passes 1 and 3 stream V once: as many blocks as can be resident. Pass 2 rereads each tile,
  // so its resident tiles must fit in half of L2.
  const int64_t streaming = std::min<int64_t>(tiles, sms * (2048 / kThreads));
  const int64_t l2_tiles = (prop->l2CacheSize / 2) / (kTile * rows * int64_t(sizeof(T)) * p.k);
  // ... but never fewer than one block per SM per vector, and ~4 per SM over all k vectors:
  // below that the pass is latency-bound, which costs more than rereading tiles from DRAM.
  const int64_t min_blocks = std::max<int64_t>(sms, (4 * sms + p.k - 1) / p.k);
  const int64_t rereading =
      std::min<int64_t>(tiles, std::clamp<int64_t>(l2_tiles, min_blocks, streaming));
  const int64_t most = std::max(streaming, rereading);

  at::Tensor scratch = at::empty({p.k * (most * rows + 2 * rows + 1)}, opts);
  double* part = scratch.data_ptr<double>();
  double* h1 = part + p.k * most * rows;
  double* h2 = h1 + p.k * rows;
  double* inv = h2 + p.k * rows;
  const size_t shmem = (rows + kWarps * 32) * sizeof(double);
  TORCH_CHECK(shmem <= 48 * 1024, "reorth_step: j = ", num(p.j), " is above the supported 5887");
  const int red_threads = static_cast<int>(std::min<int64_t>(256, (rows + 31) / 32 * 32));
  const dim3 g1(static_cast<unsigned>(streaming), static_cast<unsigned>(p.k));
  const dim3 g2(static_cast<unsigned>(rereading), static_cast<unsigned>(p.k));
  const unsigned k = static_cast<unsigned>(p.k);

  cgs_pass_kernel<T, kDots><<<g1, kThreads, shmem, stream>>>(p, h1, part);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  reduce_kernel<T, kDots><<<k, red_threads, 0, stream>>>(p, part, g1.x, h1, h1, inv);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  cgs_pass_kernel<T, kUpdateDots><<<g2, kThreads, shmem, stream>>>(p, h1, part);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  reduce_kernel<T, kUpdateDots><<<k, red_threads, 0, stream>>>(p, part, g2.x, h1, h2, inv);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  cgs_pass_kernel<T, kUpdateNorm><<<g1, kThreads, shmem, stream>>>(p, h2, part);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  reduce_kernel<T, kUpdateNorm><<<k, 32, 0, stream>>>(p, part, g1.x, h1, h2, inv);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (p.j + 1 < p.m && p.n > 0) {
    const dim3 gs(static_cast<unsigned>(std::min<int64_t>((p.n + 255) / 256, sms * 8)), k);
    scale_kernel<T><<<gs, 256, 0, stream>>>(p, inv);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

std::tuple<at::Tensor, at::Tensor> reorth_step_cuda(at::Tensor basis, at::Tensor w, int64_t j,
                                                    const uint8_t* passes = nullptr,
                                                    const double* beta_in = nullptr) {
  const c10::cuda::CUDAGuard guard(basis.device());
  const int64_t k = basis.size(0);
  at::Tensor alpha = at::empty({k}, basis.options().dtype(at::kDouble));
  at::Tensor beta = at::empty({k}, basis.options().dtype(at::kDouble));
  if (k == 0) return {alpha, beta};
  AT_DISPATCH_FLOATING_TYPES(basis.scalar_type(), "reorth_step_cuda", [&] {
    launch_reorth(ReorthParams<scalar_t>{basis.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                         alpha.data_ptr<double>(), beta.data_ptr<double>(), k,
                                         basis.size(1), basis.size(2), j, passes, beta_in},
                  alpha.options());
  });
  return {alpha, beta};
}

std::tuple<at::Tensor, at::Tensor> reorth_step_full_cuda(at::Tensor basis, at::Tensor w, int64_t j) {
  check_reorth_inputs(basis, w, j);
  return reorth_step_cuda(basis, w, j);
}

std::tuple<at::Tensor, at::Tensor> reorth_step_masked_cuda(at::Tensor basis, at::Tensor w,
                                                           at::Tensor passes, int64_t j,
                                                           const std::optional<at::Tensor>& beta) {
  check_reorth_inputs(basis, w, j);
  check_passes(basis, passes);
  check_beta_in(basis, beta);
  return reorth_step_cuda(basis, w, j, passes.data_ptr<uint8_t>(),
                          beta ? beta->data_ptr<double>() : nullptr);
}

}  // namespace
}  // namespace fastlanczos

TORCH_LIBRARY_IMPL(fastlanczos, CUDA, m) {
  m.impl("reorth_step", &fastlanczos::reorth_step_full_cuda);
  m.impl("reorth_step_masked", &fastlanczos::reorth_step_masked_cuda);
}
