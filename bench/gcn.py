"""One training epoch of a two-layer GCN: learnsolve beside torch_geometric and
dense torch (paper section 4.4, table 4 and fig. 16).

For each graph size the script times one full-batch training step (forward,
cross-entropy on the training nodes, backward, Adam step) of the node
classifier of Kipf & Welling: ``GCNConv(F, 16) -> ReLU -> dropout(0.5) ->
GCNConv(16, C)``, float32, with

* ``learnsolve``: :class:`learnsolve.nn.GCN` on a ``CSRMatrix`` adjacency. The
  graph is fixed, so the normalised adjacency is computed on the first step and
  reused (cached by values and version);
* ``ls Â/step``: the same, with the normalisation recomputed every step (the
  adjacency passed as a new view of its values each time): what the cache saves;
* ``PyG``: ``torch_geometric.nn.GCNConv`` with an ``edge_index`` tensor, its
  default (``cached=False``: ``gcn_norm`` every step; messages gathered and
  scattered, the only ``edge_index`` path on a CPU without torch-sparse);
* ``PyG cached``: the same with ``cached=True``;
* ``PyG csr``: ``torch_geometric.nn.GCNConv(cached=True)`` given the adjacency as
  a torch.sparse CSR tensor (``adj_t``): the fused ``torch.sparse.mm`` path;
* ``dense``: the dense reference layer of the paper's fig. 13 (normalisation
  from the dense adjacency every step), while the N x N float32 adjacency
  takes at most 2 GiB;
* ``ls train A`` and ``PyG train w``: the edge weights are parameters too
  (learnsolve: the adjacency's values; PyG: ``edge_weight``), so the
  normalisation and its backward run every step.

The graphs are random (:func:`learnsolve.nn.random_graph`, mean degree 5, the
paper's "about 5 incident edges per node") with 2 708 (Cora), 3 327 (CiteSeer),
19 717 (PubMed), 89 250 (Flickr), 133 769 and 343 565 nodes (the sizes of the
paper's table 4). Features: with ``--features dataset`` those of the dataset of
that size (1433, 3703, 500, 500; 500 for the others), with a number that many
for every size; random features and labels, 20 training nodes per class.
``--planetoid-root DIR`` uses the real Cora, CiteSeer and PubMed graphs and
features from the raw Planetoid files in DIR instead.

Timing: the implementations are run interleaved — repetition by repetition,
each in turn, in a rotating order — after one warm-up step each, and the
median over the repetitions is reported, so that the ratios are taken side by
side on a shared, noisy machine. On a machine where other processes keep
cores busy, OpenMP threads that wait for a descheduled peer at every parallel
region inflate every small-graph figure (tens of ms per step, all
implementations alike): run with ``--threads 1``, or with
``OMP_WAIT_POLICY=passive`` in the environment, for figures that mean
something there.

Examples
--------
Full run, writing the table and the plot::

    python bench/gcn.py --markdown bench/results/gcn-cpu.md --plot bench/results/gcn-cpu.png

Smoke test (two small graphs, few repetitions)::

    python bench/gcn.py --quick
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import learnsolve as ls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import markdown_table, ratio, text_table  # noqa: E402  (bench/ops.py)

from learnsolve.nn import GCN, load_planetoid, random_graph, split_masks

DENSE_LIMIT_BYTES = 2 * 2**30
HIDDEN = 16
MEAN_DEGREE = 5.0
NOT_RUN = "-"
FAILED = "n/a"

# (name, nodes, features of the dataset, classes)
SIZES = [("Cora", 2708, 1433, 7), ("CiteSeer", 3327, 3703, 6), ("PubMed", 19717, 500, 3),
         ("Flickr", 89250, 500, 7), ("", 133769, 500, 7), ("", 343565, 500, 7)]
QUICK_SIZES = [SIZES[0], SIZES[2]]

IMPLS = ["learnsolve", "ls Â/step", "PyG", "PyG cached", "PyG csr", "dense", "ls train A",
         "PyG train w"]
PYG_FIXED = ["PyG", "PyG cached", "PyG csr"]


# ----------------------------------------------------------------------------- problem

@dataclass
class Problem:
    name: str
    adjacency: ls.CSRMatrix
    x: torch.Tensor
    labels: torch.Tensor
    train_mask: torch.Tensor
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return self.adjacency.shape[0]


def make_problem(name: str, n: int, features: int, classes: int, seed: int = 0) -> Problem:
    generator = torch.Generator().manual_seed(seed)
    adjacency = random_graph(n, MEAN_DEGREE, seed=seed, dtype=torch.float32)
    x = torch.randn(n, features, generator=generator)
    labels = torch.randint(classes, (n,), generator=generator)
    train, _, _ = split_masks(labels, classes, num_val=0, num_test=0, generator=generator)
    return Problem(name or f"random {n}", adjacency, x, labels, train, classes)


def planetoid_problem(root: str, name: str) -> Problem:
    data = load_planetoid(root, name)
    return Problem(name, data.adjacency, data.features, data.labels, data.train_mask,
                   data.num_classes)


# ----------------------------------------------------------------------------- models

class DenseGCNConv(torch.nn.Module):
    """The dense layer of the paper's fig. 13: ``D (A D X Θ + D X Θ) + b`` with
    ``D = (rowsum(A) + 1)^(-1/2)`` computed from the dense adjacency every call."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels))
        torch.nn.init.xavier_uniform_(self.weight)

    def forward(self, x, graph):
        d = (graph.sum(dim=1) + 1.0).rsqrt()
        h = d[:, None] * (x @ self.weight)
        return d[:, None] * (graph @ h + h) + self.bias


