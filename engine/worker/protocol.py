"""The worker protocol: the only language the TUI and the headless CLI speak to the engine.

A training/generation worker runs in its own process (``engine.worker.client.WorkerClient`` starts it with
the ``spawn`` method). The caller sends **commands** into the worker's command queue and reads
**events** from its event queue. Both are small frozen dataclasses defined here, picklable and
convertible to JSON (``to_json``/``from_json``) so ``seqplay train --json`` can print the same stream.

Rules of the protocol
---------------------
* Every event carries ``job``: the id of the training run or generation it belongs to. A caller drops
  events whose ``job`` it no longer follows (a stale generation after a new one started).
* Step metrics are batched: the worker sends ``StepMetrics`` holding every step since the last flush
  (about ten flushes a second). No point is ever dropped; the caller decides how to downsample.
* Errors the user can act on arrive as ``ErrorEvent(message=one line, fatal=...)``. A worker process
  that dies (SIGKILL, out of memory) is reported by the client as ``ErrorEvent(fatal=True)``.
* A training job ends with exactly one ``Finished`` event (reason: "done", "stopped", "time",
  "error"); a generation ends with exactly one ``GenerationDone``.

This module imports nothing heavy: the TUI imports it at start-up.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.insight.params import AnalysisParams, GradientsParams, params_from_dict

# --------------------------------------------------------------------------------------------------
# Commands (caller -> worker)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    kind: ClassVar[str] = "command"

    def to_json(self) -> str:
        return json.dumps({"command": self.kind, **dataclasses.asdict(self)})


@dataclass(frozen=True)
class StartTraining(Command):
    """Start (or, with ``resume_from``, continue) a training job.

    ``config`` is ``engine.training.config.TrainConfig.to_dict()``; ``resume_from`` is a run folder or checkpoint.
    """

    kind: ClassVar[str] = "start"
    config: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None


@dataclass(frozen=True)
class Pause(Command):
    kind: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Resume(Command):
    kind: ClassVar[str] = "resume"


@dataclass(frozen=True)
class SingleStep(Command):
    """While paused: run exactly one optimisation step, then stay paused."""

    kind: ClassVar[str] = "step"


@dataclass(frozen=True)
class Stop(Command):
    """End the job after the current step; a final checkpoint is written."""

    kind: ClassVar[str] = "stop"
    save: bool = True


@dataclass(frozen=True)
class SaveNow(Command):
    kind: ClassVar[str] = "save"


@dataclass(frozen=True)
class SetLearningRate(Command):
    """Takes effect on the next step; the schedule continues from the new base rate."""

    kind: ClassVar[str] = "set_lr"
    lr: float = 1e-3


@dataclass(frozen=True)
class SampleNow(Command):
    kind: ClassVar[str] = "sample"
    prompt: str = ""
    max_tokens: int = 200


@dataclass(frozen=True)
class Generate(Command):
    """Stream tokens from a run or checkpoint (``source``), or from the job being trained (None).

    ``settings`` is ``engine.generation.processors.SamplingSettings`` as a dict (temperature, top_k, top_p, ...).
    ``forced`` optionally forces the next token ids (step mode: the user picked an alternative).
    ``beams`` > 1: beam search (``engine.generation.beams``, language models) with ``length_penalty``
    instead of sampling: no tokens stream; the hypotheses arrive in ``GenerationDone.beams``.
    """

    kind: ClassVar[str] = "generate"
    gen_id: str = ""
    prompt: str = ""
    source: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    max_tokens: int = 200
    step_mode: bool = False
    beams: int = 1
    length_penalty: float = 1.0


@dataclass(frozen=True)
class GenerateStep(Command):
    """Step mode: emit one more token; ``choose`` forces that token id instead of sampling."""

    kind: ClassVar[str] = "gen_step"
    gen_id: str = ""
    choose: int | None = None


@dataclass(frozen=True)
class CancelGeneration(Command):
    kind: ClassVar[str] = "cancel_generation"
    gen_id: str = ""


@dataclass(frozen=True)
class Analyze(Command):
    """Run one Insight analysis as a job (``job`` names it; its events carry it).

    ``params`` are the analysis's typed settings (``engine.insight.params``; ``params.analysis`` names
    it). The model looked at: ``run`` (a run folder or checkpoint, loaded once and kept), or with
    ``live`` the model being trained (a copy taken between two steps). Progress arrives as
    ``AnalysisProgress``; the job ends with exactly one ``AnalysisDone``.
    """

    kind: ClassVar[str] = "analyze"
    job: str = ""
    params: AnalysisParams = field(default_factory=GradientsParams)
    run: str | None = None
    live: bool = False

    def to_json(self) -> str:
        return json.dumps({"command": self.kind, "job": self.job, "analysis": self.params.analysis,
                           "params": self.params.to_dict(), "run": self.run, "live": self.live})


@dataclass(frozen=True)
class CancelAnalysis(Command):
    """End the analysis ``job`` at its next check (a table run being trained keeps its checkpoint)."""

    kind: ClassVar[str] = "cancel_analysis"
    job: str = ""


@dataclass(frozen=True)
class Shutdown(Command):
    """Stop any job (saving a checkpoint) and end the worker process."""

    kind: ClassVar[str] = "shutdown"


# --------------------------------------------------------------------------------------------------
# Events (worker -> caller)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    job: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=True)


@dataclass(frozen=True)
class Started(Event):
    """A training job is running: where its run folder is and what it trains."""

    kind: ClassVar[str] = "started"
    run_dir: str = ""
    arch: str = ""
    params: int = 0
    device: str = ""
    dtype: str = ""
    train_tokens: int = 0
    val_tokens: int = 0
    vocab_size: int = 0
    total_steps: int | None = None
    time_budget: float | None = None
    start_step: int = 0
    val_unk_share: float = 0.0  # fraction of validation tokens that are <unk> (word-level bits/char: a lower bound)


@dataclass(frozen=True)
class StepPoint:
    """One optimisation step. ``grad_norm`` is the global norm before clipping."""

    step: int
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    elapsed: float
    tokens_seen: int


@dataclass(frozen=True)
class StepMetrics(Event):
    """All steps since the previous flush, oldest first."""

    kind: ClassVar[str] = "steps"
    points: tuple[StepPoint, ...] = ()


@dataclass(frozen=True)
class EvalMetrics(Event):
    """Validation after ``step``: mean loss (nats/token), perplexity and bits per character (NaN for a
    masked LM, where it is not meaningful). ``accuracy``: seq2seq exact match of greedy decoding on
    validation pairs (fraction in [0, 1]); None for other tasks. What was scored: ``val_tokens``
    positions of the ``val_split_tokens`` the split has (``val_sampled``: a sample, ``--eval-batches``);
    ``accuracy_pairs``: how many pairs the exact match decoded."""

    kind: ClassVar[str] = "eval"
    step: int = 0
    val_loss: float = float("nan")
    val_ppl: float = float("nan")
    val_bpc: float = float("nan")
    train_loss: float | None = None
    best: bool = False
    accuracy: float | None = None
    val_tokens: int = 0
    val_split_tokens: int = 0
    val_sampled: bool = False
    accuracy_pairs: int | None = None


@dataclass(frozen=True)
class SampleText(Event):
    """A sample from the model being trained. ``copied`` is the longest span found verbatim in the
    training text (empty if none of at least ``copied_min`` characters)."""

    kind: ClassVar[str] = "sample"
    step: int = 0
    prompt: str = ""
    text: str = ""
    copied: str = ""


@dataclass(frozen=True)
class CheckpointWritten(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int = 0
    path: str = ""
    best: bool = False


@dataclass(frozen=True)
class StateChanged(Event):
    """The job's state changed: "running", "paused" (``reason`` says why, e.g. NaN loss), "stopping"."""

    kind: ClassVar[str] = "state"
    state: str = ""
    reason: str = ""


