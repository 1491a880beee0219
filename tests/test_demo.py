from learnsolve import demo


def test_demo_learns_the_matrix(capsys):
    error = demo.main(n=12, steps=300)
    assert error < 1e-3
    out = capsys.readouterr().out
    assert "step    0" in out and "relative error" in out
