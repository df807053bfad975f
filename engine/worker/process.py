"""The worker process: runs training and generation so the UI never waits on torch.

``engine.worker.client.WorkerClient`` starts ``main(cmd_queue, event_queue)`` in a child process (spawn).
This module imports torch only inside ``main``: the parent imports it just to name the entry point.

The loop: wait for a command; ``StartTraining`` runs a ``Trainer`` whose ``control`` drains the
command queue between steps (non-blocking while running, so pause/stop/set-lr act within one step);
``Generate``/``GenerateStep``/``CancelGeneration`` go to ``engine.generation.generate.GenerationJobs`` (with the
model being trained as the live model, if any) and ``pump()`` streams their tokens between training
steps or while idle. ``Shutdown`` stops any job (saving a checkpoint) and ends the process. SIGINT is
ignored here: Ctrl-C in a terminal reaches the whole process group, and the caller decides (it sends
``Stop``), so the worker always gets to write its checkpoint. A worker whose parent dies (TERM, KILL)
stops its job with a checkpoint and exits within about a second (``_watch_parent``). SIGTERM to the
worker itself (a whole process group or session ended, ``WorkerClient.close`` giving up) is a
``Shutdown`` too: it stops the job with a checkpoint and exits (``_stop_on_sigterm``).
"""

from __future__ import annotations

import os
import queue
import traceback
import uuid
from typing import Any

from engine.worker import protocol as P

_GEN_COMMANDS = (P.Generate, P.GenerateStep, P.CancelGeneration)
_ANALYSIS_COMMANDS = (P.Analyze, P.CancelAnalysis, *P.LAB_COMMANDS)  # lab jobs: engine.worker.lab_jobs


class _Worker:
    def __init__(self, cmd_queue: Any, event_queue: Any):
        self.cmd_queue = cmd_queue
        self.event_queue = event_queue
        self.trainer: Any = None
        self.jobs: Any = None
        self.analyses: Any = None
        self.shutdown = False
        self.orphaned = False  # the parent died (``_watch_parent``)

    def emit(self, event: P.Event) -> None:
        self.event_queue.put(event)

    # ------------------------------------------------------------------------------------ generation
    def _generation(self, cmd: P.Command) -> None:
        if self.jobs is None:
            from engine.device import choose_threads
            from engine.generation.generate import GenerationJobs

            # the window recompute on the idle cores but one (the app's UI keeps a core)
            self.jobs = GenerationJobs(self.emit, window_threads=choose_threads(None, reserve=1))
        live = None
        if self.trainer is not None and getattr(self.trainer, "model", None) is not None:
            live = (self.trainer.model, self.trainer.tokenizer)
        self._guarded(lambda: self.jobs.handle(cmd, live=live))

    def pump(self) -> None:
        """Let generation jobs stream a little (between training steps, or while idle)."""
        if self.jobs is not None:
            self._guarded(self.jobs.pump)

    def _busy(self) -> bool:
        return self.jobs is not None and bool(getattr(self.jobs, "active", True))

    def _guarded(self, fn: Any) -> None:
        """Run generation work without disturbing training: no grad, eval mode, own RNG stream."""
        import torch

        model = getattr(self.trainer, "model", None) if self.trainer is not None else None
        was_training = bool(model is not None and model.training)
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                if was_training:
                    model.eval()
                fn()
        except Exception as err:  # noqa: BLE001 - a generation bug must not kill training
            from engine.errors import SeqplayError

            msg = str(err) if isinstance(err, SeqplayError) else f"generation failed: {type(err).__name__}: {err}"
            self.emit(P.ErrorEvent(message=msg))
        finally:
            if was_training:
                model.train()

    # -------------------------------------------------------------------------------------- analyses
    def _analysis(self, cmd: P.Command) -> None:
        """Analyze / CancelAnalysis: ``engine.worker.analyses.AnalysisJobs`` (a thread per job)."""
        if isinstance(cmd, P.LAB_COMMANDS):
            from engine.worker.lab_jobs import LabJobs

            self.labs = getattr(self, "labs", None) or LabJobs(self.emit)
            return self.labs.handle(cmd)
        if self.analyses is None:
            from engine.worker.analyses import AnalysisJobs

            self.analyses = AnalysisJobs(self.emit)
        self.analyses.handle(cmd, live=self.trainer)

    def _end_analyses(self) -> None:
        if self.analyses is not None:
            self.analyses.cancel_all()
        if getattr(self, "labs", None) is not None:
            self.labs.cancel_all()

    # -------------------------------------------------------------------------------------- training
    def control(self, timeout: float) -> list[P.Command]:
        """The trainer's view of the command queue: training commands are returned, generation
        commands are dispatched, Shutdown becomes Stop."""
        out: list[P.Command] = []
        block = timeout > 0
        while True:
            try:
                cmd = self.cmd_queue.get(timeout=timeout) if block else self.cmd_queue.get_nowait()
            except queue.Empty:
                break
            except (EOFError, OSError):  # the caller is gone: stop, saving
                cmd = P.Shutdown()
            block = False
            if isinstance(cmd, _GEN_COMMANDS):
                self._generation(cmd)
            elif isinstance(cmd, _ANALYSIS_COMMANDS):
                self._analysis(cmd)
            elif isinstance(cmd, P.Shutdown):
                self.shutdown = True
                out.append(P.Stop(save=True))
            elif isinstance(cmd, P.StartTraining):
                self.emit(P.ErrorEvent(message="a training job is already running; stop it before starting another"))
            else:
                out.append(cmd)
        return out

    def train(self, cmd: P.StartTraining) -> None:
        from engine.training.trainer import Trainer

        job = str(cmd.config.get("run_name") or "") or f"train-{uuid.uuid4().hex[:8]}"
        try:
            self.trainer = Trainer(
                {} if cmd.resume_from else cmd.config,
                self.emit,
                control=self.control,
                resume_from=cmd.resume_from,
                job=job,
                overrides=cmd.config if cmd.resume_from else None,
                idle=self.pump,
            )
            self.trainer.run()
        except Exception as err:  # noqa: BLE001 - report, never die silently
            from engine.errors import SeqplayError

            if isinstance(err, SeqplayError):
                message = str(err)
            else:
                message = f"internal error while training: {type(err).__name__}: {str(err)[:200]}; please report it"
                self.emit(P.LogLine(job=job, level="debug", text=traceback.format_exc()))
            self.emit(P.ErrorEvent(job=job, message=message))
            self.emit(P.Finished(job=job, reason="error"))
        finally:
            self.trainer = None

    # ------------------------------------------------------------------------------------------ loop
    def loop(self) -> None:
        while not self.shutdown:
            try:
                cmd = self.cmd_queue.get(timeout=0.02 if self._busy() else 0.5)
            except queue.Empty:
                self.pump()
                continue
            except (EOFError, OSError):
                break
            if isinstance(cmd, P.StartTraining):
                self.train(cmd)
            elif isinstance(cmd, _GEN_COMMANDS):
                self._generation(cmd)
            elif isinstance(cmd, _ANALYSIS_COMMANDS):
                self._analysis(cmd)
            elif isinstance(cmd, P.Shutdown):
                break
            elif isinstance(cmd, P.Pause | P.Resume | P.SingleStep | P.Stop | P.SaveNow | P.SetLearningRate | P.SampleNow):
                self.emit(P.LogLine(level="warning", text=f"no training job is running; '{cmd.kind}' ignored"))
            self.pump()


