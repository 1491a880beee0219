"""bench/paper.py runs and writes the paper's tables and figure 3 (at a tiny size)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import paper  # noqa: E402

TINY = ["--quick", "--cpu-only", "--part", "tables", "figure", "--n", "512",
        "--dense-sizes", "64", "128", "--largest", "1024", "--spdmm-largest", "128"]


def table_rows(report: str, title: str) -> list[list[str]]:
    """The body rows of the markdown table under the heading starting with ``title``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}"))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    body = []
    for line in lines[first + 2:]:  # after the header and the alignment row
        if not line.startswith("|"):
            break
        body.append([cell.strip() for cell in line.strip("|").split("|")])
    return body


def test_tables_and_figure_are_written(tmp_path):
    report_path = paper.main(TINY + ["--out", str(tmp_path), "--dense-memory", "1"])
    report = report_path.read_text()
    assert report_path.name == "paper-cpu.md"
    assert (tmp_path / "paper-fig3-cpu.png").stat().st_size > 10_000
    table2 = table_rows(report, "Table 2")
    assert [(row[0].split(" (")[0], row[1]) for row in table2] == [
        (test.table2, kind) for test in paper.TESTS for kind in ("fwd", "bwd")]
    for row in table2:  # ours and, forward, scipy are measured: numbers of seconds
        float(row[3])
        if row[1] == "fwd":
            float(row[4])
    table3 = table_rows(report, "Table 3")
    assert len(table3) == 8
    for row in table3:  # at N = 512 every dense op fits and is measured, not predicted
        assert float(row[4]) > 0 and row[5].endswith("x")
    assert {row[1] for row in table_rows(report, "Figure 3")} == {"spmv", "spspmm", "spdmm"}


def test_dense_figures_over_the_memory_budget_are_predicted(tmp_path):
    report = paper.main(TINY + ["--out", str(tmp_path), "--part", "tables",
                                "--dense-memory", "1e-4"]).read_text()
    dense_column = [row[4] for row in table_rows(report, "Table 3")]
    assert all(cell.startswith("≈ ") for cell in dense_column), dense_column


def test_fit_recovers_a_power_law():
    slope, intercept = paper.fit([10, 100, 1000], [2e-3 * n ** 1.5 for n in (10, 100, 1000)])
    assert slope == pytest.approx(1.5) and intercept == pytest.approx(-6.2146, abs=1e-4)
    assert paper.fit([10, 100], [1.0, paper.FAILED]) is None
    overhead_first = [1.0, 1e-2, 1e-1, 1.0]  # the smallest size is dominated by overhead
    assert paper.fit([1, 10, 100, 1000], overhead_first, last=3)[0] == pytest.approx(1.0)


def test_dense_prediction_scales_the_largest_measured_size_by_the_work():
    guess = paper.predict("spspmm", [10, 20, 40], [1.0, 8.0, paper.NOT_RUN], 80)
    assert (guess.seconds, guess.base, guess.order) == (512.0, 20, 3)
    assert paper.predict("spmv", [10, 20], [0.5, 3.0], 40).seconds == 12.0
    assert paper.predict("add", [10], [paper.FAILED], 40) is None


@pytest.mark.parametrize("argument", [["--n", "0"], ["--dense-sizes", "512"],
                                      ["--threads", "-1"]])
def test_bad_arguments_are_refused(argument, capsys):
    with pytest.raises(SystemExit):
        paper.parse_args(argument)
    assert argument[0] in capsys.readouterr().err
