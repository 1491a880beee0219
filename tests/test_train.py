"""The Trainer and its callbacks: learning, reproducibility, stopping, resuming, evaluation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from matplotlib.figure import Figure
from torch import nn

from cases import DEVICES
from learnsolve.train import Callback, EarlyStopping, LRScheduler
from learnsolve.problems import Problem, ProblemSet, poisson_1d, poisson_2d
from learnsolve.evaluation import Evaluation
from learnsolve.train import History, Trainer

F64 = torch.float64


class NodeJacobi(nn.Module):
    """A Jacobi weight per node; its loss is the A-energy of one sweep on A e = 0
    (paper eq. 36, mean over the vectors). Also a preconditioner M = Ω D^-1."""

    def __init__(self, n: int, omega: float = 1.0):
        super().__init__()
        self.omega = nn.Parameter(torch.full((n,), omega, dtype=F64))

    def loss(self, problem, X):
        A = problem.A
        E = X - (self.omega / A.diagonal())[:, None] * (A @ X)
        return (E * (A @ E)).sum(0).mean()

    def setup(self, A):
        scale = self.omega.to(A.device) / A.diagonal()
        return lambda r: r * (scale if r.dim() == 1 else scale[:, None])


class ScalarJacobi(nn.Module):
    """One Jacobi weight: works on problems of any size."""

    def __init__(self, omega: float = 1.0):
        super().__init__()
        self.omega = nn.Parameter(torch.tensor(omega, dtype=F64))

    def loss(self, problem, X):
        A = problem.A
        E = X - self.omega * (A @ X) / A.diagonal()[:, None]
        return (E * (A @ E)).sum(0).mean()


class Scripted(nn.Module):
    """Loss values from a script, gradient 1: SGD moves w by -lr per step.

    ``nan_at`` makes call ``nan_at`` return NaN; ``nan_grad_at`` makes it
    return a finite loss with a NaN gradient."""

    def __init__(self, values=None, nan_at=None, nan_grad_at=None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros((), dtype=F64))
        self.values, self.nan_at, self.nan_grad_at = values, nan_at, nan_grad_at
        self.calls = 0

    def loss(self, problem, X):
        call, self.calls = self.calls, self.calls + 1
        value = 1.0 if self.values is None else self.values[call]
        loss = self.w - self.w.detach() + value
        if call == self.nan_at:
            return loss * math.nan
        if call == self.nan_grad_at:
            return loss + torch.sqrt(0.0 * self.w)     # value unchanged, d/dw = inf * 0
        return loss


class Recorder(ScalarJacobi):
    """Records what each loss call was given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def loss(self, problem, X):
        self.seen.append((problem.name, X.detach().clone(), problem.A.device))
        return super().loss(problem, X)


def energy(omega: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """The expected loss of NodeJacobi over unit random vectors: tr(S^T A S) / n."""
    n = A.shape[0]
    S = torch.eye(n, dtype=F64) - torch.diag(omega / A.diagonal()) @ A
    return torch.trace(S.T @ A @ S) / n


def quiet(model, **kwargs) -> Trainer:
    return Trainer(model, progress=False, **kwargs)


def params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def without_time(history) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in history]


def problems_1d(sizes=(8, 10, 12)) -> list[Problem]:
    return [poisson_1d(n, dtype=F64) for n in sizes]


# ---------------------------------------------------------------------- learning
def test_loss_falls_to_the_optimal_weights():
    p = poisson_1d(16, dtype=F64)
    model = NodeJacobi(16)
    trainer = quiet(model, lr=0.02, epochs=100, rhs_per_problem=32, seed=0)
    assert trainer.fit(p) is trainer
    # The expected loss is a quadratic in omega: its minimiser in closed form.
    A = p.A.to_dense()
    zero = torch.zeros(16, dtype=F64)
    hessian = torch.autograd.functional.hessian(lambda w: energy(w, A), zero)
    gradient = torch.func.grad(lambda w: energy(w, A))(zero)
    best = torch.linalg.solve(hessian, -gradient)
    trained = model.omega.detach()
    assert energy(torch.ones(16, dtype=F64), A) > 4 * energy(best, A)
    assert energy(trained, A) < 1.01 * energy(best, A)
    assert (trained - best).abs().max() < 0.05
    h = trainer.history_
    assert isinstance(h, History) and len(h) == 100 == trainer.epochs_done_
    assert trainer.stop_reason_ == "epochs"
    assert h.keys() == ["epoch", "loss", "lr", "time"]
    np.testing.assert_array_equal(h.epoch, np.arange(100))
    assert h.loss[-10:].mean() < 0.5 * h.loss[:10].mean()
    assert np.all(h.lr == 0.02) and np.all(h.time > 0)


