"""Trainer(keep_best=...): a training ends with its best parameters, never worse than the
start; and the metric pcg_iterations it is kept by for a learned preconditioner."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from learnsolve.evaluation import compare_preconditioners, pcg_iterations
from learnsolve.problems import Problem, poisson_1d, poisson_2d
from learnsolve.solvers import PCG
from learnsolve.solvers.factor import LowerFactor
from learnsolve.solvers.jacobi import Jacobi
from learnsolve.train import Trainer
from learnsolve.train.sampling import position_seed

F64 = torch.float64


def jacobi(n: int = 16, omega: float = 1.0) -> Jacobi:
    """A weight per node: a trainable model and a preconditioner."""
    return Jacobi(omega, num_nodes=n).double()


def quiet(model, **kwargs) -> Trainer:
    return Trainer(model, progress=False, seed=0, **kwargs)


def same(a: dict, b: dict) -> bool:
    """Equal state dicts, tensors bit for bit."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def without_time(history) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in history]


def first_argmin(values) -> int:
    return int(np.argmin(values))          # the first of equal minima


def scripted(values):
    """A metric returning ``values`` in turn (the start's first)."""
    values = iter(values)
    return lambda model, problem: next(values)


class NaNAt:
    """The model's loss, NaN at training step ``at`` (counted from 0; the measures without
    gradient are not steps); None: never."""

    def __init__(self, at: int | None):
        self.at, self.steps = at, 0

    def __call__(self, model, problem, X):
        loss = model.loss(problem, X)
        if not torch.is_grad_enabled():
            return loss
        step, self.steps = self.steps, self.steps + 1
        return loss * math.nan if step == self.at else loss


P1 = poisson_1d(16, dtype=F64)
#: Adam at lr 0.5: val_loss falls in epoch 0, then rises (and oscillates).
OVERSHOOT = dict(optimizer="adam", lr=0.5)


# ---------------------------------------------------------------------- the best epoch
def test_keeps_the_best_epochs_parameters_when_later_epochs_get_worse():
    model = jacobi()
    trainer = quiet(model, optimizer="sgd", lr=3.2, epochs=8, keep_best="val_loss")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # an epoch beat the start
        trainer.fit(P1, validation=P1)
    val_loss = trainer.history_.val_loss
    best = first_argmin(val_loss)
    assert 0 < best < 7 and val_loss[-1] > val_loss[best]   # later epochs got worse
    assert trainer.best_epoch_ == best and trainer.best_value_ == val_loss[best]
    assert trainer.start_logs_.keys() == {"val_loss"}
    assert trainer.start_logs_["val_loss"] > trainer.best_value_
    reference = quiet(jacobi(), optimizer="sgd", lr=3.2, epochs=best + 1)
    reference.fit(P1, validation=P1)
    assert same(state(model), state(reference.model))
    assert without_time(reference.history_) == without_time(trainer.history_[:best + 1])


def test_a_continued_fit_trains_from_where_training_was_not_from_the_best():
    straight = quiet(jacobi(), epochs=8, **OVERSHOOT).fit(P1, validation=P1)
    continued = quiet(jacobi(), epochs=4, keep_best="val_loss", **OVERSHOOT)
    continued.fit(P1, validation=P1)
    assert continued.best_epoch_ == 0                        # the model holds epoch 0's
    continued.epochs = 8
    continued.fit(P1, validation=P1)
    assert without_time(continued.history_) == without_time(straight.history_)
    assert continued.best_epoch_ == first_argmin(straight.history_.val_loss)
    reference = quiet(jacobi(), epochs=continued.best_epoch_ + 1, **OVERSHOOT)
    assert same(state(continued.model), state(reference.fit(P1, validation=P1).model))


# ---------------------------------------------------------------------- the start
def test_the_start_wins_when_every_epoch_is_worse():
    model = jacobi()
    start = state(model)
    trainer = quiet(model, optimizer="sgd", lr=100.0, epochs=4, keep_best="val_loss")
    with pytest.warns(UserWarning, match=r"no epoch beat the start on keep_best='val_loss' "
                                         r"\(0\.\d+ at the start, \d.* at the best epoch, 0\); "
                                         r"the model keeps its starting parameters"):
        trainer.fit(P1, validation=P1)
    assert np.all(trainer.history_.val_loss > trainer.start_logs_["val_loss"])
    assert trainer.best_epoch_ == -1 and trainer.best_value_ == trainer.start_logs_["val_loss"]
    assert same(state(model), start)