WORKER_NICENESS = 10
ORPHAN_POLL_S = 0.25  # how often the worker checks that its parent is alive
ORPHAN_SAVE_S = 20.0  # after the parent died: time left to save a checkpoint before exiting anyway


def _watch_parent(parent: int, worker: _Worker, cmd_queue: Any, event_queue: Any) -> None:
    """Processes have one owner: when the process that started the worker dies (TERM, KILL, a
    crash), the worker is re-parented; it then stops its job, saving a checkpoint, and exits."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_S)
        worker.orphaned = True
        event_queue.cancel_join_thread()  # nobody reads events any more: never block on them
        try:
            cmd_queue.put(P.Shutdown())  # acted on between steps: Stop(save=True), then the loop ends
        except (OSError, ValueError):
            pass
        time.sleep(ORPHAN_SAVE_S)
        os._exit(3)  # the save did not finish in time: give up rather than outlive the owner

    threading.Thread(target=watch, name="seqplay-parent-watch", daemon=True).start()


def _stop_on_sigterm(cmd_queue: Any) -> None:
    """SIGTERM: stop the job, saving a checkpoint, then end (within ORPHAN_SAVE_S, else exit anyway).
    The handler only starts a thread: a queue is never touched from inside a signal handler."""
    import signal
    import threading
    import time

    def stop() -> None:
        try:
            cmd_queue.put(P.Shutdown())  # acted on between steps: Stop(save=True), then the loop ends
        except (OSError, ValueError):
            pass
        time.sleep(ORPHAN_SAVE_S)
        os._exit(3)

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
        threading.Thread(target=stop, name="seqplay-sigterm", daemon=True).start()

    signal.signal(signal.SIGTERM, handler)


def main(cmd_queue: Any, event_queue: Any, parent: int | None = None) -> None:
    """Entry point of the worker process (``multiprocessing`` spawn target); ``parent`` is the pid of
    the process that owns it (default: the parent at start)."""
    import signal

    parent = parent or os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Yield the CPU to the caller (the app's UI thread) whenever it has work: training may then use
    # every core without making key presses wait; an idle UI costs the worker nothing.
    try:
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):
        pass
    import torch  # noqa: F401 - the child pays the import, never the UI

    worker = _Worker(cmd_queue, event_queue)
    _watch_parent(parent, worker, cmd_queue, event_queue)
    _stop_on_sigterm(cmd_queue)
    try:
        worker.loop()
        worker._end_analyses()
    finally:
        event_queue.close()
        if not worker.orphaned:  # (an orphan's events have no reader: never wait on them)
            event_queue.join_thread()  # every event reaches the caller before the process ends
    # Every event is delivered and every checkpoint is on disk (fsynced): skip the interpreter's
    # teardown, which with torch loaded took seconds on a loaded machine (the owner waits for it).
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
