"""How long the worker of `seqplay train --worker` outlives its parent (docs/hardening.md, class 3).

    PYTHONPATH=. python tests/measure_worker_exit.py [ROUNDS]

Starts a tiny training in a `seqplay train --worker` subprocess, waits for a checkpoint past step 0,
sends SIGKILL or SIGTERM to the CLI process and polls /proc every 10 ms until the worker has exited.
Linux only.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.test_processes import _gone, _start_training, _status, _worker_pid  # noqa: E402


def main(rounds: int = 2) -> None:
    for sig in (signal.SIGKILL, signal.SIGTERM) * rounds:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["SEQPLAY_HOME"] = str(Path(tmp) / "home")
            proc, run = _start_training(Path(tmp), "--worker")
            worker = _worker_pid(proc.pid)
            os.kill(proc.pid, sig)
            t0 = time.monotonic()
            while not _gone(worker):
                time.sleep(0.01)
            print(f"{sig.name}: worker gone after {time.monotonic() - t0:.2f} s; run.json says {_status(run)}")
            proc.communicate()
    print(f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows this)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
