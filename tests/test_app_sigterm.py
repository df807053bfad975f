"""SIGTERM while the app trains: the real ``seqplay`` app in a pseudo-terminal, a tiny run started with
``t``, then SIGTERM to the app (``kill PID``) or to its whole session (a session manager or service
stopping everything, which also reaches the worker). The app exits with 143 and its worker ends, both
within a bound; the terminal is restored (the alternate screen left, the cursor shown again); the run
folder holds an intact checkpoint of a step past the start, and the run is marked stopped."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import tomli_w

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXIT_BOUND_S = 60.0


def _tiny_memory(home: Path) -> None:
    """What the app restores at start: the grammar corpus and a tiny transformer with no step limit."""
    memory = {
        "data": {"source": "grammar", "tokenizer": "char", "val_fraction": 0.1},
        "model": {"arch": "transformer",
                  "hparams": {"transformer": {"context": "16", "layers": "1", "heads": "2", "width": "16",
                                              "mlp_ratio": "2"}},
                  "training": {"batch": "4", "steps": "", "time-budget": "", "device": "cpu"}},
    }
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.toml").write_text(tomli_w.dumps(memory))


class _Reader(threading.Thread):
    """Drains the pty (a full pty would block the app's writes) and keeps everything it wrote."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.data = fd, bytearray()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.data.extend(chunk)


def _wait(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def _checkpoints(runs: Path) -> list[Path]:
    return sorted(runs.glob("*/checkpoints/step-*.json"))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pty and /proc")
@pytest.mark.parametrize("target", ["app", "session"])
def test_sigterm_while_training_restores_the_terminal_and_leaves_a_checkpoint(tmp_path: Path, target: str):
    from engine.runs.checkpoint import load_model

    home = tmp_path / "home"
    _tiny_memory(home)
    runs = home / "runs"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "SEQPLAY_HOME": str(home), "HOME": str(tmp_path), "TERM": "xterm-256color",
           "PYTHONPATH": str(REPO), "COLUMNS": "100", "LINES": "30"}
    proc = subprocess.Popen([sys.executable, "-m", "seqplay"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=tmp_path, start_new_session=True, close_fds=True)
    os.close(slave)
    reader = _Reader(master)
    reader.start()
    try:
        _wait(lambda: b"\x1b[?1049h" in reader.data, 60, "the app to take the screen")
        # the corpus is counted after the first paint; until then t would say "no corpus is loaded"
        _wait(lambda: b"validation tokens" in reader.data, 60, "the corpus statistics")
        time.sleep(0.5)
        os.write(master, b"t")
        _wait(lambda: _checkpoints(runs), 120, "the run's first checkpoint")
        run = _checkpoints(runs)[0].parents[1]
        _wait(lambda: any(json.loads(line).get("event") == "step" for line in
                          (run / "metrics.jsonl").read_text().splitlines() if line.strip()), 60, "training steps")
        time.sleep(1)
        assert proc.poll() is None, reader.data[-2000:]
        worker = json.loads((run / "run.json").read_text())["pid"]
        if target == "app":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        started = time.monotonic()
        try:
            code = proc.wait(EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the app did not exit within {EXIT_BOUND_S:.0f} s of SIGTERM")
        took = time.monotonic() - started
        _wait(lambda: _gone(worker), EXIT_BOUND_S - took, "the worker to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(5)
        os.close(master)
    out = bytes(reader.data)
    assert b"Traceback" not in out, out[-3000:].decode(errors="replace")
    assert code == 143, (code, out[-3000:].decode(errors="replace"))
    last_enter = out.rfind(b"\x1b[?1049h")
    assert out.rfind(b"\x1b[?1049l") > last_enter, "the alternate screen was not left"
    assert out.rfind(b"\x1b[?25h") > last_enter, "the cursor was not shown again"
    steps = [int(p.stem.split("-")[1]) for p in _checkpoints(runs)]
    assert max(steps) > 0, f"only the start checkpoint was written: {steps}"
    status = json.loads((run / "run.json").read_text())["status"]
    assert status == "stopped", status
    loaded = load_model(str(run))  # checks every tensor against the sha256 its JSON names
    assert loaded.meta["step"] == max(steps) or loaded.meta["step"] in steps
    print(f"exit {code} after {took:.1f} s; checkpoints at steps {steps}")