def test_ties_keep_the_start_and_non_finite_values_never_win():
    model = jacobi()
    start = state(model)
    # Start 2; epochs: a tie, worse, NaN, -inf.
    trainer = quiet(model, epochs=4, keep_best="m",
                    metrics={"m": scripted([2.0, 2.0, 3.0, math.nan, -math.inf])})
    with pytest.warns(UserWarning, match=r"\(2 at the start, 2 at the best epoch, 0\)"):
        trainer.fit(P1)
    assert trainer.best_epoch_ == -1 and trainer.best_value_ == 2.0
    assert trainer.start_logs_ == {"m": 2.0}
    assert same(state(model), start)
    # A NaN start loses to the first finite value, and a later tie does not replace it.
    trainer = quiet(jacobi(), epochs=4, keep_best="m",
                    metrics={"m": scripted([math.nan, 5.0, math.inf, 4.0, 4.0])})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(P1)
    assert (trainer.best_epoch_, trainer.best_value_) == (2, 4.0)
    reference = quiet(jacobi(), epochs=3).fit(P1)
    assert same(state(trainer.model), state(reference.model))


def test_the_start_loss_is_measured_on_fixed_vectors():
    model = jacobi()
    trainer = quiet(model, epochs=2, rhs_per_problem=4, keep_best="loss")
    # The trainer's seed (0) and the problem's position (0): the sampling module's rule.
    seed = position_seed(0, 0)
    with torch.no_grad():
        expected = float(model.loss(P1, P1.random_rhs(4, seed=seed, normalize=True,
                                                      draw_dtype=torch.float32)))
    trainer.fit(P1)
    assert trainer.start_logs_ == {"loss": expected}
    assert trainer.best_epoch_ == first_argmin(trainer.history_.loss)   # both below the start


# ---------------------------------------------------------------------- non-finite stop
def test_a_non_finite_stop_restores_the_best_and_the_training_resumes_bit_for_bit(tmp_path):
    problems = [P1, P1]

    def trainer(at=None, epochs=8):
        return quiet(jacobi(), loss=NaNAt(at), optimizer="adam", lr=0.3, epochs=epochs,
                     keep_best="val_loss")

    straight = trainer().fit(problems, validation=P1)
    assert straight.best_epoch_ > 3
    stopped = trainer(at=7)                                  # epoch 3's second step
    with pytest.warns(RuntimeWarning, match="non-finite loss at epoch 3"):
        stopped.fit(problems, validation=P1)
    assert stopped.epochs_done_ == 3 and stopped.best_epoch_ < 3
    best = trainer(epochs=stopped.best_epoch_ + 1).fit(problems, validation=P1)
    assert best.best_epoch_ == stopped.best_epoch_
    assert same(state(stopped.model), state(best.model))
    stopped.save(tmp_path / "trainer.pt")
    stopped.loss.at = None
    resumed = trainer().load(tmp_path / "trainer.pt")
    for again in (stopped, resumed):
        again.fit(problems, validation=P1)
        assert without_time(again.history_) == without_time(straight.history_)
        assert same(state(again.model), state(straight.model))
        assert (again.best_epoch_, again.best_value_) == (straight.best_epoch_,
                                                          straight.best_value_)


# ---------------------------------------------------------------------- save / load
def test_save_and_load_keep_the_best(tmp_path):
    def trainer(epochs=8, keep_best="val_loss"):
        return quiet(jacobi(), epochs=epochs, keep_best=keep_best, **OVERSHOOT)

    straight = trainer().fit(P1, validation=P1)
    first = trainer(epochs=4).fit(P1, validation=P1)
    path = tmp_path / "trainer.pt"
    first.save(path)
    saved = torch.load(path, weights_only=True)
    assert saved["version"] == 3 and saved["best"]["epoch"] == first.best_epoch_ == 0
    loaded = trainer().load(path)
    assert same(state(loaded.model), state(first.model))     # the best, as after the fit
    assert (loaded.best_epoch_, loaded.best_value_, loaded.start_logs_) == (
        first.best_epoch_, first.best_value_, first.start_logs_)
    loaded.fit(P1, validation=P1)
    assert without_time(loaded.history_) == without_time(straight.history_)
    assert same(state(loaded.model), state(straight.model))
    assert (loaded.best_epoch_, loaded.best_value_, loaded.start_logs_) == (
        straight.best_epoch_, straight.best_value_, straight.start_logs_)

    # A file without keep_best's entry (older): the best of the epochs run from there.
    del saved["best"]
    torch.save(saved, tmp_path / "older.pt")
    older = trainer().load(tmp_path / "older.pt")
    assert older.best_epoch_ is None and older.start_logs_ is None
    older.fit(P1, validation=P1)
    assert without_time(older.history_) == without_time(straight.history_)
    assert older.best_epoch_ == 4 + first_argmin(straight.history_.val_loss[4:])

    with pytest.raises(ValueError, match="keep_best: the saved trainer kept the best by "
                                         "'val_loss', this one has keep_best='loss'"):
        trainer(keep_best="loss").load(path)
    assert quiet(jacobi(), epochs=1).fit(P1).best_epoch_ is None
    quiet(jacobi(), epochs=1).fit(P1).save(path)
    assert torch.load(path, weights_only=True)["best"] is None


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize("keep_best", ["iterations", "val", 3, ""])
def test_keep_best_must_name_an_entry(keep_best):
    with pytest.raises(ValueError, match="keep_best: expected None, 'loss', 'val_loss' or the "
                                         r"name of a metric \['m'\]"):
        Trainer(jacobi(), keep_best=keep_best, metrics={"m": scripted([])})


