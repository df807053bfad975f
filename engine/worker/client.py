"""WorkerClient: the caller's handle on the worker process (torch-free; the TUI imports it at start-up).

    client = WorkerClient().start()
    client.send(StartTraining(config=TrainConfig(...).to_dict()))
    for event in client.poll(timeout=0.1): ...
    client.close()

The worker runs ``engine.worker.process.main`` in a ``spawn``ed process (a fresh interpreter: no forked torch
threads, same behaviour on Linux, macOS and Windows). ``poll`` drains every event that has arrived;
when the process has died (SIGKILL, the out-of-memory killer, a crash) and its last events are read,
``poll`` yields exactly one ``ErrorEvent(fatal=True)`` saying so, and the caller carries on. The worker
has one owner: if the process that started it dies, it saves a checkpoint and exits by itself.
For ``resume``: ``StartTraining(resume_from=RUN, config={only the settings to change, e.g. steps})``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from typing import Any

from engine.worker import protocol as P


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = f"was killed by {name}" + (" (possibly the system ran out of memory)" if name == "SIGKILL" else "")
    else:
        why = f"exited unexpectedly (code {exitcode})"
    return f"the training worker {why}; the last checkpoint is intact, continue with `seqplay resume RUN`"


class WorkerClient:
    """Spawns the worker, sends commands, reads events. Usable as a context manager."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._cmd: Any = None
        self._ev: Any = None
        self._death_reported = False
        self._closing = False
        self.leftover: list[P.Event] = []  # events read while closing

    def start(self) -> WorkerClient:
        from engine.worker.process import main  # torch-free module; torch is imported in the child

        self._cmd = self._ctx.Queue()
        self._ev = self._ctx.Queue()
        self._proc = self._ctx.Process(target=main, args=(self._cmd, self._ev, os.getpid()), name="seqplay-worker", daemon=True)
        self._proc.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def send(self, cmd: P.Command) -> None:
        if self._proc is None:
            raise RuntimeError("WorkerClient.start() was not called")
        if self.alive:
            self._cmd.put(cmd)

    def poll(self, timeout: float = 0.0, limit: int = 10_000) -> list[P.Event]:
        """Every event available now (waiting up to ``timeout`` seconds for the first one)."""
        events: list[P.Event] = []
        if self._ev is None:
            return events
        try:
            events.append(self._ev.get(timeout=timeout) if timeout > 0 else self._ev.get_nowait())
            while len(events) < limit:
                events.append(self._ev.get_nowait())
        except (queue.Empty, EOFError, OSError):
            pass
        if not events and not self._death_reported and self._proc is not None and not self.alive:
            self._death_reported = True
            if not (self._closing and self._proc.exitcode == 0):
                events.append(P.ErrorEvent(message=_death_message(self._proc.exitcode), fatal=True))
        return events

    def events(self, timeout: float = 0.1):
        """Iterate events until the worker ends (convenience for headless callers)."""
        while True:
            batch = self.poll(timeout)
            yield from batch
            if not batch and self._death_reported:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop (it saves a checkpoint), wait, then make sure it is gone."""
        if self._proc is None:
            return
        self._closing = True
        if self.alive:
            try:
                self._cmd.put(P.Shutdown())
            except (OSError, ValueError):
                pass
            # keep reading while it finishes: a full pipe would block its last writes
            import time

            deadline = time.monotonic() + timeout
            while self._proc.is_alive() and time.monotonic() < deadline:
                self.leftover.extend(self.poll(0.05))
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)
        for q in (self._cmd, self._ev):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> WorkerClient:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
