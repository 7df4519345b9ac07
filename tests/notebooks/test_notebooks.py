"""Execute every notebook in `notebooks/` so that they cannot rot.

Each notebook runs top to bottom in a fresh Python kernel (nbclient + ipykernel); any
cell that raises fails the test with that cell's traceback. Notebooks are kept small
(about 50,000 generated events each) and must not write into the checkout (they work
in temporary directories).

They are committed WITH their outputs, so their plots can be read in the repository:
`make notebooks` (scripts/execute_notebooks.py) re-executes and saves them. The test
checks that every code cell was executed in order, that no output is an error, and
that a fresh run draws the same plots in the same cells.

The kernel gets `OMP_NUM_THREADS=1` (scikit-learn's OpenMP threads cost more than they
save on small batches, badly so on a busy machine) and matplotlib's inline backend
(plots become image/png outputs, no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
WATCHED = ("notebooks", "models", "patterns")  # where a careless notebook would write


def snapshot() -> dict[str, tuple[int, int]]:
    out = {}
    for top in WATCHED:
        for p in (ROOT / top).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts:
                st = p.stat()
                out[str(p.relative_to(ROOT))] = (st.st_size, st.st_mtime_ns)
    return out


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"pattern_authoring.ipynb", "model_training.ipynb"}


def plot_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
        "image/png" in o.get("data", {}) for o in c.outputs)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_its_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: not executed top to bottom in one run ({counts}); run `make notebooks`")
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: a committed output is an error"
    assert plot_cells(nb), f"{path.name}: no plot in the committed outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path) -> None:
    committed = nbformat.read(path, as_version=4)
    nb = nbformat.read(path, as_version=4)
    before = snapshot()
    client = NotebookClient(
        nb,
        timeout=600,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    client.execute(env=env)  # raises CellExecutionError naming the failing cell
    assert snapshot() == before, "the notebook wrote into the checkout"
    assert plot_cells(nb) == plot_cells(committed), "the plots changed: run `make notebooks`"
