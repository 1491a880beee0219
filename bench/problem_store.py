"""Problem sets on disk: ProblemSet.save of many small problems, then ProblemSet.load and
reading in a fresh process, whose peak memory is then that of loading alone.

    .venv/bin/python bench/problem_store.py [--count 10000] [--workers 2]
                                            [--markdown bench/results/problem-store-cpu.md]

The set: ``--count`` problems of ``random_spd_problem`` (lognormal and jump grids, P1 FEM
on random domains with their meshes, anisotropic stencils) of 200-400 unknowns, float64,
saved with ``--workers`` processes into a temporary directory (time, bytes on disk). Then a
fresh Python process imports learnsolve (its peak resident memory there is the baseline),
calls ``ProblemSet.load`` and measures (a) the time from the call to a first batch (the
first ``--batch`` problems of a shuffled order read), (b) the time to read the whole set
once, one problem at a time (``cache=False``: each problem dropped before the next), and
(c) its peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``) against the baseline and
against the memory the whole set would take (the sum of its problems' tensor and array
bytes, the Python objects around them not counted). CPU, one torch thread per process.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from learnsolve.core.csr import CSRMatrix  # noqa: E402
from learnsolve.problems import ProblemSet, random_spd_problem  # noqa: E402
from problems import machine_info  # noqa: E402  (bench/problems.py's environment header)

#: The problems (module level: the worker processes of the save unpickle it).
FACTORY = functools.partial(random_spd_problem, nodes=(200, 400), dtype=torch.float64)


def peak_rss() -> int:
    """Peak resident memory of this process, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def nbytes(value) -> int:
    """Bytes of the tensors and numpy arrays in ``value`` (a problem and what it holds)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(map(nbytes, value))
    if isinstance(value, dict):
        return sum(map(nbytes, value.values()))
    if isinstance(value, CSRMatrix):
        return nbytes([value.crow_indices, value.col_indices, value.values])
    if dataclasses.is_dataclass(value):         # Problem, Mesh, Partition
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def read(directory: Path, batch: int) -> dict:
    """In a fresh process: load the set, read a first batch, then the whole set once."""
    baseline = peak_rss()
    start = time.perf_counter()
    problems = ProblemSet.load(directory)
    loaded = time.perf_counter() - start
    order = np.random.default_rng(0).permutation(len(problems))
    first = [problems[int(i)] for i in order[:batch]]
    first_batch = time.perf_counter() - start
    del first
    start = time.perf_counter()
    total = sum(nbytes(problem) for problem in problems)
    whole = time.perf_counter() - start
    return {"baseline": baseline, "load": loaded, "first_batch": first_batch, "whole": whole,
            "set_bytes": total, "peak": peak_rss()}


def save(count: int, workers: int, directory: Path) -> dict:
    start = time.perf_counter()
    ProblemSet(FACTORY, count, seed=0).save(directory, workers=workers)
    seconds = time.perf_counter() - start
    files = list(directory.iterdir())
    return {"save": seconds, "files": len(files), "disk": sum(f.stat().st_size for f in files)}


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def report(args, saved: dict, measured: dict) -> list[str]:
    count, growth = args.count, measured["peak"] - measured["baseline"]
    rows = [
        (f"save {count:,} problems, workers={args.workers}",
         f"{saved['save']:.1f} s ({saved['save'] / count * 1e3:.2f} ms a problem)"),
        ("on disk", f"{mib(saved['disk'])} in {saved['files']:,} files"),
        ("`ProblemSet.load` (reads index.json)", f"{measured['load'] * 1e3:.1f} ms"),
        (f"(a) load to a first batch ({args.batch} problems of a shuffled order)",
         f"{measured['first_batch'] * 1e3:.1f} ms"),
        ("(b) read the whole set once, one problem at a time",
         f"{measured['whole']:.1f} s ({measured['whole'] / count * 1e3:.2f} ms a problem)"),
        ("the whole set in memory (tensor and array bytes)", mib(measured["set_bytes"])),
        ("peak RSS after importing learnsolve (baseline)", mib(measured["baseline"])),
        ("(c) peak RSS of the reading process", mib(measured["peak"])),
        ("peak RSS growth over the baseline",
         f"{mib(growth)} ({growth / measured['set_bytes']:.1%} of the whole set)"),
    ]
    command = (f"`.venv/bin/python bench/problem_store.py --count {count} --workers "
               f"{args.workers} --batch {args.batch}`")
    return (["# Problem sets on disk (bench/problem_store.py)", ""]
            + [f"- {line}" for line in machine_info()] + [f"- command: {command}", "",
               __doc__.split("\n\n")[2].replace("\n", " ").strip(), "",
               "| measure | value |", "|:---|---:|"]
            + [f"| {name} | {value} |" for name, value in rows])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="problems in the set")
    parser.add_argument("--workers", type=int, default=2, help="processes saving the set")
    parser.add_argument("--batch", type=int, default=8, help="problems in the first batch")
    parser.add_argument("--markdown", metavar="PATH", type=Path, help="write the results here")
    parser.add_argument("--read", metavar="DIRECTORY", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.read:
        print(json.dumps(read(args.read, args.batch)))
        return {}
    if args.count < args.batch:
        parser.error(f"--count: expected at least --batch ({args.batch}) problems")
    with tempfile.TemporaryDirectory() as tmp:
        saved = save(args.count, args.workers, Path(tmp) / "set")
        out = subprocess.run([sys.executable, __file__, "--read", str(Path(tmp) / "set"),
                              "--batch", str(args.batch)], check=True, capture_output=True,
                             text=True, cwd=ROOT)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    lines = report(args, saved, measured)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return {**saved, **measured}


if __name__ == "__main__":
    main()
