"""Every tutorial notebook runs top to bottom, at a reduced size.

A notebook's parameter cell (the code cell tagged ``parameters``, as papermill
marks it) assigns its sizes; the notebook's metadata
``learnsolve.test_parameters`` holds the smaller values the tests run it with.
They are injected as a cell right after the parameter cell, so the notebook's
own code runs unchanged. ``LEARNSOLVE_TUTORIALS_FULL=1`` runs the notebooks at
their full size instead (each should take under two minutes on a laptop CPU;
``--durations=0`` reports how long each took).
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
FULL = os.environ.get("LEARNSOLVE_TUTORIALS_FULL") == "1"
TIMEOUT = 600  # seconds per cell


def parameter_cell(notebook) -> int:
    """Index of the notebook's only cell tagged ``parameters``."""
    tagged = [i for i, cell in enumerate(notebook.cells)
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    assert notebook.cells[tagged[0]].cell_type == "code"
    return tagged[0]


def assigned_names(source: str) -> set[str]:
    """Names a cell's top-level statements assign."""
    names = set()
    for statement in ast.parse(source).body:
        targets = (statement.targets if isinstance(statement, ast.Assign)
                   else [statement.target] if isinstance(statement, ast.AnnAssign) else [])
        for target in targets:
            names |= {node.id for node in ast.walk(target) if isinstance(node, ast.Name)}
    return names


def reduced_parameters(notebook, full: bool = False) -> dict:
    """The reduced sizes the tests run ``notebook`` with (none when ``full``)."""
    return {} if full else dict(notebook.metadata["learnsolve"]["test_parameters"])


def execute(path: Path, parameters: dict):
    """Run the notebook at ``path`` with ``parameters`` injected after its parameter cell."""
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        source = "# injected by tests/test_tutorials.py\n" + "\n".join(
            f"{name} = {value!r}" for name, value in parameters.items())
        notebook.cells.insert(parameter_cell(notebook) + 1, nbformat.v4.new_code_cell(source))
    NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(TUTORIALS)}}).execute()
    return notebook


def figures(notebook) -> int:
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs)


def trains(notebook) -> bool:
    """Whether the notebook trains with the Trainer."""
    return any("Trainer(" in cell.source for cell in notebook.cells if cell.cell_type == "code")


def progress_bar_shown(notebook) -> bool:
    """Whether a cell printed the Trainer's text progress bar ("training: ..." on stderr)
    or displayed its notebook widget."""
    return any((output.output_type == "stream" and output.name == "stderr"
                and "training:" in output.text)
               or "application/vnd.jupyter.widget-view+json" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


def warnings_shown(notebook) -> list[str]:
    """Text of the warnings the notebook's cells printed (to stderr)."""
    return [output.text for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs
            if output.output_type == "stream" and output.name == "stderr"
            and "Warning" in output.text]


def test_the_tutorials_are_there():
    names = [path.stem for path in NOTEBOOKS]
    assert names == ["01_sparse_autodiff", "02_jacobi", "03_heavyball", "04_pcg_preconditioner",
                     "05_spai", "06_graph_convolution", "07_domain_decomposition",
                     "08_beating_ic0", "09_generalising"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_reduced_sizes_are_parameters(path):
    """Each injected name is one the parameter cell assigns (a renamed parameter
    would otherwise leave the test running at the full size)."""
    notebook = nbformat.read(path, as_version=4)
    parameters = reduced_parameters(notebook)
    assert parameters, "expected reduced sizes in metadata learnsolve.test_parameters"
    names = assigned_names(notebook.cells[parameter_cell(notebook)].source)
    assert set(parameters) <= names, f"not in the parameter cell: {set(parameters) - names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path):
    notebook = execute(path, reduced_parameters(nbformat.read(path, as_version=4), FULL))
    assert figures(notebook) >= 1, "a tutorial shows what it learned in at least one plot"
    assert not warnings_shown(notebook)
    if trains(notebook):
        assert progress_bar_shown(notebook), "a tutorial that trains shows a progress bar"
