"""The CUDA kernels compile against torch's headers (no GPU needed).

Runs cuda/check_gpu_build.py, which compiles every cuda/gpu/*.cu with nvcc -c
and links nothing. Compiling the sixteen files takes minutes (tens of seconds
each), more than the rest of the suite together, so the test only runs when
asked for with LEARNSOLVE_CHECK_CUDA_BUILD=1 (and is skipped without nvcc):

    LEARNSOLVE_CHECK_CUDA_BUILD=1 python -m pytest tests/test_cuda_build.py
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cuda" / "check_gpu_build.py"

sys.path.insert(0, str(SCRIPT.parent))
try:
    from check_gpu_build import find_nvcc
finally:
    sys.path.pop(0)

pytestmark = [
    pytest.mark.skipif(os.environ.get("LEARNSOLVE_CHECK_CUDA_BUILD") != "1",
                       reason="slow (minutes): set LEARNSOLVE_CHECK_CUDA_BUILD=1 to run"),
    pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found"),
]


def test_cuda_kernels_compile():
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--jobs", jobs],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
