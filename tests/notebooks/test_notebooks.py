"""Execute every notebook in `notebooks/` so that they cannot rot.

Each notebook runs top to bottom in a fresh Python kernel (nbclient + ipykernel); any
cell that raises fails the test with that cell's traceback. Notebooks are kept small
(about 50,000 generated events each). They must be saved without outputs, and must not
write into the checkout (they work in temporary directories).

The kernel gets `MPLBACKEND=Agg` (no display) and `OMP_NUM_THREADS=1` (scikit-learn's
OpenMP threads cost more than they save on small batches, badly so on a busy machine).
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before saving"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    before = snapshot()
    client = NotebookClient(
        nb,
        timeout=600,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    client.execute(env=env)  # raises CellExecutionError naming the failing cell
    assert snapshot() == before, "the notebook wrote into the checkout"