class TwoLayer(torch.nn.Module):
    """conv1 -> ReLU -> dropout(0.5) -> conv2, for the peers' layers."""

    def __init__(self, conv1, conv2, pass_weight: bool = False):
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2
        self.pass_weight = pass_weight

    def forward(self, x, graph, weight=None):
        extra = (weight,) if self.pass_weight else ()
        hidden = F.dropout(torch.relu(self.conv1(x, graph, *extra)), 0.5, self.training)
        return self.conv2(hidden, graph, *extra)


@dataclass
class Impl:
    """One implementation on one problem: ``step()`` runs one training step."""

    step: Callable[[], None]


def _trainer(model: torch.nn.Module, forward: Callable[[], torch.Tensor], problem: Problem,
             extra_params=()) -> Impl:
    optimizer = torch.optim.Adam([*model.parameters(), *extra_params], lr=0.01,
                                 weight_decay=5e-4)
    mask, labels = problem.train_mask, problem.labels
    model.train()

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(forward()[mask], labels[mask])
        loss.backward()
        optimizer.step()
    return Impl(step)


def build(name: str, p: Problem) -> Impl:
    fin, classes, x, A = p.x.shape[1], p.num_classes, p.x, p.adjacency
    if name == "learnsolve":
        model = GCN(fin, HIDDEN, classes)
        return _trainer(model, lambda: model(x, A), p)
    if name == "ls Â/step":
        model = GCN(fin, HIDDEN, classes)
        # a new view of the values each step: the normalisation cache misses (the
        # pattern-level caches, which depend on the structure only, still hit)
        return _trainer(model, lambda: model(x, A.with_values(A.values.view(-1))), p)
    if name == "ls train A":
        model = GCN(fin, HIDDEN, classes)
        weights = torch.nn.Parameter(A.values.clone())
        return _trainer(model, lambda: model(x, A.with_values(weights)), p, [weights])
    if name == "dense":
        if p.num_nodes ** 2 * 4 > DENSE_LIMIT_BYTES:
            raise MemoryError("dense adjacency over 2 GiB")
        graph = A.to_dense()
        model = TwoLayer(DenseGCNConv(fin, HIDDEN), DenseGCNConv(HIDDEN, classes))
        return _trainer(model, lambda: model(x, graph), p)
    from torch_geometric.nn import GCNConv as PyGConv  # the optional benchmark dependency
    # PyG's messages flow edge_index[0] -> edge_index[1]: entry (i, j) of A is j -> i
    edge_index = torch.stack([A.col_indices, A.row_indices()])
    if name in ("PyG", "PyG cached"):
        cached = name == "PyG cached"
        model = TwoLayer(PyGConv(fin, HIDDEN, cached=cached),
                         PyGConv(HIDDEN, classes, cached=cached))
        return _trainer(model, lambda: model(x, edge_index), p)
    if name == "PyG csr":
        adj_t = A.T.to_torch().detach()  # PyG takes the transposed adjacency
        model = TwoLayer(PyGConv(fin, HIDDEN, cached=True), PyGConv(HIDDEN, classes, cached=True))
        return _trainer(model, lambda: model(x, adj_t), p)
    if name == "PyG train w":
        weights = torch.nn.Parameter(A.values.clone())
        model = TwoLayer(PyGConv(fin, HIDDEN), PyGConv(HIDDEN, classes), pass_weight=True)
        return _trainer(model, lambda: model(x, edge_index, weights), p, [weights])
    raise ValueError(name)


