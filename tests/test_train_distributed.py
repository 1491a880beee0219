"""Trainer over several processes (torch.distributed, gloo on the CPU): two real processes
train as one does, read only their shares, write on rank 0, resume with another number of
processes, and end with the error of a rank that raises instead of hanging."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.multiprocessing import ProcessRaisedException

from distributed_workers import callbacks, history, parameters, spawn, training
from learnsolve.problems import ProblemSet, poisson_1d
from learnsolve.solvers.jacobi import Jacobi
from learnsolve.train import Trainer
from learnsolve.train.distributed import ProcessGroup, warn_idle

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")


def assert_close_parameters(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-14)


def assert_close_history(got: list[dict], expected: list[dict]) -> None:
    assert [row.keys() for row in got] == [row.keys() for row in expected]
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-14)


def one_process(kind: str, **options):
    trainer, problems, validation = training(kind, **options)
    trainer.fit(problems, validation=validation)
    return trainer


@pytest.mark.parametrize("kind", ["neural", "jacobi"])
def test_two_processes_train_as_one(kind, tmp_path):
    """Same global steps: the parameters and the history of one process, to rounding,
    for a batched network with uneven shares and an idle rank, and for LBFGS."""
    reference = one_process(kind)
    ranks = spawn("train", tmp_path, kind=kind, save=str(tmp_path / "at.pt"))
    for rank, result in enumerate(ranks):
        assert result["world_size"] == 2
        assert_close_parameters(result["parameters"], parameters(reference))
        assert_close_history(result["history"], history(reference))
    assert "training: 100%" in ranks[0]["bar"] and ranks[1]["bar"] == ""
    if kind == "neural":
        # The problems were made where they were trained, each by one rank an epoch.
        made = [set(r["made"]) for r in ranks]
        assert made[0] | made[1] == set(range(7))
        assert len(ranks[0]["made"]) + len(ranks[1]["made"]) < 3 * 7   # not all, every epoch


def test_each_rank_makes_only_its_share_of_a_lazy_set(tmp_path):
    ranks = spawn("train", tmp_path, kind="neural", epochs=1, save=str(tmp_path / "at.pt"))
    made = [set(r["made"]) for r in ranks]
    assert made[0].isdisjoint(made[1]) and made[0] | made[1] == set(range(7))


def test_a_training_saved_by_two_processes_resumes_in_one_and_back(tmp_path):
    straight = one_process("neural")
    spawn("train", tmp_path, kind="neural", epochs=2, save=str(tmp_path / "two.pt"))
    assert sorted(os.listdir(tmp_path)) == ["rank0.pt", "rank1.pt", "two.pt"]   # rank 0 wrote
    resumed, problems, validation = training("neural", callbacks=callbacks(tmp_path / "x.pt"))
    resumed.load(tmp_path / "two.pt").fit(problems, validation=validation)
    assert_close_parameters(parameters(resumed), parameters(straight))
    assert_close_history(history(resumed), history(straight))

    first, problems, validation = training("neural", epochs=1,
                                           callbacks=callbacks(tmp_path / "one.pt"))
    first.fit(problems, validation=validation)
    os.makedirs(tmp_path / "back")
    ranks = spawn("train", tmp_path / "back", kind="neural", load=str(tmp_path / "one.pt"),
                  save=str(tmp_path / "back" / "at.pt"))
    assert_close_parameters(ranks[0]["parameters"], parameters(straight))
    assert_close_history(ranks[1]["history"], history(straight))


def test_a_rank_that_raises_ends_the_run_with_its_error(tmp_path):
    with pytest.raises(ProcessRaisedException, match="a loss failed on rank 1"):
        spawn("fail", tmp_path, timeout=60)


def test_ranks_must_agree_on_the_seed(tmp_path):
    with pytest.raises(ProcessRaisedException, match="seed: expected the same value on every "
                                                     "process"):
        spawn("seeds", tmp_path, timeout=60)


def test_distributed_needs_a_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    trainer = Trainer(Jacobi(1.0, num_nodes=8), epochs=1, progress=False, distributed=True)
    with pytest.raises(ValueError, match="distributed: expected a process group"):
        trainer.fit(poisson_1d(8))
    alone = Trainer(Jacobi(1.0, num_nodes=8), epochs=1, progress=False).fit(poisson_1d(8))
    assert alone.group_ is None
    with pytest.raises(TypeError, match="distributed"):
        Trainer(Jacobi(1.0, num_nodes=8), distributed="yes")


def test_fewer_problems_a_step_than_processes_warns():
    with pytest.warns(UserWarning, match="problems_per_step=1 with 2 processes.*1 of them "
                                         "idle at every step"):
        warn_idle(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_idle(2, 2)


def test_shares_are_every_world_size_th_position():
    group = ProcessGroup.__new__(ProcessGroup)
    group.world_size = 3
    shares = []
    for group.rank in range(3):
        shares.append(group.share(list(range(7))))
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]


def test_shares_are_balanced_by_sizes_every_process_knows(tmp_path):
    group = ProcessGroup.__new__(ProcessGroup)
    group.world_size = 2
    costs = [10, 1, 1, 1, 9, 1]
    shares = []
    for group.rank in range(2):
        shares.append(group.share(list(range(6)), costs))
    assert shares == [[0, 2, 5], [1, 3, 4]]          # 10 + 1 + 1 and 1 + 1 + 9
    # Known without reading: a list's problems, a loaded set's index; a factory set's
    # sizes are not (what one process made, another did not).
    listed = ProblemSet([poisson_1d(n) for n in (4, 6)])
    assert [listed.nnz_of(i) for i in range(2)] == [10, 16]
    assert listed.to(torch.float64).nnz_of(1) == 16
    made = ProblemSet(lambda seed, i: poisson_1d(4 + i), 2)
    made[0]
    assert made.nnz_of(0) is None
    loaded = ProblemSet.load(listed.save(tmp_path / "set"))
    assert loaded[[1]].nnz_of(0) == 16 and not loaded._cache


def test_torchrun_runs_the_example_with_two_processes(tmp_path):
    """The README's launch line, on the example script at a tiny size."""
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2",
               str(ROOT / "examples" / "train_distributed.py"), "--problems", "8",
               "--epochs", "2", "--out", str(tmp_path / "model.pt")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stdout
    assert torch.load(tmp_path / "model.pt", weights_only=True)
