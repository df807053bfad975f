"""``seqplay train``, ``seqplay resume`` and ``seqplay runs``: headless training and the run list.

Training runs in this process by default (fastest; Ctrl-C finishes the current step, saves a
checkpoint, prints the run folder and exits with code 130). ``--worker`` runs the very same Trainer in
the worker process the TUI uses, over the same protocol. ``--json`` prints the event stream as JSON
lines instead of the progress bar. Exit codes: 0 done, 2 error (a one-line ``error: ...``), 130 stopped.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from engine.models.registry import ARCHS
from engine.settings import settings_of
from engine.training.config import TrainConfig
from engine.worker import protocol as P
from seqplay.commands.options import option


class _Interrupt:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, a service manager) -> a Stop request: the step finishes,
    a checkpoint is written, the exit code is 130. A second one aborts."""

    SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        click.echo(f"\nstopping after this step and saving a checkpoint ({again} again to abort)", err=True)

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class _Display:
    """Turns events into a Rich progress bar (or JSON lines) and remembers how the job ended."""

    def __init__(self, as_json: bool, total_steps: int | None, time_budget: float | None):
        self.as_json = as_json
        self.finished: P.Finished | None = None
        self.error: str | None = None
        self.fatal = False
        self.run_dir = ""
        self.val_ppl = float("nan")
        self.unk = 0.0
        self.total_steps, self.time_budget = total_steps, time_budget
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _Display:
        if not self.as_json:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("step {task.fields[step]}"), TextColumn("loss {task.fields[loss]}"),
                TextColumn("val ppl {task.fields[ppl]}"), TextColumn("{task.fields[tps]} tok/s"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
            )
            self.progress.start()
            total = self.total_steps or self.time_budget
            self.task = self.progress.add_task("training", total=total, step=0, loss="-", ppl="-", tps="-")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def print(self, text: str, err: bool = False) -> None:
        if self.progress is not None and not err:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            click.echo(text, err=err)

    def __call__(self, event: P.Event) -> None:
        if isinstance(event, P.Finished):
            self.finished = event
            self.run_dir = event.run_dir or self.run_dir
        if isinstance(event, P.ErrorEvent):
            self.error, self.fatal = event.message, self.fatal or event.fatal
        if self.as_json:
            click.echo(event.to_json())
            return
        if isinstance(event, P.Started):
            self.unk = event.val_unk_share
            self.run_dir = event.run_dir
            self.total_steps = event.total_steps or self.total_steps
            self.progress.update(self.task, description=event.arch, completed=event.start_step if self.total_steps else 0)
            self.print(f"run {event.run_dir}: {event.arch}, {event.params:,} parameters, {event.device} {event.dtype}, "
                       f"{event.train_tokens:,} training tokens")
        elif isinstance(event, P.StepMetrics) and event.points:
            p = event.points[-1]
            done = p.step if self.total_steps else p.elapsed
            self.progress.update(self.task, completed=done, step=p.step, loss=f"{p.loss:.3f}",
                                 tps=f"{p.tokens_per_s:,.0f}", ppl=_fmt(self.val_ppl))
        elif isinstance(event, P.EvalMetrics):
            self.val_ppl = event.val_ppl
            self.progress.update(self.task, ppl=_fmt(event.val_ppl))
            scored = (f"sample of {event.val_tokens:,} of {event.val_split_tokens:,} tokens" if event.val_sampled
                      else f"whole split, {event.val_split_tokens:,} tokens")
            self.print(f"step {event.step}: val loss {event.val_loss:.4f}, ppl {_fmt(event.val_ppl)}"
                       + (f", {event.val_bpc:.3f} bits/char" if math.isfinite(event.val_bpc) else "")
                       + (f" (<unk> {self.unk:.1%} of validation tokens: a lower bound)" if self.unk and math.isfinite(event.val_bpc) else "")
                       + (f", exact match {event.accuracy:.1%} of {event.accuracy_pairs:,} pairs"
                          if event.accuracy is not None and event.accuracy_pairs else "")
                       + f" ({scored})" + (" (best)" if event.best else ""))
        elif isinstance(event, P.SampleText):
            shown = f"{event.prompt[:80]!r} -> " if event.prompt else ""
            self.print(f"sample @ {event.step}: {shown}{event.text[:160]!r}" + (f"  [copied: {event.copied[:40]!r}]" if event.copied else ""))
        elif isinstance(event, P.LogLine) and event.level != "debug":
            self.print(("warning: " if event.level == "warning" else "") + event.text)
        elif isinstance(event, P.ErrorEvent):
            self.print(f"error: {event.message}", err=True)

    def exit_code(self, interrupted: bool) -> int:
        reason = self.finished.reason if self.finished else "error"
        if reason == "error" or self.fatal:
            if not self.as_json and self.finished is None and self.error is None:
                click.echo("error: training ended without finishing; see the messages above", err=True)
            return 2
        if self.run_dir and not self.as_json:
            name = self.run_dir.rstrip("/").rsplit("/", 1)[-1]
            verb = "stopped" if reason == "stopped" else "finished"
            click.echo(f"{verb} at step {self.finished.step}; run folder {self.run_dir}"
                       + (f"; continue with `seqplay resume {name}`" if reason == "stopped" else ""))
        return 130 if interrupted else 0


