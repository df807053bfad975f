"""The worker's side of ``Analyze`` / ``CancelAnalysis``: Insight analyses as cancellable jobs.

One analysis runs at a time, in a thread of the worker process, so the worker keeps reading commands
(cancel, training controls, generation) while it computes; its ``AnalysisProgress`` events and its one
``AnalysisDone`` go straight to the event queue. The model comes from ``Analyze.run`` (loaded once and
kept for the next analysis of the same run) or, with ``live``, is a copy of the model being trained,
taken between two steps so training is never disturbed. The computing itself is
``engine.insight.analyses.run_analysis``, the same function the CLI calls.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine.worker import protocol as P

PROGRESS_INTERVAL = 0.1  # seconds between progress events (the last one always goes out)


class AnalysisJobs:
    """Starts, cancels and reports analysis jobs; ``handle(cmd, live=trainer or None)``."""

    def __init__(self, emit: Callable[[P.Event], None]):
        self.emit = emit
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._job = ""
        self._cached: tuple[Any, Any] | None = None  # (CheckpointIdentity, Loaded)
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def handle(self, cmd: P.Command, live: Any = None) -> None:
        if isinstance(cmd, P.CancelAnalysis):
            if self.running and cmd.job == self._job:
                self._cancel.set()
            return
        if not isinstance(cmd, P.Analyze):
            return
        analysis = cmd.params.analysis
        if self.running:
            self.emit(P.AnalysisDone(job=cmd.job, analysis=analysis, reason="error",
                                     message=f"another analysis ({self._job}) is running; cancel it first"))
            return
        subject: Any = cmd.run
        if cmd.live:
            if live is None or getattr(live, "model", None) is None:
                self.emit(P.AnalysisDone(job=cmd.job, analysis=analysis, reason="error",
                                         message="nothing is training; pick a run to analyse"))
                return
            subject = SimpleNamespace(model=copy.deepcopy(live.model), tokenizer=live.tokenizer,
                                      config=live.config, run_dir=getattr(live, "run_dir", None))
        self._job, self._cancel = cmd.job, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cmd, subject, self._cancel),
                                        name=f"analysis-{cmd.job}", daemon=True)
        self._thread.start()

    def cancel_all(self, wait: float = 5.0) -> None:
        """Cancel the running analysis and wait a little for it (worker shutdown)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(wait)

    def _load(self, run: str) -> Any:
        """The model ``run`` names, kept for the next analysis until the file it resolves to changes."""
        from engine.runs.checkpoint import checkpoint_identity, load_model

        key = checkpoint_identity(run)  # taken before loading: a file replaced meanwhile loads again next time
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
            self._cached = None  # free the old model before loading the next
            loaded = load_model(run)
            self._cached = (key, loaded)  # keep one: the next analysis is usually on the same run
            return loaded

    def _run(self, cmd: P.Analyze, subject: Any, cancel: threading.Event) -> None:
        from engine.errors import SeqplayError
        from engine.insight.analyses import AnalysisCancelled, run_analysis

        job, analysis = cmd.job, cmd.params.analysis
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, message: str) -> None:
            now = time.perf_counter()
            if now - last[0] >= PROGRESS_INTERVAL or done >= total:
                last[0] = now
                self.emit(P.AnalysisProgress(job=job, done=done, total=total, message=message))

        try:
            if isinstance(subject, str):
                progress(0, 1, f"loading {Path(subject).name}")
                subject = self._load(subject)
            data = run_analysis(cmd.params, subject, progress=progress, cancel=cancel)
            done = P.AnalysisDone(job=job, analysis=analysis, reason="done", data=data)
        except AnalysisCancelled:
            done = P.AnalysisDone(job=job, analysis=analysis, reason="cancelled", message="cancelled")
        except SeqplayError as err:
            done = P.AnalysisDone(job=job, analysis=analysis, reason="error", message=str(err))
        except Exception as err:  # noqa: BLE001 - a bug in one analysis must not take the worker down
            self.emit(P.LogLine(job=job, level="debug", text=traceback.format_exc()))
            done = P.AnalysisDone(job=job, analysis=analysis, reason="error",
                                  message=f"{analysis} failed ({type(err).__name__}: {str(err)[:160]}); please report it")
        self.emit(dataclasses.replace(done, seconds=time.perf_counter() - t0))
