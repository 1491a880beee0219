from learnsolve import demo


def test_demo_learns_the_matrix(capsys):
    error = demo.fit_matrix(n=12, steps=300)
    assert error < 1e-3
    out = capsys.readouterr().out
    assert "step    0" in out and "relative error" in out


def test_demo_learns_a_preconditioner(capsys):
    evaluation = demo.learn_preconditioner(n=8, epochs=300, progress=False)
    iterations = {row.method: row.iterations for row in evaluation}
    assert all(row.converged for row in evaluation)
    assert iterations["trained"] < iterations["none"]
    assert "trained" in capsys.readouterr().out