def test_history_prints_short_and_stays_a_list():
    trainer = quiet(ScalarJacobi(), epochs=3, seed=0).fit(poisson_1d(8, dtype=F64))
    h = trainer.history_
    assert repr(h) == str(h) == (f"History(3 epochs: epoch, loss, lr, time; last loss "
                                 f"{h[-1]['loss']:.2e})")
    assert repr(History()) == "History(0 epochs)"
    assert repr(History([{"epoch": 0}])) == "History(1 epoch: epoch)"
    assert isinstance(h, list) and len(h) == 3 and h[1]["epoch"] == 1
    assert h == list(h) and h[:2] == [h[0], h[1]]


def test_batches_are_unit_vectors_and_each_epoch_visits_every_problem_once():
    names = [f"p{i}" for i in range(5)]
    problems = [Problem(poisson_1d(6, dtype=F64).A, name=name) for name in names]
    model = Recorder()
    quiet(model, epochs=4, rhs_per_problem=3, seed=1).fit(problems)
    assert len(model.seen) == 20
    orders = [[name for name, _, _ in model.seen[5 * e:5 * e + 5]] for e in range(4)]
    assert all(sorted(order) == names for order in orders)
    assert len({tuple(order) for order in orders}) > 1          # shuffled
    for _, X, _ in model.seen:
        assert X.shape == (6, 3) and X.dtype == F64
        torch.testing.assert_close(X.norm(dim=0), torch.ones(3, dtype=F64))
    assert any(bool((X < 0).any()) for _, X, _ in model.seen)  # standard normal entries


def test_uniform_vectors_as_the_domain_decomposition_loss_draws_them():
    model = Recorder()
    quiet(model, epochs=3, rhs_per_problem=4, seed=1, distribution="uniform").fit(
        problems_1d((10,)))
    for _, X, _ in model.seen:
        assert bool((X >= 0).all()) and X.shape == (10, 4)
        torch.testing.assert_close(X.norm(dim=0), torch.ones(4, dtype=F64))


def test_a_problem_set_and_a_custom_loss_and_optimizer():
    problems = ProblemSet(lambda seed, i: poisson_1d(8 + i, dtype=F64, seed=seed), 3, seed=0)
    calls = []

    def loss(model, problem, X):
        calls.append(problem.num_nodes)
        return ScalarJacobi.loss(model, problem, X)

    model = ScalarJacobi()
    trainer = quiet(model, loss=loss, optimizer=torch.optim.SGD, lr=0.1, epochs=2, seed=0)
    trainer.fit(problems)
    assert sorted(calls) == [8, 8, 9, 9, 10, 10]
    assert isinstance(trainer.optimizer_, torch.optim.SGD)
    built = []
    trainer = quiet(ScalarJacobi(), epochs=1,
                    optimizer=lambda ps: built.append(1) or torch.optim.Adam(ps, lr=0.3))
    assert trainer.fit(problems).optimizer_.param_groups[0]["lr"] == 0.3 and built == [1]


def test_lbfgs_by_closure():
    p = poisson_1d(16, dtype=F64)
    model = NodeJacobi(16)
    trainer = quiet(model, optimizer=torch.optim.LBFGS, lr=0.5, epochs=10, rhs_per_problem=64,
                    seed=0)
    trainer.fit(p)
    A = p.A.to_dense()
    assert energy(model.omega.detach(), A) < 0.3 * energy(torch.ones(16, dtype=F64), A)