@dataclass(frozen=True)
class LogLine(Event):
    kind: ClassVar[str] = "log"
    level: str = "info"
    text: str = ""


@dataclass(frozen=True)
class ErrorEvent(Event):
    """Something went wrong; ``message`` is one line saying what and what to do."""

    kind: ClassVar[str] = "error"
    message: str = ""
    fatal: bool = False


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    step: int = 0
    reason: str = "done"
    best_val_loss: float | None = None
    run_dir: str = ""
    test_loss: float | None = None  # mean loss on the source's test split (split folders), at the end


@dataclass(frozen=True)
class TokenAlternative:
    """One alternative for a token: its probability after the logit processors (``prob``; 0 when the
    sampling chain removed it) and under the raw model (``raw_prob``)."""

    token: int
    text: str
    prob: float
    raw_prob: float = 0.0

    @property
    def removed(self) -> bool:
        return self.prob == 0.0


@dataclass(frozen=True)
class GeneratedToken(Event):
    """One generated token: its probability after the logit processors (``prob``) and under the raw
    model (``raw_prob``), the alternatives (the processed top merged with the raw top: kept tokens in
    processed order, then removed ones, ``prob`` 0, in raw order), and the entropy (nats) of the
    processed distribution. ``job`` is the generation id. ``rank``: 1-based rank of the token in the
    processed distribution (0: not reported; the app then places it from ``top``)."""

    kind: ClassVar[str] = "token"
    index: int = 0
    token: int = 0
    text: str = ""
    prob: float = 0.0
    raw_prob: float = 0.0
    entropy: float = 0.0
    top: tuple[TokenAlternative, ...] = ()
    rank: int = 0


