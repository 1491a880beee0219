"""Compile check of the CUDA kernels that needs no GPU.

Compiles every cuda/gpu/*.cu with ``nvcc -c`` against the headers of the
installed torch (the CPU build of torch is enough: its include folder carries
the c10/cuda and ATen headers the kernels use) into a temporary folder, links
nothing and runs nothing. Reports ok / failed per file with nvcc's errors and
exits non-zero when any file fails (2 when nvcc or torch cannot be found).

    python cuda/check_gpu_build.py [--jobs N] [--arch sm_90 ...] [FILE.cu ...]

nvcc is taken from $CUDA_HOME/bin, $CUDA_PATH/bin, PATH or /usr/local/cuda/bin.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_DIR = os.path.join(ROOT, "cuda", "gpu")
DEFAULT_ARCHS = ("sm_80", "sm_90")


def find_nvcc() -> str | None:
    for env in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(env)
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    default = "/usr/local/cuda/bin/nvcc"
    return default if os.path.isfile(default) else None


def nvcc_flags(archs: list[str]) -> list[str]:
    """The flags torch's CUDAExtension would use, less what needs a CUDA build of torch."""
    import torch
    from torch.utils import cpp_extension

    includes = list(cpp_extension.include_paths()) + [sysconfig.get_paths()["include"]]
    abi = int(bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True)))
    flags = ["-std=c++20", "-O3", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC"]
    flags += [f"-I{p}" for p in includes]
    flags += [
        # The CPU build of torch ships c10/cuda without its generated
        # cuda_cmake_macros.h; this define makes CUDAMacros.h do without it.
        "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        "-DTORCH_EXTENSION_NAME=_C",
        # As torch's CUDAExtension: keep the half / bfloat16 operators of
        # cuda_fp16.h out of the way of c10's.
        "-D__CUDA_NO_HALF_OPERATORS__",
        "-D__CUDA_NO_HALF_CONVERSIONS__",
        "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-D__CUDA_NO_HALF2_OPERATORS__",
    ]
    for arch in archs:
        num = arch.split("_", 1)[1]
        flags += ["-gencode", f"arch=compute_{num},code=sm_{num}"]
    return flags


def compile_one(nvcc: str, flags: list[str], source: str, out_dir: str) -> tuple[str, bool, str, float]:
    obj = os.path.join(out_dir, os.path.basename(source) + ".o")
    start = time.monotonic()
    proc = subprocess.run([nvcc, *flags, "-c", source, "-o", obj], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    return source, proc.returncode == 0, (proc.stdout + proc.stderr).strip(), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="the .cu files (default: cuda/gpu/*.cu)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="files compiled at once")
    parser.add_argument("--arch", action="append", default=None,
                        help="GPU architecture, e.g. sm_90 (repeatable; default sm_80 and sm_90)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print warnings of files that compile")
    args = parser.parse_args(argv)

    nvcc = find_nvcc()
    if nvcc is None:
        print("check_gpu_build: nvcc not found (set CUDA_HOME or put nvcc on PATH)", file=sys.stderr)
        return 2
    try:
        flags = nvcc_flags(args.arch or list(DEFAULT_ARCHS))
    except ImportError as exc:
        print(f"check_gpu_build: torch is needed for its headers: {exc}", file=sys.stderr)
        return 2
    sources = [os.path.abspath(f) for f in args.files] or sorted(glob.glob(os.path.join(GPU_DIR, "*.cu")))
    if not sources:
        print(f"check_gpu_build: no .cu files in {GPU_DIR}", file=sys.stderr)
        return 2

    print(f"nvcc: {nvcc}; {len(sources)} files, {max(args.jobs, 1)} at a time", flush=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="learnsolve-cuda-check-") as out_dir:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            futures = [pool.submit(compile_one, nvcc, flags, s, out_dir) for s in sources]
            for future in concurrent.futures.as_completed(futures):
                source, ok, log, elapsed = future.result()
                name = os.path.relpath(source, ROOT)
                print(f"{'ok    ' if ok else 'FAILED'} {name} ({elapsed:.0f} s)", flush=True)
                if not ok:
                    failed.append(name)
                if log and (not ok or args.verbose):
                    print("    " + log.replace("\n", "\n    "), flush=True)
    print(f"{len(sources) - len(failed)} of {len(sources)} compiled"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
