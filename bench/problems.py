"""Time to generate problems: meshes (meshpy / Triangle), P1 assembly, partitions.

For each geometry of ``learnsolve.problems`` (disk, L-shape, square with holes,
random polygon) and each target node count (10 000, 50 000, 200 000 and
400 000; ``--quick``: 2 000 and 20 000) the script times

* mesh: Triangle through meshpy, reading its arrays, boundary flags;
* assemble: ``fem_problem`` (element matrices, COO -> CSR, Dirichlet
  elimination, the ``CSRMatrix``), constant coefficient;
* rcb / bfs: ``partition`` into S = 64 subdomains (16 with ``--quick``) with
  delta = 2 layers of overlap, by recursive coordinate bisection and by
  recursive graph (BFS) bisection, connectivity repair included;
* total: mesh + assemble + rcb, a whole partitioned problem;

then, at the largest size, the assembly with a log-normal and a jump
coefficient field, and the grid problems (``poisson_2d`` and a log-normal
``diffusion_2d``) of the same size. Each figure is the median of
``--repeat`` runs (default 3). All float64, CPU.

Examples
--------
Full run (about a minute on two cores), also writing the tables as markdown::

    python bench/problems.py --markdown bench/results/problems-cpu.md

Smoke test::

    python bench/problems.py --quick
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import numpy as np
import scipy
import torch

import learnsolve as ls
from learnsolve.problems import (diffusion_2d, disk, fem_problem, jump_coefficient, l_shape,
                                 lognormal_coefficient, mesh_size, partition, poisson_2d,
                                 random_polygon, square_with_holes)
from learnsolve.problems.mesh import DEFAULT_HOLES


def _polygon_area(seed: int) -> float:
    m = random_polygon(0.05, seed=seed)
    return float(m.areas.sum())


def geometries():
    """``(name, make(h), area)``."""
    holes_area = 1.0 - math.pi * sum(r * r for _, _, r in DEFAULT_HOLES)
    return [("disk", disk, math.pi),
            ("L-shape", l_shape, 3.0),
            ("square with holes", square_with_holes, holes_area),
            ("random polygon", lambda h: random_polygon(h, seed=0), _polygon_area(0))]


def timed(fn, repeat: int):
    """(median seconds, last result)."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def mesh_rows(sizes, parts: int, overlap: int, repeat: int):
    header = ["geometry", "target", "nodes", "unknowns", "triangles", "nnz", "mesh",
              "assemble", f"rcb S={parts}", f"bfs S={parts}", "total (mesh+asm+rcb)",
              "imbalance rcb/bfs"]
    rows = []
    for name, make, area in geometries():
        for target in sizes:
            h = mesh_size(target, area)
            t_mesh, mesh = timed(lambda: make(h), repeat)
            t_asm, problem = timed(lambda: fem_problem(mesh, dtype=torch.float64), repeat)
            t_rcb, p_rcb = timed(lambda: partition(problem, parts, overlap, method="rcb"),
                                 repeat)
            t_bfs, p_bfs = timed(lambda: partition(problem, parts, overlap, method="bfs"),
                                 repeat)
            rows.append([name, f"{target:,}", f"{mesh.num_nodes:,}", f"{problem.num_nodes:,}",
                         f"{mesh.num_triangles:,}", f"{problem.A.nnz:,}", fmt(t_mesh),
                         fmt(t_asm), fmt(t_rcb), fmt(t_bfs), fmt(t_mesh + t_asm + t_rcb),
                         f"{p_rcb.imbalance:.3f} / {p_bfs.imbalance:.3f}"])
            print(" | ".join(rows[-1]), flush=True)
    return header, rows


def extra_rows(target: int, parts: int, overlap: int, repeat: int):
    header = ["problem", "unknowns", "nnz", "build", f"rcb S={parts}", "total"]
    rows = []
    mesh = disk(mesh_size(target, math.pi))
    for label, k in (("disk, log-normal k", lognormal_coefficient(0, correlation_length=0.1)),
                     ("disk, jump k (8 regions)",
                      jump_coefficient(0, bounds=((-1, 1), (-1, 1))))):
        t, p = timed(lambda: fem_problem(mesh, k, dtype=torch.float64), repeat)
        t_p, _ = timed(lambda: partition(p, parts, overlap), repeat)
        rows.append([label, f"{p.num_nodes:,}", f"{p.A.nnz:,}", fmt(t),
                     fmt(t_p), fmt(t + t_p)])
    side = int(math.ceil(math.sqrt(target)))
    for label, make in ((f"poisson_2d({side})", lambda: poisson_2d(side, dtype=torch.float64)),
                        (f"diffusion_2d({side}, 'lognormal')",
                         lambda: diffusion_2d(side, coefficient="lognormal",
                                              dtype=torch.float64))):
        t, p = timed(make, repeat)
        t_p, _ = timed(lambda: partition(p, parts, overlap), repeat)
        rows.append([label, f"{p.num_nodes:,}", f"{p.A.nnz:,}", fmt(t), fmt(t_p),
                     fmt(t + t_p)])
    for row in rows:
        print(" | ".join(row), flush=True)
    return header, rows


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def machine_info() -> list[str]:
    import meshpy
    import pyamg
    cpu = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    return [f"torch {torch.__version__}, learnsolve {ls.__version__}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}, meshpy {getattr(meshpy, '__version__', '?')}, "
            f"pyamg {pyamg.__version__}, python {platform.python_version()}",
            f"CPU: {cpu}; {os.cpu_count()} logical CPUs; torch threads: "
            f"{torch.get_num_threads()}; load average at start: "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs per figure, the median is shown (default 3; 1 with --quick)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables here")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat: expected a positive count")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = [2_000, 20_000] if args.quick else [10_000, 50_000, 200_000, 400_000]
    parts, overlap = (16, 2) if args.quick else (64, 2)
    info = machine_info()
    print("\n".join(info), end="\n\n")
    started = time.perf_counter()
    header, rows = mesh_rows(sizes, parts, overlap, repeat)
    print()
    header2, rows2 = extra_rows(sizes[-2] if len(sizes) > 2 else sizes[-1], parts, overlap,
                                repeat)
    elapsed = time.perf_counter() - started
    legend = (f"Median of {repeat} run(s) per figure; float64 on the CPU. *target*: the node "
              f"count asked for through `mesh_size`; *nodes*: mesh nodes (Dirichlet included); "
              f"*unknowns*: free nodes (the matrix size). Partitions: S = {parts} subdomains, "
              f"delta = {overlap} layers of overlap, connectivity repair included; "
              f"*imbalance*: largest core / mean core. Second table: *build* is `fem_problem` "
              f"alone for the disk rows (the mesh is the disk's of the first table) and the "
              f"whole generator for the grid rows.")
    print(f"\n{legend}\n(total run time {elapsed:.0f} s)")
    if args.markdown:
        text = ["# learnsolve problem generation benchmark", "",
                *[f"- {line}" for line in info],
                f"- command: `python bench/problems.py{' --quick' if args.quick else ''}`"
                f" (run time {elapsed:.0f} s)", "", legend, "",
                "## Unstructured meshes: mesh, P1 assembly, partitions", "",
                markdown_table(header, rows), "",
                f"## Other coefficients and grid problems (about {sizes[-2]:,} unknowns)"
                if len(sizes) > 2 else "## Other coefficients and grid problems", "",
                markdown_table(header2, rows2), ""]
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write("\n".join(text))
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
