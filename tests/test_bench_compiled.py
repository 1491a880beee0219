"""bench/compiled.py runs end to end at tiny sizes and writes its rows (aot_eager and 2
iterations: inductor's compilation of the full benchmark takes minutes; test_compile.py
compiles PCG with it)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import compiled  # noqa: E402

TIME = re.compile(r"^[\d.]+ (?:ns|us|ms|s)$")
RATIO = re.compile(r"^\d+\.\d\d$")


def test_compiled_benchmark_reports(tmp_path):
    path = tmp_path / "compiled.md"
    rows = compiled.main(["--sizes", "4", "--iterations", "2", "--repeat", "2",
                          "--backend", "aot_eager", "--markdown", str(path)])
    text = path.read_text()
    assert text.startswith("# Compiled PCG: 2 iterations, forward and backward, torch.compile "
                           "(aot_eager, fullgraph) against eager") and "torch " in text
    lines = text.splitlines()
    table = [line.strip("| ").split(" | ") for line, below in zip(lines, lines[1:] + [""])
             if line.startswith("| ") and not below.startswith("|:--")]     # no header
    assert table == rows
    assert [(row[0], row[1]) for row in rows] == [("2D Poisson 4², n = 16", "none"),
                                                  ("2D Poisson 4², n = 16", "Jacobi")]
    for row in rows:
        assert TIME.match(row[2]) and TIME.match(row[3]) and TIME.match(row[6])
        assert RATIO.match(row[4]) and RATIO.match(row[5])


@pytest.mark.parametrize("argv", [["--sizes", "1"], ["--iterations", "0"], ["--repeat", "0"]])
def test_compiled_benchmark_refuses(argv):
    with pytest.raises(SystemExit):
        compiled.parse_args(argv)