def test_keep_best_val_loss_needs_validation_problems():
    trainer = quiet(jacobi(), keep_best="val_loss")
    with pytest.raises(ValueError, match="validation: keep_best='val_loss' needs validation"):
        trainer.fit(P1)


# ---------------------------------------------------------------------- by PCG iterations
def test_keep_best_by_pcg_iterations_of_a_learned_factor():
    p = poisson_2d(8, dtype=F64)

    def trainer(epochs, **kwargs):
        return quiet(PCG(M=LowerFactor.banded(p, 1), maxiter=4, rtol=0.0), lr=0.03,
                     epochs=epochs, metrics={"iterations": pcg_iterations()}, **kwargs)

    kept = trainer(12, keep_best="iterations").fit(p)
    iterations = kept.history_.iterations
    start = kept.start_logs_["iterations"]
    assert start == pcg_iterations()(PCG(M=LowerFactor.banded(p, 1)), p)
    assert iterations.min() < start and iterations[0] > start    # epoch 0 is worse
    assert kept.best_epoch_ == first_argmin(iterations)
    assert pcg_iterations()(kept.model, p) == kept.best_value_ == iterations.min()
    reference = trainer(kept.best_epoch_ + 1).fit(p)
    assert same(state(kept.model), state(reference.model))


# ---------------------------------------------------------------------- pcg_iterations
def test_pcg_iterations_counts_as_pcg_does():
    p = poisson_2d(8, dtype=F64)
    M = jacobi(64, omega=0.8)
    b = p.random_rhs(seed=p.seed)
    direct = PCG(M=M, rtol=1e-6)(p.A, b)
    assert direct.converged
    assert pcg_iterations()(M, p) == direct.iterations
    assert pcg_iterations()(PCG(M=M), p) == direct.iterations      # a PCG: its M
    trained = compare_preconditioners(M, p, baselines=())[0]
    assert trained.iterations == direct.iterations
    # Several right-hand sides: the mean of their solves, each on its own (a block
    # solve runs until its slowest column has converged).
    B = p.random_rhs(3, seed=p.seed)
    counts = [PCG(M=M, rtol=1e-3)(p.A, B[:, j].contiguous()).iterations for j in range(3)]
    assert len(set(counts)) > 1
    assert pcg_iterations(rtol=1e-3, num_rhs=3)(M, p) == sum(counts) / 3
    assert PCG(M=M, rtol=1e-3)(p.A, B).iterations == max(counts)
    # A fixed b is solved for.
    fixed = Problem(p.A, b=torch.ones(64, dtype=F64))
    assert pcg_iterations()(M, fixed) == PCG(M=M, rtol=1e-6)(p.A, fixed.b).iterations


def test_pcg_iterations_counts_no_convergence_as_maxiter_plus_one():
    p = poisson_2d(8, dtype=F64)
    M = jacobi(64)
    assert PCG(M=M, rtol=1e-6, maxiter=3)(p.A, p.random_rhs(seed=p.seed)).status == "maxiter"
    assert pcg_iterations(maxiter=3)(M, p) == 4.0
    # A breakdown (M = -D^-1, not positive definite), with PCG's default maxiter 10 n.
    assert pcg_iterations()(jacobi(64, omega=-1.0), p) == 10 * 64 + 1


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rtol=0.0), ValueError, "rtol: expected a finite number > 0"),
    (dict(rtol=math.nan), ValueError, "rtol: expected a finite number > 0"),
    (dict(rtol=True), ValueError, "rtol: expected a finite number > 0"),
    (dict(maxiter=0), ValueError, "maxiter: expected an integer >= 1"),
    (dict(maxiter=2.5), TypeError, "maxiter: expected an integer"),
    (dict(num_rhs=0), ValueError, "num_rhs: expected an integer >= 1"),
])
def test_pcg_iterations_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        pcg_iterations(**kwargs)


def test_pcg_iterations_needs_a_preconditioner():
    with pytest.raises(ValueError, match="model: pcg_iterations needs a preconditioner"):
        pcg_iterations()(PCG(), poisson_2d(4, dtype=F64))