# ---------------------------------------------------------------------- metrics, progress
def test_metrics_on_validation_or_training_problems():
    modes = []

    def size(model, problem):
        modes.append((model.training, torch.is_grad_enabled()))
        return problem.num_nodes

    metrics = {"size": size, "omega": lambda model, problem: model.omega}
    model = ScalarJacobi()
    trainer = quiet(model, epochs=3, seed=0, metrics=metrics)
    trainer.fit(poisson_1d(16, dtype=F64), validation=problems_1d((8, 12)))
    h = trainer.history_
    assert h.keys() == ["epoch", "loss", "lr", "val_loss", "size", "omega", "time"]
    np.testing.assert_array_equal(h.size, [10.0] * 3)          # mean over validation
    assert h.omega[-1] == float(model.omega.detach())                  # after the epoch's steps
    assert np.all(np.isfinite(h.val_loss)) and np.all(h.val_loss > 0)
    assert set(modes) == {(False, False)} and model.training
    trainer = quiet(ScalarJacobi(), epochs=2, seed=0, metrics=metrics)
    np.testing.assert_array_equal(trainer.fit(problems_1d((16, 20))).history_.size, [18.0] * 2)
    assert "val_loss" not in trainer.history_.keys()


def test_validation_loss_uses_the_same_vectors_every_epoch():
    model = ScalarJacobi()
    model.omega.requires_grad_(True)
    frozen = quiet(model, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0), epochs=3, seed=0)
    h = frozen.fit(poisson_1d(8, dtype=F64), validation=poisson_1d(12, dtype=F64)).history_
    assert h.val_loss[0] == h.val_loss[1] == h.val_loss[2]
    assert len(set(h.loss)) == 3                                # fresh training vectors


def test_progress_bar_on_and_off(capsys):
    quiet(ScalarJacobi(), epochs=3, seed=0).fit(poisson_1d(8, dtype=F64))
    assert capsys.readouterr().err == ""
    Trainer(ScalarJacobi(), epochs=3, seed=0).fit(poisson_1d(8, dtype=F64))
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "epoch" in err


# ---------------------------------------------------------------------- seeds
def test_seeds_reproduce_and_differ_and_leave_torch_alone():
    def run(seed):
        model = NodeJacobi(8)
        trainer = quiet(model, epochs=5, seed=seed).fit(problems_1d((8, 8)))
        return model.omega.detach(), trainer.history_.loss

    state = torch.get_rng_state()
    w1, loss1 = run(3)
    assert torch.equal(torch.get_rng_state(), state)
    w2, loss2 = run(3)
    assert torch.equal(w1, w2) and np.array_equal(loss1, loss2)
    w3, loss3 = run(4)
    assert not torch.equal(w1, w3) and not np.array_equal(loss1, loss3)
    assert not np.array_equal(run(None)[1], run(None)[1])


@pytest.mark.parametrize("device", DEVICES)
def test_device_moves_model_and_problems(device):
    model = Recorder()
    trainer = quiet(model, epochs=1, rhs_per_problem=2, device=device, seed=0)
    trainer.fit(poisson_1d(8, dtype=F64))
    assert model.omega.device.type == device
    assert all(d.type == device and X.device.type == device for _, X, d in model.seen)


