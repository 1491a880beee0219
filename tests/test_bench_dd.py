"""bench/dd.py's fig. 18 scaling runs at a tiny size, with the two-level column."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import dd  # noqa: E402


def test_scaling_times_one_and_two_levels(tmp_path):
    path = tmp_path / "dd.md"
    dd.main(["--part", "scaling", "--quick", "--largest", "1000", "--markdown", str(path),
             "--plot", str(tmp_path / "dd.png")])
    text = path.read_text()
    assert "two-level epoch" in text and "slope of the sparse time" in text
    rows = [line for line in text.splitlines() if line.startswith("| 4") or
            line.startswith("| 9")]
    times = [re.findall(r"[\d.]+ (?:µs|ms|s) \|", line) for line in rows]
    assert len(rows) == 2 and all(len(t) == 3 for t in times)     # sparse, two-level, dense
    assert (tmp_path / "dd.png").stat().st_size > 0
