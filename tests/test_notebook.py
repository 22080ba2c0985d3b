"""docs/quickstart.ipynb runs from top to bottom, and is committed without outputs.

The notebook runs in a fresh Jupyter kernel (nbclient), from the repository root so that
`experiments` imports, with matplotlib's Agg backend. The kernel inherits this process's
environment, so conftest.py's XLA settings and compilation cache apply to it too.
Measured: about 65 s on the team's loaded 2-core CPU.
"""

import pathlib
import shutil

import nbclient
import nbformat

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "docs" / "quickstart.ipynb"
# Per cell; the slowest, training the tiny model, took 18 s with conftest.py's settings and
# 140 s at XLA's default optimisation on the loaded machine.
CELL_TIMEOUT_S = 600


def test_quickstart_notebook_runs_without_errors(tmp_path, monkeypatch):
  copy = tmp_path / NOTEBOOK.name
  shutil.copy(NOTEBOOK, copy)
  notebook = nbformat.read(copy, as_version=4)
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # The tiny training run's workdir lands here.
  client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                   resources={"metadata": {"path": str(REPO)}})
  client.execute()  # Raises CellExecutionError, with the traceback, if a cell fails.
  nbformat.write(notebook, copy)  # Kept in tmp_path for a look after a surprise.
  code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(cell.execution_count is not None for cell in code_cells)
  errors = [output for cell in code_cells for output in cell.outputs
            if output.output_type == "error"]
  assert not errors
  printed = "".join(output.get("text", "") for cell in code_cells for output in cell.outputs
                    if output.output_type == "stream")
  assert "MALA acceptance rate" in printed and "held-out log-likelihood" in printed, printed
  assert "density at x = 0.01" in printed, printed


def test_committed_notebook_has_no_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert notebook.nbformat == 4
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [], f"cell {cell.get('id')} has outputs: strip them"
      assert cell.execution_count is None, f"cell {cell.get('id')} has an execution count"
    assert "execution" not in cell.metadata, f"cell {cell.get('id')} has execution timings"
