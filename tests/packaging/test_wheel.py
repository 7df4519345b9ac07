"""A wheel that runs: build the wheel from a copy of the checkout, install it (not
editable) into a fresh virtualenv, then run `cep --version` and `cep demo` from an
empty directory: the example patterns and models come from the package
(`share/cep/...`), not from a checkout.

The venv reuses the already-installed dependencies without running their `.pth`
files: a `.pth` in the venv adds this interpreter's site-packages to the path, which
(unlike --system-site-packages) does not activate an editable install of `cep` found
there, so the test runs the wheel's code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".cache", ".hypothesis", "*_cache", "build", "dist",
                              "*.egg-info", "var", "out", "__pycache__", "tests", "notebooks",
                              "benchmarks", ".venv*")


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"  # nothing is downloaded: the dependencies are installed
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.mark.timeout(240)
def test_wheel_installs_and_the_demo_runs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(src)], tmp_path)
    (wheel,) = dist.glob("cep-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    purelib = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                        "['purelib'])"], tmp_path).stdout.strip())
    (purelib / "host-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # this interpreter's pip, installing into the venv (its scripts run the venv's python)
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
         str(wheel)], tmp_path)

    work = tmp_path / "empty"
    work.mkdir()
    where = run([str(py), "-c", "import cep, service; print(cep.__file__, service.__file__)"],
                work).stdout
    assert str(venv) in where and str(ROOT) not in where, where
    cep = venv / "bin" / "cep"
    assert run([str(cep), "--version"], work).stdout.strip() == "cep 0.1.0"
    demo = run([str(cep), "demo", "--events", "20000"], work)
    share = venv / "share" / "cep"
    assert f"patterns from {share / 'patterns'}" in demo.stderr
    assert "warning: model" not in demo.stderr
    assert "risky_burst" in demo.stdout and "card_testing" in demo.stdout
    alerts = [json.loads(x) for x in (work / "out" / "demo-alerts.jsonl").read_text().splitlines()]
    assert len(alerts) > 10
    assert {"risky_burst", "card_testing"} <= {a["pattern"] for a in alerts}
