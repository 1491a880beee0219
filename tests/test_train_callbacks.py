"""The Trainer's hooks at step and gradient level, problems_per_step, the Checkpoint
callback, the deprecated batch_size and what the step rollback keeps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from learnsolve.problems import poisson_1d
from learnsolve.train import Callback, Checkpoint, Trainer

F64 = torch.float64


class NodeJacobi(nn.Module):
    """A Jacobi weight per node (n = 8), a frozen weight and a large buffer."""

    def __init__(self, n: int = 8):
        super().__init__()
        self.omega = nn.Parameter(torch.linspace(0.5, 1.0, n, dtype=F64))
        self.frozen = nn.Parameter(torch.ones(n, dtype=F64), requires_grad=False)
        self.register_buffer("table", torch.zeros(10_000, dtype=F64))

    def loss(self, problem, X):
        A = problem.A
        E = X - (self.omega * self.frozen / A.diagonal())[:, None] * (A @ X)
        return (E * (A @ E)).sum(0).mean()


def problems(count: int = 3):
    return [poisson_1d(8, dtype=F64) for _ in range(count)]


class Record(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("fit_start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append("epoch_start")

    def on_step_start(self, trainer, step, problems, X):
        self.events.append("step_start")

    def on_gradient(self, trainer, step, loss):
        self.events.append("gradient")

    def on_step_end(self, trainer, step, loss):
        self.events.append("step_end")

    def on_epoch_end(self, trainer, epoch, logs):
        self.events.append("epoch_end")

    def on_fit_end(self, trainer):
        self.events.append("fit_end")


def test_hooks_come_in_order():
    record = Record()
    Trainer(NodeJacobi(), epochs=1, seed=0, progress=False, callbacks=[record]).fit(problems(3))
    assert record.events == ["fit_start", "epoch_start",
                             *["step_start", "gradient", "step_end"] * 3,
                             "epoch_end", "fit_end"]


def test_on_gradient_can_change_the_gradients():
    class Zero(Callback):
        def on_gradient(self, trainer, step, loss):
            for p in trainer.model.parameters():
                if p.grad is not None:
                    p.grad.zero_()

    model = NodeJacobi()
    start = model.omega.detach().clone()
    Trainer(model, optimizer="sgd", lr=0.5, epochs=2, seed=0, progress=False,
            callbacks=[Zero()]).fit(problems(2))
    assert torch.equal(model.omega, start)


@pytest.mark.parametrize("k", [2, 3])
def test_a_step_averages_the_losses_of_its_problems(k):
    class Grad(Callback):
        def on_gradient(self, trainer, step, loss):
            if step == 0:
                self.grad, self.loss = trainer.model.omega.grad.clone(), loss

    ps = [poisson_1d(n, dtype=F64) for n in (8, 8, 8)]
    model, grad = NodeJacobi(), Grad()
    start = model.omega.detach().clone()
    trainer = Trainer(model, optimizer="sgd", lr=0.1, epochs=1, seed=4, progress=False,
                      problems_per_step=k, callbacks=[grad], rhs_per_problem=5)
    trainer.fit(ps)
    # Again by hand: the epoch's order, the vectors of its first step, their mean loss.
    generator = torch.Generator().manual_seed(4)
    order = torch.randperm(3, generator=generator).tolist()
    epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    first = [ps[i] for i in order[:k]]
    X = [p.random_rhs(5, seed=vector_seed(epoch_seed, position), normalize=True,
                      draw_dtype=torch.float32)
         for position, p in enumerate(first)]
    reference = NodeJacobi()
    losses = [reference.loss(p, x) for p, x in zip(first, X)]
    mean = sum(losses) / k
    (expected,) = torch.autograd.grad(mean, reference.omega)
    torch.testing.assert_close(grad.grad, expected)
    assert grad.loss == pytest.approx(float(mean.detach()), rel=1e-14)
    if k == 3:      # the epoch's one step
        torch.testing.assert_close(model.omega.detach(), start - 0.1 * expected)


def test_an_epoch_has_ceil_steps_and_the_loss_is_the_mean_over_its_problems():
    losses = []

    class Steps(Callback):
        def on_step_end(self, trainer, step, loss):
            losses.append((step, loss))

    trainer = Trainer(NodeJacobi(), optimizer="sgd", lr=1e-12, epochs=1, seed=0,
                      progress=False, problems_per_step=2, callbacks=[Steps()])
    trainer.fit(problems(5))
    assert [s for s, _ in losses] == [0, 1, 2]
    expected = (2 * losses[0][1] + 2 * losses[1][1] + losses[2][1]) / 5
    assert trainer.history_.loss[0] == pytest.approx(expected, rel=1e-14)


def vector_seed(epoch_seed: int, position: int) -> int:
    """The seed of the vectors at ``position`` of an epoch (the sampling module's rule:
    splitmix64, written out here with numpy's wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.uint64(epoch_seed) + np.uint64(position + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return int((z ^ (z >> np.uint64(31))) >> np.uint64(1))


def by_hand(seed: int, epochs: int, ps, rhs: int, lr: float):
    """The one-problem-a-step training, written out: a shuffled order and a vector seed per
    epoch, a block of vectors per problem from the seed and its position, an Adam step on
    its loss."""
    model = NodeJacobi()
    optimizer = torch.optim.Adam([model.omega], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(epochs):
        values = []
        order = torch.randperm(len(ps), generator=generator).tolist()
        epoch_seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        for position, i in enumerate(order):
            X = ps[i].random_rhs(rhs, seed=vector_seed(epoch_seed, position), normalize=True,
                                 draw_dtype=torch.float32)

            def closure():
                optimizer.zero_grad()
                loss = model.loss(ps[i], X)
                loss.backward()
                values.append(float(loss.detach()))
                return loss
            optimizer.step(closure)
        means.append(sum(values) / len(values))
    return model.omega.detach(), means


def test_one_problem_per_step_is_the_training_written_out_bit_for_bit():
    ps = [poisson_1d(n, dtype=F64) for n in (8, 8, 8, 8)]
    model = NodeJacobi()
    trainer = Trainer(model, lr=0.05, epochs=4, seed=11, rhs_per_problem=3, progress=False,
                      problems_per_step=1).fit(ps)
    omega, means = by_hand(11, 4, ps, 3, 0.05)
    assert torch.equal(model.omega.detach(), omega)
    assert trainer.history_.loss.tolist() == pytest.approx(means, rel=1e-15)


def test_checkpoint_writes_files_that_load_and_resume(tmp_path):
    def trainer(epochs, callbacks):
        return Trainer(NodeJacobi(), lr=0.05, epochs=epochs, seed=2, progress=False,
                       callbacks=callbacks)

    straight = trainer(6, [Checkpoint(tmp_path / "x.pt")]).fit(problems(3))
    save = Checkpoint(tmp_path / "at{epoch}.pt", every=2)
    trainer(6, [save]).fit(problems(3))
    assert [p.rsplit("/", 1)[-1] for p in save.saved_] == ["at2.pt", "at4.pt", "at6.pt"]
    resumed = trainer(6, [Checkpoint(tmp_path / "y.pt")]).load(save.saved_[1])
    assert resumed.epochs_done_ == 4
    resumed.fit(problems(3))
    assert torch.equal(resumed.model.omega, straight.model.omega)
    assert resumed.history_.loss.tolist() == straight.history_.loss.tolist()
    assert torch.load(save.saved_[1], weights_only=True)["problems_per_step"] == 1


def test_batch_size_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="batch_size is deprecated"):
        old = Trainer(NodeJacobi(), epochs=2, seed=0, progress=False, batch_size=3)
    new = Trainer(NodeJacobi(), epochs=2, seed=0, progress=False, rhs_per_problem=3)
    assert old.rhs_per_problem == 3
    with pytest.warns(DeprecationWarning):
        assert old.batch_size == 3
    old.fit(problems(2))
    new.fit(problems(2))
    assert torch.equal(old.model.omega, new.model.omega)


@pytest.mark.parametrize("where", [None, "cpu"])
def test_the_rollback_keeps_the_trainable_parameters_and_the_optimizer_state(where):
    seen = []

    class Bytes(Callback):
        def on_step_start(self, trainer, step, problems, X):
            if step == 2:
                state = [t for s in trainer.optimizer_.state.values() for t in s.values()
                         if isinstance(t, torch.Tensor)]
                seen.append((trainer.rollback_.nbytes, trainer.rollback_.held,
                             sum(t.nbytes for t in state)))

    model = NodeJacobi()
    Trainer(model, epochs=1, seed=0, progress=False, callbacks=[Bytes()],
            rollback_device=where).fit(problems(3))
    ((held_bytes, held, state_bytes),) = seen
    assert held and held_bytes == model.omega.nbytes + state_bytes
    assert held_bytes < model.table.nbytes


def test_a_nan_in_the_middle_of_a_multi_problem_epoch_rolls_back():
    calls = []

    def loss(model, problem, X):
        calls.append(1)
        value = model.loss(problem, X)
        return value * float("nan") if len(calls) == 5 else value

    model = NodeJacobi()
    trainer = Trainer(model, loss=loss, epochs=2, seed=0, progress=False,
                      problems_per_step=2)
    with pytest.warns(RuntimeWarning, match=r"non-finite loss at epoch 1, problems \["):
        trainer.fit(problems(4))
    assert trainer.epochs_done_ == 1 and trainer.stop_reason_ == "non-finite loss"
