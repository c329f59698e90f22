// The one place where the fastlanczos operator schemas are declared. Kernels register
// themselves per device in cpu/ and cuda/; the dispatcher picks by the inputs' device.
#include <Python.h>
#include <torch/library.h>

#ifdef FASTLANCZOS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

// CUDA runtime version the extension was compiled against (e.g. 13000), -1 without CUDA.
// Python compares it with torch.version.cuda at import, to fail with a clear message instead
// of an obscure symbol or launch error.
int64_t cuda_version() {
#ifdef FASTLANCZOS_WITH_CUDA
  return CUDART_VERSION;
#else
  return -1;
#endif
}

}  // namespace

TORCH_LIBRARY(fastlanczos, m) {
  m.def("tridiag_eigh(Tensor alpha, Tensor beta) -> (Tensor, Tensor)");
  m.def("reorth_step(Tensor(a!) basis, Tensor(b!) w, int j) -> (Tensor, Tensor)");
  // passes (k,) uint8 in {0, 1, 2}: Gram-Schmidt passes per vector (partial reorthogonalization);
  // returns (the V_j w components summed over the passes, ||w||). beta (k,) float64, optional:
  // ||w|| on entry, taken as the result for vectors with 0 passes instead of a pass over w.
  m.def("reorth_step_masked(Tensor(a!) basis, Tensor(b!) w, Tensor passes, int j, Tensor? beta=None) -> (Tensor, Tensor)");
  // The plain Lanczos update of partial reorthogonalization, in two passes over w: with
  // v = basis[:, j], v_prev = basis[:, j - 1] (none at j = 0) and c = scale,
  //   w = c w - beta_prev v_prev; alpha = v . w; w -= alpha v; beta = ||w||.
  // Returns float64 (alpha, beta, ||c w|| on entry), each (k,).
  m.def("three_term_step(Tensor basis, Tensor(a!) w, Tensor beta_prev, Tensor scale, int j) -> (Tensor, Tensor, Tensor)");
  m.def("cuda_version() -> int", &cuda_version);
}

// The ops are registered by the static initializers above when Python imports the module;
// the module itself exports nothing.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
