"""NeuralFactor and FactorNet: a factor predicted from the matrix, for any size, started
from IC(k), guarded, batched by block-diagonal matrices."""
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import learnsolve as ls
import learnsolve.solvers.neural as neural_module
from cases import randn
from learnsolve.nn import FactorNet
from learnsolve.problems import diffusion_2d, poisson_2d
from learnsolve.solvers import PCG, IncompleteCholesky, NeuralFactor, pcg_loss

F64 = torch.float64


def _lognormal(n, seed=0):
    return diffusion_2d(n, n, "lognormal", seed=seed, dtype=F64)


def _model(correction=True, fill=0, seed=0):
    torch.manual_seed(seed)
    return NeuralFactor(FactorNet(8, 2), correction=correction, fill=fill).double()


@pytest.mark.parametrize("fill", [0, 1])
def test_untrained_correction_is_ic_k(fill):
    A = _lognormal(10).A
    M = _model(fill=fill)
    classical = IncompleteCholesky(fill).factor(A)
    torch.testing.assert_close(M.factor(A).to_dense(), classical.to_dense(), rtol=1e-13,
                               atol=1e-14)
    b = randn(100, seed=1)
    assert PCG(M=M, rtol=1e-8)(A, b).iterations == \
        PCG(M=IncompleteCholesky(fill), rtol=1e-8)(A, b).iterations


def test_one_network_for_every_size_and_scale():
    M = _model()
    with torch.no_grad():
        M.alpha.fill_(0.3)
    for n in (6, 13):
        A = _lognormal(n, seed=n).A
        L = M.factor(A)
        assert L.shape == A.shape and L.nnz == A.tril().nnz
        torch.testing.assert_close(M.factor(49 * A).values, 7 * L.values, rtol=1e-12, atol=0)
        assert not torch.allclose(L.values, IncompleteCholesky().factor(A).values)


def test_the_diagonal_stays_positive_whatever_the_network_says():
    A = _lognormal(8).A
    for correction in (True, False):
        M = _model(correction=correction)
        with torch.no_grad():
            if correction:
                M.alpha.fill_(50.0)
            for p in M.net.parameters():
                p.mul_(3)
        L = M.factor(A)
        diagonal = L.values[L.col_indices == L.row_indices()]
        assert bool((diagonal > 0).all()) and bool(torch.isfinite(L.values).all())
        op = M.setup(A)
        assert op.symmetric
        dense = op(torch.eye(64, dtype=F64)).detach()
        torch.testing.assert_close(dense, dense.T, rtol=1e-9, atol=1e-12)


def test_gradients_reach_alpha_first_then_the_network():
    p = _lognormal(8)
    M = _model()
    loss = pcg_loss(PCG(M=M, maxiter=5, rtol=0.0), p, p.random_rhs(3, seed=0, normalize=True),
                    iterations=5)
    loss.backward()
    assert float(M.alpha.grad.abs()) > 0                 # the start moves only through alpha
    assert all(float(q.grad.abs().max()) == 0 for q in M.net.parameters() if q.grad is not None)
    with torch.no_grad():
        M.alpha.fill_(0.1)
    M.zero_grad()
    pcg_loss(PCG(M=M, maxiter=5, rtol=0.0), p, p.random_rhs(3, seed=0, normalize=True),
             iterations=5).backward()
    assert float(M.net.decode[-1].weight.grad.abs().max()) > 0


def test_gradcheck_in_alpha_and_a_network_weight():
    A = _lognormal(5).A
    M = _model()
    alpha = torch.tensor(0.2, dtype=F64, requires_grad=True)
    bias = M.net.decode[-1].bias.detach().clone().requires_grad_(True)
    del M.alpha, M.net.decode[-1].bias          # plain tensors in their place, for gradcheck

    def factor(alpha, bias):
        M.alpha, M.net.decode[-1].bias = alpha, bias
        return M.factor(A).values
    assert gradcheck(factor, (alpha, bias))


def test_a_factor_that_is_not_finite_falls_back_to_ic_k_and_says_so():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones((), dtype=F64))

        def forward(self, graph, reference):
            return self.w * torch.full_like(reference, float("nan"))
    A = _lognormal(8).A
    M = NeuralFactor(Broken(), correction=False).double()
    b = randn(64, seed=3)
    with pytest.warns(RuntimeWarning, match="non-finite entries; IC\\(0\\) was used"):
        solution = PCG(M=M, rtol=1e-8)(A, b)
    assert solution.converged and "IC(0) was used instead" in solution.message
    assert solution.iterations == PCG(M=IncompleteCholesky(), rtol=1e-8)(A, b).iterations


