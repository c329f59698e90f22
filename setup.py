"""Builds the optional compiled kernels as ``fastlanczos._C``.

C++ (CPU) kernels always; CUDA kernels when CUDA is usable here or FORCE_CUDA=1 (for machines
without a driver, together with TORCH_CUDA_ARCH_LIST). FASTLANCZOS_NO_EXT=1 builds the pure
Python package. Package metadata lives in pyproject.toml.
"""

import glob
import os
import site
import sys

from setuptools import setup


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _nvidia_include_dirs():
    # pip's CUDA 12/13 wheels ship the cuBLAS/cuSPARSE headers that ATen's CUDA headers include
    # under site-packages/nvidia/cu1x/include; add them so the build needs no manual flags.
    roots = site.getsitepackages() + [site.getusersitepackages()]
    dirs = []
    for root in roots:
        for sub in ("cu13", "cu12"):
            path = os.path.join(root, "nvidia", sub, "include")
            if os.path.isdir(path):
                dirs.append(path)
    return dirs


def _extensions():
    if _flag("FASTLANCZOS_NO_EXT"):
        return [], {}
    import torch
    from torch.utils import cpp_extension as ce

    use_cuda = _flag("FORCE_CUDA") or (
        torch.version.cuda is not None and ce.CUDA_HOME is not None and torch.cuda.is_available()
    )
    if use_cuda and ce.CUDA_HOME is None:
        sys.exit("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME")
    if use_cuda and torch.version.cuda is None:
        sys.exit("FORCE_CUDA=1 but this torch was built without CUDA")

    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cxx = ["-O3"]  # torch picks the C++ standard its headers need
    link = []
    # at::parallel_for runs serially unless compiled with the threading backend torch uses;
    # Linux wheels use OpenMP (libgomp, which torch itself loads, so there is one runtime).
    if "OpenMP" in torch.__config__.parallel_info() and sys.platform.startswith("linux"):
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    kwargs = dict(
        name="fastlanczos._C",
        sources=sources,
        include_dirs=[os.path.join(here, "csrc")],
        extra_link_args=link,
    )
    if use_cuda:
        kwargs["sources"] += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        kwargs["include_dirs"] += _nvidia_include_dirs()
        kwargs["define_macros"] = [("FASTLANCZOS_WITH_CUDA", None)]
        # -Xptxas -v prints registers and spills per kernel; .ci/build_cuda.sh checks the spills.
        nvcc = ["-O3", "-Xptxas", "-v", "-lineinfo"]
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": nvcc}
        ext = ce.CUDAExtension(**kwargs)
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext = ce.CppExtension(**kwargs)
    return [ext], {"build_ext": ce.BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