@dataclass(frozen=True)
class BeamText:
    """One finished beam-search hypothesis: the text it adds to the prompt, its summed log-probability,
    its score (``logprob / len ** length_penalty``), its token count and why it ended."""

    text: str = ""
    logprob: float = 0.0
    score: float = 0.0
    tokens: int = 0
    reason: str = "max_tokens"


@dataclass(frozen=True)
class GenerationDone(Event):
    """``reason``: "max_tokens", "stop_string", "eot", "cancelled", "error". A beam search
    (``Generate.beams`` > 1) ends with its hypotheses in ``beams``, best first (``text``: the best's)."""

    kind: ClassVar[str] = "generation_done"
    reason: str = "max_tokens"
    text: str = ""
    tokens_per_s: float = 0.0
    beams: tuple[BeamText, ...] = ()


@dataclass(frozen=True)
class AnalysisProgress(Event):
    """An analysis job advanced: ``done`` of ``total`` units (models, samples, runs), and what it does."""

    kind: ClassVar[str] = "analysis_progress"
    done: int = 0
    total: int = 1
    message: str = ""


@dataclass(frozen=True)
class AnalysisDone(Event):
    """The end of an analysis job. ``reason``: "done" (``data`` is the analysis dict that
    ``engine.insight.render`` draws), "cancelled" or "error" (``message`` says what and what to do)."""

    kind: ClassVar[str] = "analysis_done"
    analysis: str = ""
    reason: str = "done"
    data: dict[str, Any] | None = None
    message: str = ""
    seconds: float = 0.0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        Started,
        StepMetrics,
        EvalMetrics,
        SampleText,
        CheckpointWritten,
        StateChanged,
        LogLine,
        ErrorEvent,
        Finished,
        GeneratedToken,
        GenerationDone,
        AnalysisProgress,
        AnalysisDone,
    )
}

