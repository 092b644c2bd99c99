"""scripts/cpu-chains.sh: chains of grid cells in the background, stopped with a checkpoint.

A stand-in for Python records each cell it is given and, on SIGTERM, that it saved a checkpoint:
what matters here is the order of the cells, the one thread, the frozen code, and that `stop`
waits for the cell to finish saving."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cpu-chains.sh"

FAKE_PYTHON = """#!/bin/bash
# called as: PYTHON -c CODE experiment GRID --output-dir DIR --only CELL
cell=${@: -1}
trap 'sleep 1; echo "$cell saved" >> "$LOG"; exit 143' TERM
echo "$cell threads=$OMP_NUM_THREADS code=$PYTHONPATH" >> "$LOG"
[ "$cell" = slow ] && { sleep 30 & wait; }
echo "$cell done" >> "$LOG"
"""

pytestmark = pytest.mark.skipif(shutil.which("setsid") is None or not (ROOT / ".git").exists(),
                                reason="needs setsid and a git checkout")


def chains(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    # conftest gives tests one thread (OMP_NUM_THREADS=1): a chain must set its own, so start from another
    env = {**os.environ, "OMP_NUM_THREADS": "2", "STATE": str(tmp_path / "state"), "PYTHON": str(tmp_path / "python"),
           "LOG": str(tmp_path / "calls.log")}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def wait_for(path: Path, text: str) -> str:
    for _ in range(200):
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_chains_run_their_cells_in_order_and_stop_waits_for_the_checkpoint(tmp_path):
    (tmp_path / "python").write_text(FAKE_PYTHON)
    (tmp_path / "python").chmod(0o755)
    grid = "docs/results/conll04-control/grid.toml"
    started = chains(["start", grid, str(tmp_path / "out"), "a1,a2,slow", "b1"], tmp_path)
    assert started.returncode == 0, started.stderr
    log = wait_for(tmp_path / "calls.log", "slow threads")
    assert chains(["start", grid, str(tmp_path / "out"), "c1"], tmp_path).returncode == 1  # one set at a time
    stopped = chains(["stop"], tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    log = (tmp_path / "calls.log").read_text().splitlines()
    a = [line for line in log if line[0] in "as"]
    assert [line.split()[0] for line in a] == ["a1", "a1", "a2", "a2", "slow", "slow"]
    assert a[-1] == "slow saved"  # stop returned after the cell had saved, and no cell came after it
    assert "b1 done" in log
    code = a[0].split("code=")[1]
    assert "threads=1" in a[0] and code.startswith(str(tmp_path / "state" / "code-")) and Path(code).is_dir()
    assert "running: 0" in chains(["status"], tmp_path).stdout
