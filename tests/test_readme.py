"""Every Python example of README.md runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def examples() -> list[tuple[int, str]]:
    """``(line, source)`` of each python block of the README."""
    text = README.read_text()
    return [(text.count("\n", 0, match.start()) + 1, match.group(1))
            for match in BLOCK.finditer(text)]


def test_the_readme_has_its_examples():
    sources = [source for _, source in examples()]
    assert len(sources) >= 4
    assert any("Trainer(model" in source and "LowerFactor(problem)" in source
               for source in sources), "the tour's learned-preconditioner example"


@pytest.mark.parametrize("line, source", [pytest.param(line, source, id=f"line{line}")
                                          for line, source in examples()])
def test_example_runs(line, source, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # examples may save figures
    exec(compile(source, f"README.md, line {line}", "exec"), {"__name__": "readme"})