def _fmt(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _run_job(config: dict[str, Any] | TrainConfig, resume_from: str | None, overrides: dict[str, Any] | None,
             as_json: bool, use_worker: bool, total: int | None, time_budget: float | None) -> int:
    with _Interrupt() as interrupt, _Display(as_json, total, time_budget) as display:
        saved = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
        nproc = int((overrides or {}).get("nproc") or saved.get("nproc") or 1)
        if resume_from and not (overrides or {}).get("nproc"):
            from engine.runs.checkpoint import read_meta, resolve_checkpoint

            nproc = int((read_meta(resolve_checkpoint(resume_from, prefer_best=False)).get("train_config") or {}).get("nproc") or 1)
        if nproc > 1:  # data-parallel: engine.training.distributed spawns the ranks; rank 0's events come here
            from engine.training.distributed import run_distributed

            run_distributed(config, display, nproc, resume_from, overrides, lambda: interrupt.requested)
        elif use_worker:
            _via_worker(config, resume_from, overrides, display, interrupt)
        else:
            from engine.training.trainer import Trainer

            def control(timeout: float) -> list[P.Command]:
                return [P.Stop(save=True)] if interrupt.requested else []

            Trainer(config if not resume_from else {}, display, control=control, resume_from=resume_from,
                    pause_on_error=False, overrides=overrides).run()
        return display.exit_code(interrupt.requested)


def _via_worker(config: Any, resume_from: str | None, overrides: dict[str, Any] | None,
                display: Callable[[P.Event], None], interrupt: _Interrupt) -> None:
    from engine.worker.client import WorkerClient

    cfg = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    client = WorkerClient().start()
    try:
        client.send(P.StartTraining(config=(overrides or {}) if resume_from else cfg, resume_from=resume_from))
        stop_sent = False
        while True:
            if interrupt.requested and not stop_sent:
                client.send(P.Stop(save=True))
                stop_sent = True
            events = client.poll(timeout=0.1)
            for event in events:
                display(event)
            if display.finished is not None or display.fatal:
                return
    finally:
        client.close()


_T = {s.name: s for s in settings_of(TrainConfig)}


def _t(name: str, *names: str, **kw: Any):
    """The option of TrainConfig field ``name`` (flag, type, default, bounds and help from its metadata)."""
    return option(_T[name], *names, **kw)


def _opt(*names: str, **kw: Any):
    return click.option(*names, **kw)


# Shared model flags: set the field on every arch whose config has it (ignored by the others).
SHARED_FLAGS: dict[str, str] = {"layers": "layers", "width": "width", "embed": "embed", "heads": "heads",
                                "dropout": "dropout"}
# Architecture-specific flags: option name -> the config field it sets. A flag applies to the archs whose
# settings (``settable_fields``) include its field; given with another arch it is refused.
ARCH_FLAGS: dict[str, str] = {
    "order": "order", "nonlinearity": "nonlinearity", "identity_init": "identity_init", "residual": "residual",
    "tie_weights": "tie_weights", "attention": "attention", "cell": "cell", "bidirectional": "bidirectional",
    "positions": "positions", "encoder": "encoder",
}


def settable_fields(arch: str) -> dict[str, type]:
    """The model settings of ``arch`` a user may set (name -> type), from ``registry.model_settings``."""
    from engine.models.registry import model_settings

    return {s.name: s.kind for s in model_settings(arch)}


def flag_archs(flag: str) -> list[str]:
    """The architectures a named model flag applies to."""
    field = {**SHARED_FLAGS, **ARCH_FLAGS}[flag]
    return [a for a in ARCHS if field in settable_fields(a)]


def _model_option(flag: str):
    """A model flag: its setting (type, choices, help) from the first arch that has the field, its
    help prefixed with the archs it applies to; default None (not given)."""
    from engine.models.registry import model_settings

    archs = flag_archs(flag)
    s = next(x for x in model_settings(archs[0]) if x.name == {**SHARED_FLAGS, **ARCH_FLAGS}[flag])
    where = "" if len(archs) >= len(ARCHS) - 1 else f"[{', '.join(archs)}] "
    # the text is kept: the chosen arch's own setting parses and checks it (its words, its default)
    return option(s, default=None, dest=flag, help=where + _SHARED_HELP.get(flag, s.help), raw=True)


# A shared flag means a different thing per family: its help says so (each arch's own help: `seqplay archs NAME`).
_SHARED_HELP = {"layers": "Number of layers.", "width": "Hidden size (RNNs, MLP) or model width (Transformer).",
                "embed": "Embedding size (RNNs, MLP, seq2seq)."}


def parse_setting(arch: str, key: str, value: str) -> Any:
    """``--set KEY=VALUE``: ``value`` parsed and checked by ``arch``'s setting ``key``."""
    from engine.errors import ConfigError
    from engine.models.registry import model_settings

    found = {s.name: s for s in model_settings(arch)}
    if key not in found:
        hint = f" ({key} is fixed by --arch)" if key in ARCHS[arch].defaults else ""
        raise ConfigError(f"{arch} has no setting {key!r}{hint}; its settings are {', '.join(found)} (see `seqplay archs {arch}`)")
    return found[key].parse(value)


def arch_settings(arch: str, flags: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    """The model overrides from the named arch-specific flags (None = not given) and ``--set`` pairs;
    a flag the chosen arch does not have is refused with a one-line error."""
    from engine.errors import ConfigError
    from engine.models.registry import model_settings

    out: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        archs = flag_archs(flag)
        if arch not in archs:
            name = next(s.cli_flag for s in model_settings(archs[0]) if s.name == ARCH_FLAGS[flag])
            raise ConfigError(f"{name} applies to {', '.join(archs)} only, not {arch}; see `seqplay archs {arch}` for its settings")
        out[ARCH_FLAGS[flag]] = parse_setting(arch, ARCH_FLAGS[flag], value)
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}; e.g. --set mask_prob=0.2")
        key = key.strip().replace("-", "_")
        out[key] = parse_setting(arch, key, value)
    return out


def _with(*decorators: Any):
    def wrap(fn: Any) -> Any:
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return wrap


_ARCH = dataclasses.replace(_T["arch"], choices=tuple(ARCHS))
# TrainConfig fields without an option of their own: the positional SOURCE and the model dict.
_TRAIN_FIELDS = [name for name in _T if name not in ("source", "model", "arch", "steps", "clip")]


@click.command("train")
@click.argument("source", metavar="PATH_OR_CORPUS", default="grammar")
@option(_ARCH)
@_with(*[_model_option(f) for f in SHARED_FLAGS], *[_model_option(f) for f in ARCH_FLAGS])
@_opt("--set", "sets", multiple=True, metavar="KEY=VALUE",
      help="Any model setting of the arch (repeatable), e.g. --set mask_prob=0.2; see `seqplay archs NAME`.")
@_t("steps", default=None)
@_t("clip", check=False, help="Clip the global gradient norm to this (0: off).")
@_with(*[_t(name) for name in _TRAIN_FIELDS])
@_opt("--json", "as_json", is_flag=True, help="Print the event stream as JSON lines.")
@_opt("--worker", "use_worker", is_flag=True, help="Train in the worker process (as the TUI does).")
def train(source: str, arch: str, sets: tuple[str, ...], steps: int | None, clip: float, as_json: bool,
          use_worker: bool, **opts: Any) -> None:
    """Train a model on a text file or built-in corpus.

    Example: seqplay train ../shared/corpora/tinyshakespeare.txt --arch lstm --steps 500
    """
    from engine.models.registry import make_config

    shared = {flag: opts.pop(flag) for flag in SHARED_FLAGS}
    flags = {flag: opts.pop(flag) for flag in ARCH_FLAGS}
    own = settable_fields(arch)  # a shared flag the arch does not have is ignored
    model = {SHARED_FLAGS[k]: parse_setting(arch, SHARED_FLAGS[k], v) for k, v in shared.items()
             if v is not None and SHARED_FLAGS[k] in own}
    model.update(arch_settings(arch, flags, sets))
    if steps is None:
        steps = None if opts["time_budget"] else 2000
    config = TrainConfig(source=source, arch=arch, model=model, steps=steps, clip=None if clip == 0 else clip,
                         **opts).validate()
    # Refuse impossible model sizes before touching the data or torch (the vocabulary is not known yet).
    overrides = dict(model, **({"context": config.context} if config.context else {}))
    make_config(arch, 256, **overrides).validate()
    # Refuse unusable data before importing torch too (torch-free; the ids are cached for the trainer).
    from engine.data.sources import prepare
    from engine.training.presets import fast_defaults, given_settings, preflight

    prep = prepare(config.source, config.tokenizer, config.vocab_size, config.val_fraction)
    ctx = click.get_current_context()
    given = given_settings({n: ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT for n in ctx.params},
                           {item.partition("=")[0].strip().replace("-", "_") for item in sets})
    config, picked = fast_defaults(config, given, len(prep.train_ids), len(prep.val_ids))
    if not as_json:
        for label, value in preflight(config, picked, len(prep.train_ids), len(prep.val_ids), prep.tokenizer.vocab_size):
            click.echo(f"{label:>13}: {value}")
    code = _run_job(config, None, None, as_json, use_worker, config.steps, config.time_budget)
    if code:
        sys.exit(code)


@click.command("resume")
@click.argument("run")
@_t("steps", default=None, help="New total step budget (default: the run's). Past the schedule's horizon, "
    "fixed when the run started, the learning rate holds at the schedule's final value (docs/training.md).")
@_t("time_budget", default=None, help="New time budget: seconds of wall time of the whole run, earlier "
    "sessions included (default: the run's).")
@_t("device", default=None, help="Device to continue on (default: the run's).")
@_t("runs_dir")
@_opt("--json", "as_json", is_flag=True, help="Print the event stream as JSON lines.")
@_opt("--worker", "use_worker", is_flag=True, help="Train in the worker process (as the TUI does).")
@_t("nproc", default=None, help="Data-parallel processes (default: the run's).")
@_opt("--source", default=None, metavar="PATH_OR_CORPUS",
      help="The run's data, named by you: needed when seqplay has not read the run's file on this machine.")
def resume(run: str, steps: int | None, time_budget: float | None, device: str | None, runs_dir: str | None,
           as_json: bool, use_worker: bool, nproc: int | None, source: str | None) -> None:
    """Continue RUN (a run name, folder or checkpoint file) exactly where it stopped."""
    from pathlib import Path

    from engine.runs.checkpoint import read_meta, resolve_checkpoint
    from engine.runs.folders import RunLock, find_run

    given = Path(run)
    with RunLock(given.parent.parent if given.is_file() else find_run(run, runs_dir)):
        pass  # a run still training elsewhere: one line naming the process that holds it
    target = run
    try:
        resolve_checkpoint(run, prefer_best=False)
    except Exception:  # noqa: BLE001 - try the --runs-dir name lookup before giving up
        target = str(find_run(run, runs_dir))
    ckpt = resolve_checkpoint(target, prefer_best=False)
    from engine.runs.checks import resume_config  # the trainer's own check, before anything is spawned

    saved = resume_config(read_meta(ckpt), {"source": source} if source else {}, ckpt).to_dict()
    overrides = {k: v for k, v in dict(steps=steps, time_budget=time_budget, device=device, nproc=nproc).items() if v is not None}
    total = steps or saved.get("steps")
    code = _run_job({}, str(ckpt), dict(overrides, **({"source": source} if source else {})), as_json, use_worker, total,
                    time_budget or saved.get("time_budget"))
    if code:
        sys.exit(code)


@click.command("runs")
@_opt("--runs-dir", default=None, help="Runs directory (default: $SEQPLAY_HOME/runs or the user data dir).")
@_opt("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def runs(runs_dir: str | None, as_json: bool) -> None:
    """List past runs: architecture, corpus, steps, best validation loss, when."""
    import json

    from engine.runs.folders import list_runs, runs_root

    rows = list_runs(runs_dir)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.to_dict()))
        return
    if not rows:
        click.echo(f"no runs in {runs_root(runs_dir)}; start one with `seqplay train FILE --arch lstm`")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"runs in {runs_root(runs_dir)}")
    for col in ("run", "arch", "corpus", "steps", "best val loss", "bits/char", "when", "status"):
        table.add_column(col, justify="right" if col in ("steps", "best val loss", "bits/char") else "left")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated or r.created)) if (r.updated or r.created) else "-"
        status = f"corrupt: {r.problem}" if r.problem else r.status
        table.add_row(r.name, r.arch or "-", (r.source.rsplit("/", 1)[-1] or "-")[:30], str(r.steps),
                      f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-",
                      f"{r.best_val_bpc:.3f}" if r.best_val_bpc is not None else "-", when, status)
    Console().print(table)
