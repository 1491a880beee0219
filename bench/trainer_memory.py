"""Memory of the Trainer's step rollback: the old copy of the whole state (``_Snapshot``,
``learnsolve/train.py`` at git HEAD before the ``learnsolve/train/`` package) against the
new :class:`~learnsolve.train.Rollback` (trainable parameters and optimizer state, in
reused buffers).

The model: an ``nn.Sequential`` of Linear(128, 128) layers (trainable) with a frozen
Linear(1024, 1024) and a 64 MiB registered buffer, trained with Adam. Each implementation
runs in a fresh process; printed: the bytes the rollback holds per step (the sum of
``nbytes`` of its tensors) and the growth of the peak RSS over the fit.

    .venv/bin/python bench/trainer_memory.py [--steps 20] [--out bench/results/trainer-memory.md]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learnsolve.problems import poisson_1d  # noqa: E402

OLD_COMMIT = "2f60f49"      # the last commit with learnsolve/train.py


def old_trainer_class():
    """``Trainer`` of ``learnsolve/train.py`` at OLD_COMMIT, loaded into a scratch package."""
    folder = Path(tempfile.mkdtemp()) / "_old_train"
    folder.mkdir()
    for name in ("train", "callbacks"):
        text = subprocess.run(["git", "show", f"{OLD_COMMIT}:learnsolve/{name}.py"], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout
        for module in ("evaluation", "core.validation", "problems.problem"):
            text = text.replace(f"from .{module} import", f"from learnsolve.{module} import")
        (folder / f"{name}.py").write_text(text)
    package = types.ModuleType("_old_train")
    package.__path__ = [str(folder)]
    sys.modules["_old_train"] = package
    spec = importlib.util.spec_from_file_location("_old_train.train", folder / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_old_train.train"] = module
    spec.loader.exec_module(module)
    return module.Trainer


class Net(nn.Module):
    """Linear(128, 128) layers with tanh, a frozen Linear(1024, 1024), a 64 MiB buffer."""

    def __init__(self, layers: int = 4, width: int = 128):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(layers)
                                    for m in (nn.Linear(width, width), nn.Tanh())])
        self.frozen = nn.Linear(1024, 1024).requires_grad_(False)
        self.register_buffer("table", torch.zeros(16 * 2**20))      # 64 MiB of float32

    def loss(self, problem, X):
        return self.body(X.T.float()).square().mean()


def tensor_bytes(state) -> int:
    if isinstance(state, torch.Tensor):
        return state.nbytes
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024      # Linux: KiB


def run(impl: str, steps: int) -> dict:
    """Fit one epoch of ``steps`` steps (one problem each) and measure."""
    torch.manual_seed(0)
    model = Net()
    problem = poisson_1d(128)
    held = []

    if impl == "old":
        Trainer = old_trainer_class()

        def loss(model, problem, X):
            # The previous step's snapshot is held while this step's loss is computed.
            snapshot = trainer._snapshot
            if snapshot is not None:
                held.append(tensor_bytes(snapshot.model) + tensor_bytes(snapshot.optimizer))
            return model.loss(problem, X)
        trainer = Trainer(model, loss=loss, epochs=1, batch_size=8, seed=0, progress=False)
    else:
        from learnsolve.train import Trainer

        def loss(model, problem, X):
            if trainer.rollback_.held:
                held.append(trainer.rollback_.nbytes)
            return model.loss(problem, X)
        trainer = Trainer(model, loss=loss, epochs=1, rhs_per_problem=8, seed=0,
                          progress=False)
    trainable = sum(p.nbytes for p in model.parameters() if p.requires_grad)
    # Warm-up outside the trainer (thread pools, the first backward, the modules the
    # first optimizer imports: about 70 MiB), so that the growth measured is the fit's own.
    model.loss(problem, problem.random_rhs(8, seed=0)).backward()
    torch.optim.Adam(model.parameters())
    model.zero_grad(set_to_none=True)
    before = peak_rss()
    trainer.fit([problem] * steps)
    optimizer_state = tensor_bytes(list(trainer.optimizer_.state.values()))
    return {"impl": impl, "held_per_step": max(held), "steps": steps,
            "trainable": trainable, "optimizer_state": optimizer_state,
            "buffers": sum(b.nbytes for b in model.buffers()),
            "frozen": sum(p.nbytes for p in model.parameters() if not p.requires_grad),
            "rss_growth": peak_rss() - before,
            "params": [p.detach().double().sum().item() for p in model.parameters()]}


def mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB ({n} B)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--impl", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.impl:
        print(json.dumps(run(args.impl, args.steps)))
        return
    results = {}
    for impl in ("old", "new"):
        out = subprocess.run([sys.executable, __file__, "--impl", impl, "--steps",
                              str(args.steps)], check=True, capture_output=True, text=True)
        results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
    old, new = results["old"], results["new"]
    lines = [
        "# Trainer rollback memory (bench/trainer_memory.py)",
        "",
        f"Command: `.venv/bin/python bench/trainer_memory.py --steps {args.steps}` (CPU, "
        f"torch {torch.__version__}). Model: 4 x Linear(128, 128) trainable "
        f"({mib(new['trainable'])}), a frozen Linear(1024, 1024) ({mib(new['frozen'])}), "
        f"a registered buffer ({mib(new['buffers'])}); Adam (state {mib(new['optimizer_state'])}"
        f"); one epoch of {args.steps} steps, each implementation in a fresh process.",
        "",
        "| implementation | bytes held by the rollback per step | peak RSS growth over fit |",
        "|---|---|---|",
        f"| old `_Snapshot` (clone of model.state_dict() + optimizer.state_dict() each step) "
        f"| {mib(old['held_per_step'])} | {mib(old['rss_growth'])} |",
        f"| new `Rollback` (trainable parameters + optimizer state, reused buffers) "
        f"| {mib(new['held_per_step'])} | {mib(new['rss_growth'])} |",
        "",
        f"New rollback bytes = trainable parameters + optimizer state: "
        f"{new['held_per_step'] == new['trainable'] + new['optimizer_state']}. "
        f"Same trained parameters (old and new): {old['params'] == new['params']}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