# ---------------------------------------------------------------------- callbacks
class Log(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append("fit_start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append(f"start {epoch}")

    def on_epoch_end(self, trainer, epoch, logs):
        self.events.append(f"end {epoch} {logs['epoch']}")
        if epoch == 1:
            trainer.stop_training = True

    def on_fit_end(self, trainer):
        self.events.append("fit_end")


def test_callback_hooks_and_stop_training():
    log = Log()
    trainer = quiet(ScalarJacobi(), epochs=10, seed=0, callbacks=[log])
    trainer.fit(poisson_1d(8, dtype=F64))
    assert log.events == ["fit_start", "start 0", "end 0 0", "start 1", "end 1 1", "fit_end"]
    assert trainer.epochs_done_ == 2 and trainer.stop_reason_ == "callback"
    assert Callback().on_epoch_end(trainer, 0, {}) is None and Callback().state_dict() == {}


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best():
    values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0, 1.0]
    lr = 0.25
    stop = EarlyStopping(patience=3)
    model = Scripted(values)
    trainer = quiet(model, optimizer="sgd", lr=lr, epochs=8, callbacks=[stop])
    trainer.fit(poisson_1d(4, dtype=F64))
    # Best at epoch 2; epochs 3, 4, 5 do not improve: stop after epoch 5.
    assert (stop.best_epoch_, stop.best_, stop.stopped_epoch_) == (2, 3.0, 5)
    assert trainer.epochs_done_ == 6 and trainer.stop_reason_ == "callback"
    assert float(model.w.detach()) == -3 * lr                        # end of epoch 2: three steps

    stop = EarlyStopping(patience=3, restore_best=False)
    model = Scripted(values)
    quiet(model, optimizer="sgd", lr=lr, epochs=8, callbacks=[stop]).fit(poisson_1d(4))
    assert float(model.w.detach()) == -6 * lr

    # min_delta: 3.95 and 3.9 are not improvements on 4 by more than 0.1.
    stop = EarlyStopping(patience=2, min_delta=0.1)
    quiet(Scripted([5.0, 4.0, 3.95, 3.9, 1.0]), epochs=5, callbacks=[stop]).fit(poisson_1d(4))
    assert (stop.best_epoch_, stop.stopped_epoch_) == (1, 3)

    # mode="max" on a metric.
    stop = EarlyStopping(monitor="score", patience=1, mode="max")
    scores = iter([1.0, 2.0, 1.5, 3.0])
    trainer = quiet(Scripted(), epochs=4, callbacks=[stop],
                    metrics={"score": lambda model, problem: next(scores)})
    trainer.fit(poisson_1d(4))
    assert (stop.best_epoch_, stop.stopped_epoch_, trainer.epochs_done_) == (1, 2, 3)


def test_early_stopping_monitor_must_be_in_the_history():
    trainer = quiet(Scripted(), epochs=2, callbacks=[EarlyStopping(monitor="val_loss")])
    with pytest.raises(KeyError, match="monitor: 'val_loss'"):
        trainer.fit(poisson_1d(4))


def test_lr_scheduler_follows_its_formula():
    step = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    trainer = quiet(Scripted(), optimizer="sgd", lr=0.1, epochs=6, callbacks=[step])
    lrs = trainer.fit(poisson_1d(4)).history_.lr
    np.testing.assert_allclose(lrs, [0.1 * 0.5 ** (e // 2) for e in range(6)], rtol=1e-15)

    # ReduceLROnPlateau (patience 1): halves once two epochs in a row fail to improve.
    plateau = LRScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=1, factor=0.5)
    trainer = quiet(Scripted([5.0, 4.0, 4.0, 4.0, 4.0, 4.0]), optimizer="sgd", lr=0.1, epochs=6,
                    callbacks=[plateau])
    np.testing.assert_allclose(trainer.fit(poisson_1d(4)).history_.lr,
                               [0.1, 0.1, 0.1, 0.1, 0.05, 0.05], rtol=1e-15)


# ---------------------------------------------------------------------- non-finite
@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_non_finite_restores_the_last_good_parameters(kind):
    lr = 0.125
    model = Scripted(**{"nan_at" if kind == "loss" else "nan_grad_at": 3})
    trainer = quiet(model, optimizer="sgd", lr=lr, epochs=5, seed=0)
    with pytest.warns(RuntimeWarning, match=rf"non-finite {kind} at epoch 1, problem \d.*"
                                            r"last good"):
        trainer.fit(problems_1d((4, 5)))
    # Calls 0, 1, 2 stepped; call 3 (at the parameters of step 2's update) failed:
    # back to those step 2 started from.
    assert float(model.w.detach()) == -2 * lr
    assert model.w.grad is None
    assert trainer.stop_reason_ == f"non-finite {kind}"
    assert trainer.epochs_done_ == 1 and len(trainer.history_) == 1


def test_non_finite_restores_the_optimizer_state_too():
    def model():
        return Scripted(nan_at=3)

    problems = problems_1d((4, 5))
    broken = quiet(model(), epochs=5, seed=0)
    with pytest.warns(RuntimeWarning):
        broken.fit(problems)
    reference = quiet(model(), epochs=1, seed=0).fit(problems)      # two good steps
    assert torch.equal(broken.model.w, reference.model.w)
    for a, b in zip(broken.optimizer_.state.values(), reference.optimizer_.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))


def test_non_finite_at_the_first_step_of_an_epoch_keeps_the_epochs_done():
    lr = 0.125
    model = Scripted(nan_at=2)                 # epoch 1's first step, two problems an epoch
    trainer = quiet(model, optimizer="sgd", lr=lr, epochs=3, seed=0)
    with pytest.warns(RuntimeWarning, match=r"non-finite loss at epoch 1, problem \d.*those "
                                            r"epoch 1 started with"):
        trainer.fit(problems_1d((4, 5)))
    # Epoch 0 is done and recorded: none of its two steps is undone.
    assert float(model.w.detach()) == -2 * lr
    assert trainer.epochs_done_ == len(trainer.history_) == 1
    model.nan_at = None
    trainer.fit(problems_1d((4, 5)))                    # epochs 1 and 2: four steps
    assert float(model.w.detach()) == -6 * lr
    assert trainer.epochs_done_ == len(trainer.history_) == 3
    assert trainer.history_.epoch.tolist() == [0, 1, 2]


def test_early_stopping_keeps_the_parameters_a_non_finite_stop_resumes_from():
    lr = 0.125
    stop = EarlyStopping(patience=10)
    # Two problems an epoch: epoch 0 is the best; call 5 (epoch 2's second step) fails.
    model = Scripted([1.0, 1.0, 2.0, 2.0, 2.0, 2.0], nan_at=5)
    trainer = quiet(model, optimizer="sgd", lr=lr, epochs=3, seed=0, callbacks=[stop])
    with pytest.warns(RuntimeWarning, match="non-finite loss at epoch 2"):
        trainer.fit(problems_1d((4, 5)))
    assert stop.best_epoch_ == 0
    assert float(model.w.detach()) == -4 * lr       # before step 4, not epoch 0's end


def test_non_finite_at_the_first_step_keeps_the_start():
    model = Scripted(nan_at=0)
    with pytest.warns(RuntimeWarning, match="epoch 0.*no step of this fit succeeded"):
        quiet(model, epochs=2).fit(poisson_1d(4))
    assert float(model.w.detach()) == 0.0


# ---------------------------------------------------------------------- save / load
def resumable(model, epochs):
    return quiet(model, epochs=epochs, rhs_per_problem=4, seed=7, lr=0.05, callbacks=[
        # LambdaLR: building it resets the learning rate, which a resume must undo.
        LRScheduler(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda e: 0.5 ** (e // 3)),
        # Its state is saved; restore_best=False: a fit that ends the training puts the
        # best epoch's parameters back, which a straight training does not do halfway.
        EarlyStopping(patience=100, restore_best=False)])


def test_save_load_resume_is_bit_identical_to_straight_training(tmp_path):
    problems = problems_1d((8, 8, 8))
    straight = resumable(NodeJacobi(8), 10).fit(problems)

    first = resumable(NodeJacobi(8), 5).fit(problems)
    path = tmp_path / "trainer.pt"
    first.save(path)
    torch.load(path, weights_only=True)
    resumed = resumable(NodeJacobi(8, omega=0.3), 10).load(path)
    assert resumed.epochs_done_ == 5 and len(resumed.history_) == 5
    resumed.fit(problems)
    assert torch.equal(resumed.model.omega, straight.model.omega)
    assert without_time(resumed.history_) == without_time(straight.history_)
    assert resumed.history_.lr.tolist() == [0.05] * 3 + [0.025] * 3 + [0.0125] * 3 + [0.00625]
    state, expected = resumed.optimizer_.state_dict(), straight.optimizer_.state_dict()
    assert all(torch.equal(state["state"][0][k], expected["state"][0][k]) for k in
               ("exp_avg", "exp_avg_sq", "step"))

    # Continuing in place, by raising epochs, is the same training.
    continued = resumable(NodeJacobi(8), 5).fit(problems)
    continued.epochs = 10
    continued.fit(problems)
    assert torch.equal(continued.model.omega, straight.model.omega)
    assert without_time(continued.history_) == without_time(straight.history_)
    with pytest.warns(UserWarning, match="all 10 epochs are done"):
        continued.fit(problems)


def test_load_refuses_other_files_and_other_callbacks(tmp_path):
    path = tmp_path / "trainer.pt"
    resumable(NodeJacobi(8), 1).fit(poisson_1d(8, dtype=F64)).save(path)
    with pytest.raises(ValueError, match="callbacks: the saved trainer had"):
        quiet(NodeJacobi(8)).load(path)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="path: expected a file written by Trainer.save"):
        quiet(NodeJacobi(8)).load(tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match="save: this trainer has not been fitted"):
        quiet(NodeJacobi(8)).save(path)


# ---------------------------------------------------------------------- arguments
class NoLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(optimizer="adagrad"), ValueError, "optimizer: expected one of"),
    (dict(optimizer=nn.Linear), TypeError, "optimizer: expected a torch.optim.Optimizer"),
    (dict(optimizer=3), TypeError, "optimizer: expected a name"),
    (dict(epochs=0), ValueError, "epochs: expected an integer >= 1"),
    (dict(epochs=2.5), TypeError, "epochs: expected an integer"),
    (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1"),
    (dict(distribution="gaussian"), ValueError, "distribution: expected 'normal' or"),
    (dict(lr=-1.0), ValueError, "lr: expected a positive number"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(device="nowhere"), ValueError, "device: expected a torch device"),
    (dict(callbacks=[object()]), TypeError, r"callbacks\[0\]: expected"),
    (dict(metrics={"loss": len}), ValueError, "metrics: expected names other than"),
    (dict(metrics={"m": 1}), TypeError, r"metrics\['m'\]: expected a callable"),
    (dict(loss="energy"), TypeError, "loss: expected None or a callable"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        Trainer(ScalarJacobi(), **kwargs)


def test_bad_models_and_problems_name_themselves():
    with pytest.raises(TypeError, match="loss: the model .NoLoss. has no method loss"):
        Trainer(NoLoss())
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        Trainer(lambda problem, X: 0)
    trainer = quiet(ScalarJacobi(), epochs=1)
    with pytest.raises(TypeError, match="problems: expected a Problem"):
        trainer.fit(poisson_1d(8).A)
    with pytest.raises(TypeError, match=r"problems\[1\]: expected a learnsolve.problems.Problem"):
        trainer.fit([poisson_1d(8), "p"])
    with pytest.raises(ValueError, match="problems: expected at least one problem"):
        trainer.fit([])
    with pytest.raises(TypeError, match=r"validation\[0\]"):
        trainer.fit(poisson_1d(8), validation=[1])
    frozen = ScalarJacobi()
    frozen.omega.requires_grad_(False)
    with pytest.raises(ValueError, match="model: expected trainable parameters"):
        quiet(frozen).fit(poisson_1d(8))
    with pytest.raises(TypeError, match="loss: expected a scalar Tensor, got shape"):
        quiet(ScalarJacobi(), loss=lambda m, p, X: X).fit(poisson_1d(8))
    with pytest.raises(TypeError, match=r"metrics\['m'\]: expected a number"):
        quiet(ScalarJacobi(), metrics={"m": lambda m, p: "x"}).fit(poisson_1d(8))
    with pytest.raises(ValueError, match="loss: expected a tensor that depends on the "
                                         "model's parameters"):
        quiet(ScalarJacobi(), loss=lambda m, p, X: X.sum().detach()).fit(poisson_1d(8))
    trainer = quiet(ScalarJacobi(), epochs=1).fit(poisson_1d(8))
    X = poisson_1d(8).random_rhs(2, seed=0)
    with pytest.raises(ValueError, match=r"X: expected one block per problem \(2\), got 1"):
        trainer.train_step([poisson_1d(8)] * 2, [X])
    with pytest.raises(ValueError, match="problems: expected at least one problem, got none"):
        trainer.train_step([], [])


def test_callback_arguments():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="best")
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=-1)
    with pytest.raises(TypeError, match="scheduler"):
        LRScheduler("StepLR")


# ---------------------------------------------------------------------- plots
def test_plot_history_lines():
    trainer = quiet(ScalarJacobi(), epochs=4, seed=0,
                    metrics={"omega": lambda m, p: m.omega, "n": lambda m, p: p.num_nodes})
    trainer.fit(poisson_1d(8, dtype=F64), validation=poisson_1d(9, dtype=F64))
    fig = trainer.plot_history()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_axis, metric_axis = fig.axes
    assert len(loss_axis.lines) == 2 and loss_axis.get_yscale() == "log"
    assert len(metric_axis.lines) == 2
    np.testing.assert_array_equal(loss_axis.lines[0].get_ydata(), trainer.history_.loss)
    fig = quiet(ScalarJacobi(), epochs=2).fit(poisson_1d(8)).plot_history()
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    with pytest.raises(RuntimeError, match="plot_history"):
        quiet(ScalarJacobi()).plot_history()


# ---------------------------------------------------------------------- evaluation
def scipy_cg_iterations(A, b, M=None, rtol=1e-6):
    count = [0]
    _, info = spla.cg(A.to_scipy(), b.numpy(), rtol=rtol, atol=0.0, M=M, maxiter=10 * len(b),
                      callback=lambda x: count.__setitem__(0, count[0] + 1))
    assert info == 0
    return count[0]


def test_evaluate_on_2d_poisson():
    p = poisson_2d(8, dtype=F64)
    model = NodeJacobi(64, omega=0.8)
    trainer = quiet(model, epochs=5, seed=0).fit(p)
    evaluation = trainer.evaluate(p, rtol=1e-6)
    assert isinstance(evaluation, Evaluation) and len(evaluation) == 5
    rows = {row.method: row for row in evaluation}
    assert list(rows) == ["trained", "none", "jacobi", "ic0", "amg"]
    b = p.random_rhs(seed=p.seed)
    scale = (model.omega.detach() / p.A.diagonal()).numpy()
    expected = {"none": scipy_cg_iterations(p.A, b),
                "jacobi": scipy_cg_iterations(p.A, b, M=sp.diags_array(
                    1 / p.A.diagonal().numpy())),
                "trained": scipy_cg_iterations(p.A, b, M=spla.LinearOperator(
                    (64, 64), matvec=lambda r: scale * r.ravel()))}
    for method, iterations in expected.items():
        assert rows[method].iterations == iterations, method
    for row in evaluation:
        assert row.converged and row.status == "converged" and row.n == 64
        assert row.relative_residual <= 1e-6 and row.time > 0
        assert row.residuals.shape == (row.iterations + 1,) and row.residuals[0] == 1.0
        assert row.problem == "2D Poisson, 8 x 8"
    assert rows["ic0"].iterations < rows["none"].iterations
    assert rows["amg"].iterations < rows["ic0"].iterations
    text = str(evaluation).splitlines()
    assert text[0].split()[:3] == ["problem", "n", "method"] and len(text) == 7
    markdown = evaluation.to_markdown().splitlines()
    assert len(markdown) == 7 and markdown[1].startswith("|---")
    assert "| amg | " in evaluation.to_markdown()


def test_evaluate_reports_failures_and_non_convergence():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def loss(self, problem, X):
            return self.w.sum()

        def setup(self, A):
            raise torch.linalg.LinAlgError("no factor")

    p = poisson_2d(6, dtype=F64)
    evaluation = quiet(Broken()).evaluate(p, maxiter=3, baselines=("none", "jacobi"))
    trained, none, jacobi = evaluation
    assert (trained.status, trained.iterations, trained.converged) == ("breakdown", None, False)
    assert trained.message == "no factor" and math.isnan(trained.relative_residual)
    assert (none.status, none.iterations, none.converged) == ("maxiter", 3, False)
    assert none.relative_residual > 1e-6
    assert "breakdown" in str(evaluation)
    fig = evaluation.plot()
    assert len(fig.axes[0].lines) == 2                       # no line for the breakdown
    with pytest.raises(ValueError, match="baselines: expected names among"):
        quiet(Broken()).evaluate(p, baselines=("ilu",))


def test_evaluate_needs_a_preconditioner():
    from learnsolve.solvers.cg import PCG
    with pytest.raises(ValueError, match="model: evaluate needs a preconditioner"):
        quiet(ScalarJacobi()).evaluate(poisson_2d(4, dtype=F64))
    p = poisson_2d(6, dtype=F64)
    solver = PCG(M=NodeJacobi(36, omega=0.9), maxiter=4, rtol=0.0)
    rows = quiet(solver).evaluate(p, baselines=())
    assert len(rows) == 1 and rows[0].converged
    b = p.random_rhs(seed=p.seed)
    scale = (0.9 / p.A.diagonal()).numpy()
    assert rows[0].iterations == scipy_cg_iterations(p.A, b, M=spla.LinearOperator(
        (36, 36), matvec=lambda r: scale * r.ravel()))


def test_plot_convergence_lines():
    p = poisson_2d(6, dtype=F64)
    trainer = quiet(NodeJacobi(36), epochs=2).fit(p)
    fig = trainer.plot_convergence(p)
    assert isinstance(fig, Figure)
    lines = fig.axes[0].lines
    assert len(lines) == 5 and fig.axes[0].get_yscale() == "log"
    assert [line.get_label() for line in lines][1:] == [
        "no preconditioner", "Jacobi", "IC(0)", "AMG (smoothed aggregation)"]
    assert len(trainer.plot_convergence(p, baselines=("none",)).axes[0].lines) == 2
    with pytest.raises(TypeError, match="problem: expected a learnsolve.problems.Problem"):
        trainer.plot_convergence([p])


def test_trains_and_evaluates_the_library_preconditioners():
    from learnsolve.solvers.cg import PCG
    from learnsolve.solvers.factor import LowerFactor
    from learnsolve.solvers.spai import SPAI, spai_classical, spai_loss
    p = poisson_2d(8, dtype=F64)
    b = p.random_rhs(seed=p.seed)
    # SPAI (eq. 50): reaches the classical minimiser's loss, and preconditions.
    spai = SPAI(p, symmetric=True)
    trainer = quiet(spai, lr=0.05, epochs=150, seed=0).fit(p)
    assert float(spai_loss(spai, p).detach()) < 1.01 * float(spai_loss(spai_classical(p.A), p))
    rows = trainer.evaluate(p, baselines=("none",))
    assert rows[0].iterations < rows[1].iterations
    # PCG with M = L L^T (eqs. 41-42): evaluate takes model.M.
    model = PCG(M=LowerFactor.banded(p, 1), maxiter=4, rtol=0.0)
    trainer = quiet(model, lr=0.02, epochs=40, seed=0).fit(p)
    assert trainer.history_.loss[-5:].mean() < trainer.history_.loss[:5].mean()
    row = trainer.evaluate(p, baselines=())[0]
    assert row.converged
    assert row.iterations == scipy_cg_iterations(p.A, b, M=model.M.matrix().detach().to_scipy())


def test_evaluation_of_several_problems_plots_each():
    named = Problem(poisson_2d(5, dtype=F64).A, name="2D Poisson, 4 x 4")   # a duplicate name
    evaluation = quiet(ScalarPreconditioner()).evaluate(
        [poisson_2d(4, dtype=F64), named, poisson_1d(7, dtype=F64)], baselines=("none",))
    assert [(row.index, row.n, row.method) for row in evaluation] == [
        (0, 16, "trained"), (0, 16, "none"), (1, 25, "trained"), (1, 25, "none"),
        (2, 7, "trained"), (2, 7, "none")]
    assert "n = 25" in evaluation.plot(1).axes[0].get_title()
    assert "n = 16" in evaluation.plot("2D Poisson, 4 x 4").axes[0].get_title()
    assert len(evaluation.plot("1D Poisson, N = 7").axes[0].lines) == 2
    with pytest.raises(ValueError, match="problem: expected a position below 3"):
        evaluation.plot(3)


class ScalarPreconditioner(ScalarJacobi):
    def setup(self, A):
        scale = self.omega / A.diagonal()
        return lambda r: r * (scale if r.dim() == 1 else scale[:, None])
