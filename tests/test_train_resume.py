"""Resuming a training stopped in the middle of an epoch (an interrupt, an exception, a
non-finite loss), in place or through save/load: bit for bit the training never stopped."""
from __future__ import annotations

import math

import pytest
import torch

from learnsolve.train import EarlyStopping, LRScheduler
from learnsolve.problems import poisson_2d
from learnsolve.solvers.cg import PCG
from learnsolve.solvers.factor import LowerFactor
from learnsolve.train import Trainer

F64 = torch.float64
PROBLEMS = 3
EPOCHS = 12
#: The fault strikes in the 2nd problem of epoch 10: the step counted from 0.
STEP = 10 * PROBLEMS + 1


class Faults:
    """The model's loss, with a fault at call ``at`` (counted from 0): a KeyboardInterrupt
    raised in the loss after its forward pass or in its backward pass, or a NaN loss.
    ``at=None``: no fault."""

    def __init__(self, at: int | None = None, fault: str = "loss"):
        self.at, self.fault, self.calls = at, fault, 0

    def __call__(self, model, problem, X):
        call, self.calls = self.calls, self.calls + 1
        loss = model.loss(problem, X)
        if call == self.at and self.fault == "loss":
            raise KeyboardInterrupt
        if call == self.at and self.fault == "backward":
            loss.register_hook(interrupt)
        if call == self.at and self.fault == "nan":
            return loss * math.nan
        return loss


def interrupt(*args):
    raise KeyboardInterrupt


class InterruptedAdam(torch.optim.Adam):
    """Adam raising a KeyboardInterrupt after its update in step ``at`` (from 0)."""

    def __init__(self, params, lr, at=None):
        super().__init__(params, lr=lr)
        self.at, self.steps = at, 0

    def step(self, closure):
        loss = super().step(closure)
        step, self.steps = self.steps, self.steps + 1
        if step == self.at:
            raise KeyboardInterrupt
        return loss


def lbfgs(params):
    """Two iterations a step, so two closure calls: the second after the first update."""
    return torch.optim.LBFGS(params, lr=0.1, max_iter=2)


def pcg(problem) -> PCG:
    return PCG(M=LowerFactor.banded(problem, 1), maxiter=4, rtol=0.0)


def problems():
    return [poisson_2d(6, dtype=F64) for _ in range(PROBLEMS)]


