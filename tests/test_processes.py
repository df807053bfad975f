"""Issue 14, class 3: processes have one owner.

- the worker of ``seqplay train --worker`` stops (saving) and exits within 5 s of its parent dying
  (SIGTERM or SIGKILL of the parent); the last checkpoint loads;
- SIGTERM to ``seqplay train`` is handled like Ctrl-C (checkpoint saved, exit code 130);
- a run in use is locked: a second writer gets one line naming the process that holds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import CheckpointError
from engine.runs.checkpoint import load_model, step_checkpoints
from engine.runs.folders import RunLock
from tests.train_helpers import TEXT

REPO = Path(__file__).parents[1]
TINY = ["--layers", "1", "--width", "16", "--heads", "2", "--context", "8", "--batch-size", "2", "--threads", "1",
        "--precision", "fp32", "--compile", "off", "--sample-every", "0", "--warmup", "1", "--eval-every", "20"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _start_training(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "seqplay", "train", str(corpus), *TINY, "--steps", "1000000",
                             "--runs-dir", str(runs), "--run-name", "r", *extra],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = runs / "r"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # training is under way once a checkpoint past step 0 exists
        if run.is_dir() and any(step > 0 for step, _ in step_checkpoints(run)):
            return proc, run
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no checkpoint within 120 s")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _worker_pid(pid: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in _children(pid):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
                return child
        time.sleep(0.1)
    raise AssertionError("no worker process found")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has exited (nobody may reap it inside a container)


def _status(run: Path) -> str:
    return json.loads((run / "run.json").read_text())["status"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_the_worker_stops_with_a_checkpoint_when_its_parent_dies(tmp_path, sig):
    proc, run = _start_training(tmp_path, "--worker")
    worker = _worker_pid(proc.pid)
    before = step_checkpoints(run)[-1][0]
    os.kill(proc.pid, sig)
    t0 = time.monotonic()
    while not _gone(worker) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert _gone(worker), "the worker outlived its parent by 5 s"
    out, err = proc.communicate(timeout=30)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, (proc.returncode, err[-2000:])
        assert "Traceback" not in err
    assert _status(run) == "stopped"  # the job ended through Stop(save=True), not by being killed
    assert step_checkpoints(run)[-1][0] >= before
    loaded = load_model(run)
    assert loaded.meta["step"] >= before


def test_sigterm_is_handled_like_ctrl_c_and_a_running_run_is_locked(tmp_path):
    proc, run = _start_training(tmp_path)
    second = subprocess.run([sys.executable, "-m", "seqplay", "resume", str(run), "--steps", "5"], cwd=REPO,
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"in use by process {proc.pid}" in lines[0], lines
    assert _status(run) == "running"  # the refused writer changed nothing
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "stopping after this step and saving a checkpoint" in err and "Traceback" not in err
    assert _status(run) == "stopped"
    step = load_model(run).meta["step"]
    assert step > 0
    with RunLock(run):  # released when the process ended
        pass


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from engine.runs.folders import lock_run; "
                               f"lock_run({str(run)!r}); print('locked', flush=True); time.sleep(60)"],
                              cwd=REPO, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"in use by process {holder.pid}"):
            RunLock(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run):  # a killed holder leaves no stale lock
        with pytest.raises(CheckpointError, match=f"in use by process {os.getpid()}"):
            RunLock(run).acquire()  # flock is per open file: a second claim in one process is refused too