# ----------------------------------------------------------------------------- timing

def time_problem(problem: Problem, impls: list[str], budget: float, max_reps: int,
                 notes: list[str], min_reps: int = 3) -> tuple[dict[str, float | str], int]:
    """Median seconds of one training step of each implementation, interleaved."""
    built: dict[str, Impl] = {}
    results: dict[str, float | str] = {}
    cost = 0.0
    for name in impls:
        torch.manual_seed(0)
        try:
            impl = build(name, problem)
            start = time.perf_counter()
            impl.step()  # warm-up: first-call work (pattern caches, the cached Â)
            cost += time.perf_counter() - start
            built[name] = impl
        except MemoryError:
            results[name] = NOT_RUN
        except Exception as error:  # a peer that fails must not stop the run
            notes.append(f"{problem.name}, {name}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:160]}")
            results[name] = FAILED
    reps = int(min(max_reps, max(min_reps, budget // max(cost, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in built}
    order = list(built)
    for rep in range(reps):
        for name in order[rep % len(order):] + order[:rep % len(order)]:
            start = time.perf_counter()
            built[name].step()
            samples[name].append(time.perf_counter() - start)
    results.update({name: statistics.median(times) for name, times in samples.items()})
    return results, reps


# ----------------------------------------------------------------------------- output

def format_time(seconds) -> str:
    if isinstance(seconds, str):
        return seconds
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.3g} ms"


def best(results: dict, names: list[str]):
    times = [results[n] for n in names if isinstance(results.get(n), float)]
    return min(times) if times else NOT_RUN


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = (["graph", "N", "nnz(A)", "features", "reps"] + IMPLS
              + ["PyG/ls", "PyG best/ls", "Â/step / ls", "PyG train w / ls train A"])
    lines = []
    for row in rows:
        r = row["results"]
        lines.append([row["name"], f"{row['n']:,}", f"{row['nnz']:,}", str(row["features"]),
                      str(row["reps"])]
                     + [format_time(r.get(name, NOT_RUN)) for name in IMPLS]
                     + [ratio(r.get("PyG"), r.get("learnsolve")),
                        ratio(best(r, PYG_FIXED), r.get("learnsolve")),
                        ratio(r.get("ls Â/step"), r.get("learnsolve")),
                        ratio(r.get("PyG train w"), r.get("ls train A"))])
    return header, lines


def plot(sections: list[tuple[str, list[dict]]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    styles = {"learnsolve": ("C0", "o", "-"), "ls Â/step": ("C0", "o", ":"),
              "ls train A": ("C0", "s", "--"), "PyG": ("C1", "^", "-"),
              "PyG cached": ("C1", "^", ":"), "PyG csr": ("C2", "v", "-"),
              "PyG train w": ("C1", "D", "--"), "dense": ("C3", "x", "-")}
    fig, axes = plt.subplots(1, len(sections), figsize=(6.2 * len(sections), 4.8),
                             squeeze=False)
    for ax, (title, rows) in zip(axes[0], sections):
        for name in IMPLS:
            points = [(row["nnz"], row["results"][name]) for row in rows
                      if isinstance(row["results"].get(name), float)]
            if points:
                color, marker, style = styles[name]
                ax.loglog(*zip(*points), color=color, marker=marker, linestyle=style, label=name)
        ax.set_xlabel("edges (stored entries of A)")
        ax.set_ylabel("one training epoch (s)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def machine_info(threads: int) -> list[str]:
    cpu = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                       cpu)
    try:
        import torch_geometric
        pyg = f"torch_geometric {torch_geometric.__version__}"
    except ImportError:
        pyg = "torch_geometric not installed (its columns are n/a)"
    return [f"torch {torch.__version__}, learnsolve {ls.__version__}, {pyg}, "
            f"python {platform.python_version()}",
            f"CPU: {cpu}; {os.cpu_count()} logical CPUs; torch threads: {threads}; "
            f"load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg())]


LEGEND = ("One training step (forward, loss, backward, Adam step) of GCNConv(F, 16) -> ReLU -> "
          "dropout(0.5) -> GCNConv(16, C), float32, CPU; median over the repetitions (reps), "
          "implementations interleaved. learnsolve: Â cached (fixed graph); ls Â/step: Â "
          "recomputed each step; PyG: torch_geometric GCNConv with edge_index (default, "
          "cached=False, gather/scatter messages); PyG cached: cached=True; PyG csr: "
          "cached=True with a torch.sparse CSR adj_t (torch.sparse.mm); dense: the paper's "
          "fig. 13 dense layer; ls train A / PyG train w: edge weights trained too. "
          "Ratios > 1: learnsolve faster. PyG best: the fastest of PyG, PyG cached, PyG csr. "
          f"'{NOT_RUN}': not run (dense adjacency over 2 GiB); '{FAILED}': failed (below).")


# ----------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="two small graphs (2 708 and 19 717 nodes), few repetitions")
    parser.add_argument("--features", nargs="+", default=["dataset", "32"],
                        help="feature counts to run: 'dataset' (each size's dataset) and/or "
                             "numbers (default: dataset 32)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: all)")
    parser.add_argument("--planetoid-root", metavar="DIR",
                        help="use the real Cora/CiteSeer/PubMed graphs from raw files in DIR")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables here")
    parser.add_argument("--plot", metavar="PATH", help="write the time-vs-edges plot here")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads: expected a positive count")
    for value in args.features:
        if value != "dataset" and not (value.isdigit() and int(value) > 0):
            parser.error(f"--features: expected 'dataset' or positive integers, got {value!r}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(args.threads)
    budget, min_reps, max_reps = (1.0, 3, 3) if args.quick else (8.0, 5, 11)
    sizes = QUICK_SIZES if args.quick else SIZES
    started = time.perf_counter()
    info = machine_info(args.threads)
    print("\n".join(info), end="\n\n")
    markdown = ["# learnsolve GCN benchmark (paper section 4.4, table 4, fig. 16)", "",
                *[f"- {line}" for line in info], "", LEGEND]
    sections = []
    for setting in args.features:
        rows, notes = [], []
        for name, n, dataset_features, classes in sizes:
            features = dataset_features if setting == "dataset" else int(setting)
            if args.planetoid_root and name in ("Cora", "CiteSeer", "PubMed") and \
                    setting == "dataset":
                problem = planetoid_problem(args.planetoid_root, name)
            else:
                problem = make_problem(name, n, features, classes)
            results, reps = time_problem(problem, IMPLS, budget, max_reps, notes, min_reps)
            rows.append(dict(name=problem.name, n=problem.num_nodes, nnz=problem.adjacency.nnz,
                             features=problem.x.shape[1], reps=reps, results=results))
            print(f"  {problem.name}: N = {problem.num_nodes:,}, "
                  + ", ".join(f"{k} {format_time(v)}" for k, v in results.items()), flush=True)
            del problem
        title = ("features of the dataset of each size (500 beyond PubMed)"
                 if setting == "dataset" else f"{setting} features")
        header, lines = table(rows)
        print(f"\n{title}", text_table(header, lines), *notes, "", sep="\n")
        markdown += ["", f"## {title}", "", markdown_table(header, lines), "",
                     *[f"- {note}" for note in notes]]
        sections.append((title, rows))
    print(LEGEND)
    loads = " ".join(f"{x:.2f}" for x in os.getloadavg())
    end = f"total time {time.perf_counter() - started:.0f} s; load average at end: {loads}"
    print(end)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown + ["", f"- {end}", ""]))
    if args.plot:
        plot(sections, args.plot)


if __name__ == "__main__":
    main()