def test_a_batch_is_a_block_diagonal_matrix():
    problems = [_lognormal(6, seed=1), _lognormal(9, seed=2), poisson_2d(5, dtype=F64)]
    M = _model()
    with torch.no_grad():
        M.alpha.fill_(0.4)
    batch = ls.block_diag([p.A for p in problems])
    ref = M.reference(batch)
    separate = [M.net(M.reference(p.A).graph, M.reference(p.A).features) for p in problems]
    torch.testing.assert_close(M.net(ref.graph, ref.features), torch.cat(separate),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(M.factor(batch).to_dense(),
                               torch.block_diag(*[M.factor(p.A).to_dense() for p in problems]),
                               rtol=1e-12, atol=1e-14)


def test_what_depends_on_a_alone_is_computed_once_per_matrix(monkeypatch):
    calls = []
    original = neural_module._reference
    monkeypatch.setattr(neural_module, "_reference",
                        lambda *args: calls.append(1) or original(*args))
    M = _model()
    A, B = _lognormal(6, seed=1).A, _lognormal(6, seed=2).A    # one pattern, two matrices
    for _ in range(3):
        M.setup(A)
        M.setup(B)
    assert len(calls) == 2


def test_bad_input():
    with pytest.raises(TypeError, match="net: expected None or an nn.Module"):
        NeuralFactor(lambda A, r: r)
    with pytest.raises(TypeError, match="correction: expected a bool"):
        NeuralFactor(correction=1)
    with pytest.raises(ValueError, match="fill: expected an integer >= 0"):
        NeuralFactor(fill=-1)
    nonsymmetric = ls.CSRMatrix.from_dense(torch.tensor([[2.0, -1.0], [0.0, 2.0]], dtype=F64))
    with pytest.raises(ValueError, match="A: "):
        _model().setup(nonsymmetric)
    with pytest.raises(ValueError, match="reference: expected a tensor of shape"):
        FactorNet(4, 1).double()(poisson_2d(3, dtype=F64).A, torch.zeros(3, dtype=F64))


def test_an_rcm_ordering_starts_from_ic0_in_that_order():
    from learnsolve.problems import l_shape, fem_problem
    A = fem_problem(l_shape(0.1), dtype=F64).A
    M = NeuralFactor(FactorNet(8, 1), ordering="rcm").double()
    perm = M.permutation(A)
    assert perm is not None and sorted(perm.tolist()) == list(range(A.shape[0]))
    b = randn(A.shape[0], seed=2)
    classical = IncompleteCholesky(ordering="rcm")
    assert PCG(M=M, rtol=1e-8)(A, b).iterations == PCG(M=classical, rtol=1e-8)(A, b).iterations
    torch.testing.assert_close(M.factor(A).to_dense(), classical.factor(A).to_dense(),
                               rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="ordering: expected one of"):
        NeuralFactor(ordering="amd")


def test_the_guard_falls_back_to_ic0_where_the_prediction_is_worse_and_says_so():
    A = _lognormal(12, seed=3).A
    b = randn(144, seed=4)
    M = _model()
    with torch.no_grad():
        M.alpha.fill_(-0.9)            # a correction that undoes most of IC(0): worse
    unguarded = PCG(M=M, rtol=1e-8)(A, b)
    ic0 = PCG(M=IncompleteCholesky(), rtol=1e-8)(A, b)
    assert unguarded.iterations > ic0.iterations
    M.guard = 5
    with torch.no_grad():
        guarded = PCG(M=M, rtol=1e-8)(A, b)
    assert guarded.iterations == ic0.iterations
    assert "IC(0) was used instead (guard)" in guarded.message
    with torch.no_grad():
        M.alpha.fill_(0.0)             # IC(0) itself: not worse, kept, nothing said
        kept = PCG(M=M, rtol=1e-8)(A, b)
    assert kept.iterations == ic0.iterations and "guard" not in kept.message
    # training (a recorded graph) is never guarded: the loss sees the prediction
    with torch.no_grad():
        M.alpha.fill_(-0.9)
    trained = PCG(M=M, maxiter=unguarded.iterations + 5, rtol=1e-8)(A, b)
    assert trained.iterations == unguarded.iterations
    with pytest.raises(ValueError, match="guard: expected an integer >= 0"):
        NeuralFactor(guard=-1)
