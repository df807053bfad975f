"""The worker's side of the lab commands (``Compare``, ``StageView``, ``Timeline``, ``WriteCard``, ``CancelLab``).

One lab job runs at a time, in a thread of the worker process (as ``engine.worker.analyses`` does for
Insight), so the worker keeps reading commands while it computes. The computing is the engine's own:
``engine.generation.compare.compare``, ``engine.generation.lab.stage_view`` and
``engine.runs.snapshots.timeline`` and ``engine.runs.card.write_card``, the functions ``seqplay compare`` /
``seqplay timeline`` / ``seqplay card`` call.
Progress goes out as ``LabProgress`` (timeline samples as ``TimelineSample``); the job ends with exactly
one ``LabDone``. Cancel is checked between units (a side, a snapshot).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from engine.worker import protocol as P


class LabCancelled(Exception):
    pass


class LabJobs:
    """Starts, cancels and reports lab jobs; ``handle(cmd)``."""

    def __init__(self, emit: Callable[[P.Event], None]):
        self.emit = emit
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._job = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def handle(self, cmd: P.Command) -> None:
        if isinstance(cmd, P.CancelLab):
            if self.running and cmd.job == self._job:
                self._cancel.set()
            return
        if not isinstance(cmd, P.Compare | P.StageView | P.Timeline | P.WriteCard):
            return
        if self.running:
            self.emit(P.LabDone(job=cmd.job, lab=cmd.kind, reason="error",
                                message=f"another lab job ({self._job}) is running; cancel it first"))
            return
        self._job, self._cancel = cmd.job, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cmd, self._cancel), name=f"lab-{cmd.job}", daemon=True)
        self._thread.start()

    def cancel_all(self, wait: float = 5.0) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(wait)

    def _run(self, cmd: Any, cancel: threading.Event) -> None:
        from engine.errors import SeqplayError

        t0 = time.perf_counter()

        def check(done: int, total: int, message: str) -> None:
            if cancel.is_set():
                raise LabCancelled
            self.emit(P.LabProgress(job=cmd.job, done=done, total=total, message=message))

        try:
            import torch

            with torch.inference_mode():
                if isinstance(cmd, P.Compare):
                    data = run_compare(cmd, check)
                elif isinstance(cmd, P.StageView):
                    data = run_stage_view(cmd, check)
                elif isinstance(cmd, P.WriteCard):
                    data = run_write_card(cmd, check)
                else:
                    data = run_timeline(cmd, check, self.emit)
            done = P.LabDone(job=cmd.job, lab=cmd.kind, reason="done", data=data)
        except LabCancelled:
            done = P.LabDone(job=cmd.job, lab=cmd.kind, reason="cancelled", message="cancelled")
        except SeqplayError as err:
            done = P.LabDone(job=cmd.job, lab=cmd.kind, reason="error", message=str(err))
        except Exception as err:  # noqa: BLE001 - a bug in one job must not take the worker down
            self.emit(P.LogLine(job=cmd.job, level="debug", text=traceback.format_exc()))
            done = P.LabDone(job=cmd.job, lab=cmd.kind, reason="error",
                             message=f"{cmd.kind} failed ({type(err).__name__}: {str(err)[:160]}); please report it")
        self.emit(dataclasses.replace(done, seconds=time.perf_counter() - t0))


def _settings(data: dict[str, Any], **override: Any) -> Any:
    from engine.generation.settings import SamplingSettings

    return SamplingSettings.from_dict({**(data or {}), **override}).validate()


def _lm(run: str) -> Any:
    from engine.errors import ConfigError
    from engine.runs.checkpoint import load_model

    if not run:
        raise ConfigError("no run picked; pick a run (or RUN@STEP) to generate from")
    loaded = load_model(run)
    if loaded.model.task != "lm":
        raise ConfigError(f"{run} is a {loaded.model.task} model; the lab continues text with language models")
    return loaded


def run_compare(cmd: P.Compare, check: Callable[[int, int, str], None]) -> dict[str, Any]:
    """``Compare`` -> ``CompareResult.to_dict()`` with each side's text split at the divergence."""
    from engine.generation.compare import compare

    check(0, 3, "loading side A")
    a = _lm(cmd.run_a)
    b = a
    if cmd.run_b and cmd.run_b != cmd.run_a:
        check(1, 3, "loading side B")
        b = _lm(cmd.run_b)
    sa = _settings(cmd.settings_a, max_tokens=cmd.max_tokens)
    sb = _settings(cmd.settings_b, max_tokens=cmd.max_tokens)
    check(2, 3, "generating both sides")
    result = compare((a.model, a.tokenizer), (b.model, b.tokenizer), cmd.prompt, sa, sb, seed=cmd.seed,
                     labels=(cmd.run_a, cmd.run_b or cmd.run_a))
    data = result.to_dict()
    d = result.divergence
    for key, side in (("a", result.a), ("b", result.b)):
        head = side.text if d is None else a.tokenizer.decode(side.tokens[:d])
        if not side.text.startswith(head):  # a token that decodes to nothing on its own
            head = ""
        data[key]["head"], data[key]["rest"] = head, side.text[len(head):]
    return data


def run_stage_view(cmd: P.StageView, check: Callable[[int, int, str], None]) -> dict[str, Any]:
    from engine.generation.lab import stage_view

    check(0, 2, "loading the run")
    loaded = _lm(cmd.run)
    check(1, 2, f"generating to position {cmd.position}")
    view = stage_view(loaded.model, loaded.tokenizer, cmd.prompt, _settings(cmd.settings), step=max(0, cmd.position),
                      top=cmd.top)
    view["prompt"] = cmd.prompt
    return view


def run_timeline(cmd: P.Timeline, check: Callable[[int, int, str], None], emit: Callable[[P.Event], None]) -> dict[str, Any]:
    from engine.runs.folders import find_run
    from engine.runs.snapshots import list_snapshots, timeline

    total = len(list_snapshots(find_run(cmd.run)))
    settings = _settings(cmd.settings, seed=cmd.seed, max_tokens=cmd.max_tokens)
    samples = []
    check(0, total, "sampling snapshots")
    for i, row in enumerate(timeline(cmd.run, cmd.prompt, settings)):
        samples.append(row)
        emit(P.TimelineSample(job=cmd.job, step=row["step"], tags=tuple(row["tags"]), val_loss=row["val_loss"],
                              text=row["text"]))
        check(i + 1, total, f"step {row['step']}")
    return {"run": cmd.run, "prompt": cmd.prompt, "seed": cmd.seed, "samples": samples}


def run_write_card(cmd: P.WriteCard, check: Callable[[int, int, str], None]) -> dict[str, Any]:
    """``WriteCard`` -> the card folder ``seqplay card`` writes, and its card.json."""
    from pathlib import Path

    from engine.errors import ConfigError
    from engine.runs.card import write_card

    if not cmd.run:
        raise ConfigError("no run picked; pick a run to write its card")
    check(0, 1, f"writing the card of {Path(cmd.run).name}")
    folder = write_card(cmd.run, cmd.out)
    return {"run": cmd.run, "folder": str(folder), "card": str(folder / "card.json")}