def trainer(loss=None, optimizer="adam", epochs=EPOCHS) -> Trainer:
    return Trainer(pcg(problems()[0]), loss=loss or Faults(), optimizer=optimizer, lr=0.02,
                   epochs=epochs, rhs_per_problem=4, seed=7, progress=False, callbacks=[
                       LRScheduler(torch.optim.lr_scheduler.LambdaLR,
                                   lr_lambda=lambda e: 0.5 ** (e // 4)),
                       # Not restore_best: the parameters compared are the last ones.
                       EarlyStopping(patience=100, restore_best=False)])


def same(a, b) -> bool:
    """Equal state dicts: tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def without_time(history) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in history]


def assert_same_training(resumed: Trainer, straight: Trainer) -> None:
    assert same(resumed.model.state_dict(), straight.model.state_dict())
    assert same(resumed.optimizer_.state_dict(), straight.optimizer_.state_dict())
    assert torch.equal(resumed.generator_.get_state(), straight.generator_.get_state())
    assert without_time(resumed.history_) == without_time(straight.history_)
    assert all(row["time"] > 0 for row in resumed.history_)
    assert all(same(c.state_dict(), d.state_dict())
               for c, d in zip(resumed.callbacks, straight.callbacks))
    assert resumed.epochs_done_ == len(resumed.history_) == EPOCHS
    assert resumed.stop_reason_ == straight.stop_reason_ == "epochs"


def interrupted(fault: str) -> tuple[Trainer, object]:
    """A trainer whose fit is interrupted in step STEP, and the optimizer to resume with."""
    if fault == "optimizer step":
        return trainer(optimizer=lambda ps: InterruptedAdam(ps, lr=0.02, at=STEP)), \
            lambda ps: InterruptedAdam(ps, lr=0.02)
    if fault == "lbfgs closure":
        return trainer(Faults(2 * STEP + 1), optimizer=lbfgs), lbfgs
    return trainer(Faults(STEP, fault)), "adam"


@pytest.mark.parametrize("fault", ["loss", "backward", "optimizer step", "lbfgs closure"])
@pytest.mark.parametrize("how", ["save and load", "in place"])
def test_an_interrupt_in_a_step_resumes_bit_for_bit(fault, how, tmp_path):
    stopped, optimizer = interrupted(fault)
    straight = trainer(optimizer=optimizer).fit(problems())
    if fault == "lbfgs closure":
        assert straight.loss.calls == 2 * EPOCHS * PROBLEMS
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(problems())
    assert stopped.epochs_done_ == len(stopped.history_) == 10
    if how == "in place":
        stopped.fit(problems())
        assert_same_training(stopped, straight)
        return
    path = tmp_path / "trainer.pt"
    stopped.save(path)
    resumed = trainer(optimizer=optimizer).load(path)
    assert resumed.epochs_done_ == 10
    assert_same_training(resumed.fit(problems()), straight)
    state = torch.load(path, weights_only=True)
    assert state["version"] == 3 and state["progress"]["epoch"] == 10
    assert len(state["progress"]["losses"]) == STEP - 10 * PROBLEMS


def test_an_interrupt_after_the_epochs_steps_resumes_bit_for_bit(tmp_path):
    # In a metric, measured after the steps of epoch 10: the epoch's entry is written once.
    def with_metric(at=None):
        calls = []

        def metric(model, problem):
            calls.append(None)
            if len(calls) == at:
                raise KeyboardInterrupt
            return float(sum(p.detach().sum() for p in model.parameters()))

        measured = trainer()
        measured.metrics = {"sum": metric}
        return measured

    straight = with_metric().fit(problems())
    stopped = with_metric(10 * PROBLEMS + 2)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(problems())
    stopped.save(tmp_path / "trainer.pt")
    resumed = with_metric().load(tmp_path / "trainer.pt").fit(problems())
    assert "sum" in resumed.history_.keys()
    assert_same_training(resumed, straight)
    state = torch.load(tmp_path / "trainer.pt", weights_only=True)
    assert len(state["progress"]["losses"]) == PROBLEMS


@pytest.mark.parametrize("at, optimizer", [
    (10 * PROBLEMS, "adam"),                    # the first step of epoch 10
    (STEP, "adam"),                             # in its middle
    (2 * STEP + 1, lbfgs),                      # after LBFGS's first update of a step
], ids=["epoch start", "mid-epoch", "lbfgs"])
def test_a_non_finite_loss_stops_at_a_step_boundary_and_training_continues(at, optimizer,
                                                                            tmp_path):
    straight = trainer(optimizer=optimizer).fit(problems())
    stopped = trainer(Faults(at, "nan"), optimizer=optimizer)
    with pytest.warns(RuntimeWarning, match="non-finite loss at epoch 10"):
        stopped.fit(problems())
    # Epoch 10 is not done; epochs 0 to 9 are, none of their steps undone.
    assert stopped.epochs_done_ == len(stopped.history_) == 10
    if at == 10 * PROBLEMS:
        ten = trainer(optimizer=optimizer, epochs=10).fit(problems())
        assert same(stopped.model.state_dict(), ten.model.state_dict())
        assert same(stopped.optimizer_.state_dict(), ten.optimizer_.state_dict())
    stopped.save(tmp_path / "trainer.pt")
    stopped.loss.at = None
    assert_same_training(stopped.fit(problems()), straight)
    resumed = trainer(optimizer=optimizer).load(tmp_path / "trainer.pt")
    assert_same_training(resumed.fit(problems()), straight)


def test_checkpoint_versions(tmp_path):
    straight = trainer().fit(problems())
    # Version 1 (before mid-epoch resume): saved at the end of an epoch, no progress.
    first = trainer(epochs=5).fit(problems())
    first.save(tmp_path / "v2.pt")
    state = torch.load(tmp_path / "v2.pt", weights_only=True)
    assert state["version"] == 3 and state["progress"] is None
    del state["progress"]
    state.update(version=1, epochs_done=5)
    torch.save(state, tmp_path / "v1.pt")
    resumed = trainer().load(tmp_path / "v1.pt")
    assert resumed.epochs_done_ == 5
    assert_same_training(resumed.fit(problems()), straight)
    state["version"] = 4
    torch.save(state, tmp_path / "v4.pt")
    with pytest.raises(ValueError, match="path: expected a Trainer.save file of version 1 to 3, "
                                         "got version 4"):
        trainer().load(tmp_path / "v4.pt")


def test_a_version_2_file_saved_in_an_epoch_resumes_on_new_vectors_with_a_warning(tmp_path):
    stopped = trainer(Faults(STEP))
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(problems())
    stopped.save(tmp_path / "v3.pt")
    state = torch.load(tmp_path / "v3.pt", weights_only=True)
    del state["progress"]["seed"]      # version 2 drew the vectors step after step
    state["version"] = 2
    torch.save(state, tmp_path / "v2.pt")
    with pytest.warns(UserWarning, match="saved in the middle of an epoch by an older "
                                         "version.*new vectors"):
        resumed = trainer().load(tmp_path / "v2.pt")
    assert resumed.fit(problems()).epochs_done_ == EPOCHS
    again = trainer()
    with pytest.warns(UserWarning, match="older version"):
        again.load(tmp_path / "v2.pt")
    assert same(again.fit(problems()).model.state_dict(), resumed.model.state_dict())


def test_resuming_an_epoch_needs_as_many_problems():
    stopped = trainer(Faults(STEP))
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(problems())
    with pytest.raises(ValueError, match="problems: expected the 3 problems epoch 10 was "
                                         "stopped in the middle of, got 2"):
        stopped.fit(problems()[:2])