COMMAND_TYPES: dict[str, type[Command]] = {
    cls.kind: cls
    for cls in (
        StartTraining,
        Pause,
        Resume,
        SingleStep,
        Stop,
        SaveNow,
        SetLearningRate,
        SampleNow,
        Generate,
        GenerateStep,
        CancelGeneration,
        Analyze,
        CancelAnalysis,
        Shutdown,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from ``Event.to_dict()`` output (e.g. a line of metrics.jsonl)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("event")]
    if cls is StepMetrics:
        data["points"] = tuple(StepPoint(**p) for p in data.get("points", ()))
    if cls is GeneratedToken:
        data["top"] = tuple(TokenAlternative(**t) for t in data.get("top", ()))
    if cls is GenerationDone:
        data["beams"] = tuple(BeamText(**b) for b in data.get("beams", ()))
    return cls(**data)


def event_from_json(line: str) -> Event:
    return event_from_dict(json.loads(line))


def command_from_json(line: str) -> Command:
    data = json.loads(line)
    cls = COMMAND_TYPES[data.pop("command")]
    if cls is Analyze:
        data["params"] = params_from_dict(data.pop("analysis"), data.get("params"))
    return cls(**data)


# --------------------------------------------------------------------------------------------------
# Lab jobs (issue 16): same-randomness A/B, the stage view, the timeline, the card. Handled by
# ``engine.worker.lab_jobs``; each runs as one job named by ``job``, reports ``LabProgress`` and ends
# with exactly one ``LabDone``; ``CancelLab`` ends it at its next check.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare(Command):
    """Same-randomness A/B (``engine.generation.compare``): side A is ``run_a`` (a run, checkpoint or
    RUN@STEP) with ``settings_a`` (``SamplingSettings.to_dict()``), side B likewise (``run_b`` None: A's
    run). ``LabDone.data``: ``CompareResult.to_dict()`` plus each side's ``head``/``rest`` (text before
    and from the first divergence)."""

    kind: ClassVar[str] = "compare"
    job: str = ""
    run_a: str = ""
    settings_a: dict[str, Any] = field(default_factory=dict)
    run_b: str | None = None
    settings_b: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    seed: int = 0
    max_tokens: int = 100


@dataclass(frozen=True)
class StageView(Command):
    """The distribution before/after each sampling stage at generated ``position``
    (``engine.generation.lab.stage_view``). ``LabDone.data``: its dict."""

    kind: ClassVar[str] = "stage_view"
    job: str = ""
    run: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    position: int = 0
    top: int = 10


@dataclass(frozen=True)
class Timeline(Command):
    """One sample per snapshot of ``run``, same ``settings`` and ``seed`` (``engine.runs.snapshots``).
    Each sample arrives as a ``TimelineSample``; ``LabDone.data``: ``{"samples": [...]}``."""

    kind: ClassVar[str] = "timeline"
    job: str = ""
    run: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    seed: int = 0
    max_tokens: int = 80


@dataclass(frozen=True)
class WriteCard(Command):
    """Write the experiment card of ``run`` (``engine.runs.card.write_card``; it samples the model, so it
    runs in the worker) into the folder ``out`` (None: ``RUN/card``). ``LabDone.data``: ``{"run", "folder",
    "card"}`` (the folder and its card.json); a failure is ``LabDone(reason="error", message=one line)``."""

    kind: ClassVar[str] = "write_card"
    job: str = ""
    run: str = ""
    out: str | None = None


@dataclass(frozen=True)
class CancelLab(Command):
    kind: ClassVar[str] = "cancel_lab"
    job: str = ""


@dataclass(frozen=True)
class LabProgress(Event):
    """A lab job advanced: ``done`` of ``total`` units (sides, snapshots) and what it does now."""

    kind: ClassVar[str] = "lab_progress"
    done: int = 0
    total: int = 1
    message: str = ""


@dataclass(frozen=True)
class TimelineSample(Event):
    """One snapshot's sample of a ``Timeline`` job."""

    kind: ClassVar[str] = "timeline_sample"
    step: int = 0
    tags: tuple[str, ...] = ()
    val_loss: float | None = None
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))  # JSON gives a list back


@dataclass(frozen=True)
class LabDone(Event):
    """The end of a lab job. ``lab``: "compare", "stage_view", "timeline" or "write_card"; ``reason``: "done" (with
    ``data``), "cancelled" or "error" (``message``: what is wrong and what to do)."""

    kind: ClassVar[str] = "lab_done"
    lab: str = ""
    reason: str = "done"
    data: dict[str, Any] | None = None
    message: str = ""
    seconds: float = 0.0


LAB_COMMANDS: tuple[type[Command], ...] = (Compare, StageView, Timeline, WriteCard, CancelLab)
LAB_EVENTS: tuple[type[Event], ...] = (LabProgress, TimelineSample, LabDone)
COMMAND_TYPES.update({cls.kind: cls for cls in LAB_COMMANDS})
EVENT_TYPES.update({cls.kind: cls for cls in LAB_EVENTS})
