"""Builds learnsolve._C, the native kernels, from cuda/.

cuda/registration.cpp declares the operator schemas; cuda/cpu/*.cpp hold the
CPU kernels (one file per op) and cuda/autograd/*.cpp the autograd kernels
written in C++, one for both devices (they call the ops through the
dispatcher). The CUDA kernels of cuda/gpu/*.cu join the build when torch was
built with CUDA and nvcc is found; otherwise they are left out.
"""
import glob
import os

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern: str) -> list[str]:
    # Paths relative to setup.py, as setuptools requires.
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _extension():
    sources = (_sources("cuda/registration.cpp") + _sources("cuda/cpu/*.cpp")
               + _sources("cuda/autograd/*.cpp"))
    cxx_flags = ["-O3", "-fopenmp"]
    gpu_sources = _sources("cuda/gpu/*.cu")
    with_cuda = (
        bool(gpu_sources)
        and cpp_extension.CUDA_HOME is not None
        and getattr(__import__("torch").version, "cuda", None) is not None
        and os.environ.get("LEARNSOLVE_NO_CUDA", "0") != "1"
    )
    if with_cuda:
        return cpp_extension.CUDAExtension(
            "learnsolve._C",
            sources + gpu_sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "learnsolve._C",
        sources,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
