// Input validation shared by the CPU and CUDA kernels, so each op's contract lives in one place.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>

namespace fastlanczos {

// Error messages format numbers with std::to_string rather than streaming them: on one
// torch 2.11 / g++ 13 image, streaming an integer into TORCH_CHECK's message crashed the
// process (strings streamed fine), so the messages avoid the stream's number formatting.
inline std::string num(int64_t v) { return std::to_string(v); }

inline std::string shape(at::IntArrayRef sizes) {
  std::string out = "(";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? ", " : "") + std::to_string(sizes[i]);
  return out + ")";
}

inline void check_tridiag_inputs(const at::Tensor& alpha, const at::Tensor& beta) {
  TORCH_CHECK(alpha.dim() == 2 && beta.dim() == 2,
              "tridiag_eigh: expected alpha (k, m) and beta (k, m - 1), got ", shape(alpha.sizes()),
              " and ", shape(beta.sizes()));
  TORCH_CHECK(alpha.scalar_type() == at::kDouble && beta.scalar_type() == at::kDouble,
              "tridiag_eigh: alpha and beta must be float64, got ", alpha.scalar_type(), " and ",
              beta.scalar_type());
  TORCH_CHECK(alpha.device() == beta.device(), "tridiag_eigh: alpha and beta on different devices");
  const int64_t m = alpha.size(1);
  TORCH_CHECK(m >= 1, "tridiag_eigh: need m >= 1");
  TORCH_CHECK(beta.size(0) == alpha.size(0) && beta.size(1) == m - 1,
              "tridiag_eigh: beta must be (k, m - 1) = ", shape({alpha.size(0), m - 1}),
              ", got ", shape(beta.sizes()));
  // The GPU kernel keeps one matrix's d, e and rotations in (default-sized) shared memory.
  TORCH_CHECK(m <= 1024, "tridiag_eigh: m = ", num(m), " is above the supported 1024");
}

inline void check_reorth_inputs(const at::Tensor& basis, const at::Tensor& w, int64_t j) {
  TORCH_CHECK(basis.dim() == 3 && w.dim() == 2,
              "reorth_step: expected basis (k, m, n) and w (k, n), got ", shape(basis.sizes()),
              " and ", shape(w.sizes()));
  TORCH_CHECK(basis.size(0) == w.size(0) && basis.size(2) == w.size(1),
              "reorth_step: basis ", shape(basis.sizes()), " does not match w ", shape(w.sizes()));
  TORCH_CHECK(basis.scalar_type() == w.scalar_type(), "reorth_step: basis is ",
              basis.scalar_type(), " but w is ", w.scalar_type());
  TORCH_CHECK(basis.scalar_type() == at::kFloat || basis.scalar_type() == at::kDouble,
              "reorth_step: only float32 and float64 are supported, got ", basis.scalar_type());
  TORCH_CHECK(basis.device() == w.device(), "reorth_step: basis and w on different devices");
  // Both are updated in place, so a silent contiguous() copy would lose the result.
  TORCH_CHECK(basis.is_contiguous() && w.is_contiguous(),
              "reorth_step: basis and w must be contiguous");
  TORCH_CHECK(0 <= j && j < basis.size(1), "reorth_step: j = ", num(j), " outside [0, ",
              num(basis.size(1)), ")");
}

inline void check_passes(const at::Tensor& basis, const at::Tensor& passes) {
  TORCH_CHECK(passes.dim() == 1 && passes.size(0) == basis.size(0),
              "reorth_step_masked: passes must be (k,) = (", num(basis.size(0)), "), got ",
              shape(passes.sizes()));
  TORCH_CHECK(passes.scalar_type() == at::kByte, "reorth_step_masked: passes must be uint8, got ",
              passes.scalar_type());
  TORCH_CHECK(passes.device() == basis.device() && passes.is_contiguous(),
              "reorth_step_masked: passes must be contiguous and on the basis's device");
}

// beta_in of reorth_step_masked: (k,) float64 norms of w on entry, where the step may trust them.
inline void check_beta_in(const at::Tensor& basis, const std::optional<at::Tensor>& beta_in) {
  if (!beta_in) return;
  TORCH_CHECK(beta_in->dim() == 1 && beta_in->size(0) == basis.size(0),
              "reorth_step_masked: beta must be (k,) = (", num(basis.size(0)), "), got ",
              shape(beta_in->sizes()));
  TORCH_CHECK(beta_in->scalar_type() == at::kDouble, "reorth_step_masked: beta must be float64, got ",
              beta_in->scalar_type());
  TORCH_CHECK(beta_in->device() == basis.device() && beta_in->is_contiguous(),
              "reorth_step_masked: beta must be contiguous and on the basis's device");
}

// three_term_step: basis (k, m, n) with rows j - 1 and j in use, w (k, n), and float64 (k,)
// beta_prev and scale.
inline void check_three_term_inputs(const at::Tensor& basis, const at::Tensor& w,
                                    const at::Tensor& beta_prev, const at::Tensor& scale,
                                    int64_t j) {
  check_reorth_inputs(basis, w, j);
  for (const at::Tensor* t : {&beta_prev, &scale}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == basis.size(0),
                "three_term_step: beta_prev and scale must be (k,) = (", num(basis.size(0)),
                "), got ", shape(t->sizes()));
    TORCH_CHECK(t->scalar_type() == at::kDouble && t->is_contiguous() &&
                    t->device() == basis.device(),
                "three_term_step: beta_prev and scale must be contiguous float64 on the basis's "
                "device");
  }
}

}  // namespace fastlanczos
