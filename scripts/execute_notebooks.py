"""Execute the notebooks in place and save them WITH their outputs (plots included), so
that they can be read on GitHub without running them: `python scripts/execute_notebooks.py`
(`make notebooks`). tests/notebooks checks that every committed notebook carries its
outputs and still runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, *, save: bool) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPATH": str(ROOT)})
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)  # inline matplotlib backend: plots become image/png outputs
    if save:
        nbformat.write(nb, path)
    return nb


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for p in paths:
        execute(p, save=True)
        print(f"executed and saved {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
