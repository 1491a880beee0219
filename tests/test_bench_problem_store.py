"""bench/problem_store.py runs end to end (saves, loads in a fresh process, reports) at a
small count."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import problem_store  # noqa: E402


def test_problem_store_benchmark_reports(tmp_path):
    path = tmp_path / "problem-store.md"
    result = problem_store.main(["--count", "50", "--markdown", str(path)])
    text = path.read_text()
    assert "--count 50 --workers 2" in text
    for row in ("| save 50 problems, workers=2 |", "| on disk | ", "(a) load to a first batch",
                "(b) read the whole set once", "| the whole set in memory",
                "(baseline) |", "(c) peak RSS of the reading process",
                "| peak RSS growth over the baseline |"):
        assert row in text, row
    assert result["files"] == 51 and result["set_bytes"] > 0
    assert result["peak"] >= result["baseline"] > 0
    assert 0 < result["load"] <= result["first_batch"]
