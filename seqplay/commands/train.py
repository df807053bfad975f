"""``seqplay train``, ``seqplay resume`` and ``seqplay runs``: headless training and the run list.

Training runs in this process by default (fastest; Ctrl-C finishes the current step, saves a
checkpoint, prints the run folder and exits with code 130). ``--worker`` runs the very same Trainer in
the worker process the TUI uses, over the same protocol. ``--json`` prints the event stream as JSON
lines instead of the progress bar. Exit codes: 0 done, 2 error (a one-line ``error: ...``), 130 stopped.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from engine.worker import protocol as P
from engine.training.config import OPTIMIZERS, PRECISIONS, SCHEDULES, TOKENIZERS, TrainConfig
from engine.models.registry import ARCHS


class _Interrupt:
    """SIGINT -> a Stop request (the step finishes, a checkpoint is written). A second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        click.echo("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", err=True)

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)


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
            self.print(f"step {event.step}: val loss {event.val_loss:.4f}, ppl {_fmt(event.val_ppl)}"
                       + (f", {event.val_bpc:.3f} bits/char" if math.isfinite(event.val_bpc) else "")
                       + (f" (<unk> {self.unk:.1%} of validation tokens: a lower bound)" if self.unk and math.isfinite(event.val_bpc) else "")
                       + (f", exact match {event.accuracy:.1%}" if event.accuracy is not None else "")
                       + (" (best)" if event.best else ""))
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


def _opt(*names: str, **kw: Any):
    return click.option(*names, **kw)


# Shared model flags (every arch whose config has the field): option name -> config field.
SHARED_FLAGS: dict[str, str] = {"layers": "layers", "width": "width", "embed": "embed", "heads": "heads",
                                "context": "context", "dropout": "dropout"}
# Architecture-specific flags: option name -> the config field it sets. A flag applies to the archs whose
# settings (``settable_fields``) include its field.
ARCH_FLAGS: dict[str, str] = {
    "order": "order", "nonlinearity": "nonlinearity", "identity_init": "identity_init", "residual": "residual",
    "tie_weights": "tie_weights", "attention": "attention", "cell": "cell", "bidirectional": "bidirectional",
    "positions": "positions", "encoder": "encoder",
}
# Fields a config class shares among archs but only some of them use.
_FIELD_ARCHS: dict[str, tuple[str, ...]] = {"nonlinearity": ("rnn",), "identity_init": ("rnn",), "forget_bias": ("lstm",)}
_FLAG_SPELLING = {"bidirectional": "--bidirectional/--unidirectional"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def settable_fields(arch: str) -> dict[str, type]:
    """The model settings of ``arch`` a user may set (name -> type): its config fields minus
    ``vocab_size`` (the tokenizer decides it), the fields the registry fixes for the arch and the
    fields only other archs of the same config class use."""
    import typing

    from engine.models.registry import get_arch

    info = get_arch(arch)
    hints = typing.get_type_hints(info.config_cls)
    return {name: hints[name] for name in info.config_cls.__dataclass_fields__
            if name != "vocab_size" and name not in info.defaults and arch in _FIELD_ARCHS.get(name, (arch,))}


def flag_archs(flag: str) -> list[str]:
    """The architectures a named arch-specific flag applies to."""
    field = ARCH_FLAGS[flag]
    return [a for a in ARCHS if field in settable_fields(a)]


def parse_setting(arch: str, key: str, value: str) -> Any:
    """``--set KEY=VALUE``: ``value`` converted to the type of ``arch``'s config field ``key``."""
    from engine.errors import ConfigError

    fields = settable_fields(arch)
    if key not in fields:
        hint = f" ({key} is fixed by --arch)" if key in ARCHS[arch].defaults else ""
        raise ConfigError(f"{arch} has no setting {key!r}{hint}; its settings are {', '.join(fields)} (see `seqplay archs {arch}`)")
    kind, text = fields[key], value.strip()
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"{key} is true or false, got {value!r}; use e.g. --set {key}=true")
        return text.lower() in _TRUE
    try:
        return kind(text) if kind in (int, float) else text
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        default = ARCHS[arch].make_config().to_dict()[key]
        raise ConfigError(f"{key} must be {what}, got {value!r}; e.g. --set {key}={default}") from None


def arch_settings(arch: str, flags: dict[str, Any], sets: tuple[str, ...]) -> dict[str, Any]:
    """The model overrides from the named arch-specific flags (None = not given) and ``--set`` pairs;
    a flag the chosen arch does not have is refused with a one-line error."""
    from engine.errors import ConfigError

    out: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        archs = flag_archs(flag)
        if arch not in archs:
            name = _FLAG_SPELLING.get(flag, "--" + flag.replace("_", "-"))
            raise ConfigError(f"{name} applies to {', '.join(archs)} only, not {arch}; see `seqplay archs {arch}` for its settings")
        out[ARCH_FLAGS[flag]] = value
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}; e.g. --set mask_prob=0.2")
        key = key.strip().replace("-", "_")
        out[key] = parse_setting(arch, key, value)
    return out


@click.command("train")
@click.argument("source", metavar="PATH_OR_CORPUS", default="grammar")
@_opt("--arch", type=click.Choice(list(ARCHS)), default="transformer", show_default=True, help="Model architecture (see `seqplay archs`).")
@_opt("--tokenizer", type=click.Choice(TOKENIZERS), default="char", show_default=True)
@_opt("--vocab-size", type=int, default=None, help="Vocabulary size for bpe/word tokenizers.")
@_opt("--layers", type=int, default=None, help="Number of layers.")
@_opt("--width", type=int, default=None, help="Hidden size (RNNs, MLP) or model width (Transformer).")
@_opt("--embed", type=int, default=None, help="Embedding size (RNNs, MLP).")
@_opt("--heads", type=int, default=None, help="Attention heads (must divide --width).")
@_opt("--context", type=int, default=None,
        help="What the model sees: attention window (transformer, mlm), the MLP's n-token window (it trains "
           "on windows of max(64, 4n) tokens), truncated-BPTT length for RNNs, longest sequence for seq2seq "
           "(n-gram: use --order).")
@_opt("--batch-size", type=int, default=32, show_default=True)
@_opt("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per optimisation step.")
@_opt("--lr", type=float, default=None, help="Learning rate (default: the architecture's).")
@_opt("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True)
@_opt("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True, help="cosine = warmup + cosine; plateau = halve on plateau.")
@_opt("--warmup", type=int, default=100, show_default=True, help="Warmup steps (cosine/plateau).")
@_opt("--clip", type=float, default=1.0, show_default=True, help="Clip the global gradient norm (0: off).")
@_opt("--dropout", type=float, default=None)
@_opt("--order", type=int, default=None, help="[ngram] n-gram order (context of order-1 tokens).")
@_opt("--nonlinearity", type=click.Choice(["tanh", "relu"]), default=None, help="[rnn] f in h_t = f(W_h h_{t-1} + W_x x_t + b).")
@_opt("--identity-init/--no-identity-init", default=None, help="[rnn] start with W_h = I (Le et al. 2015).")
@_opt("--residual/--no-residual", default=None, help="[rnn, ugrnn, gru, lstm] add each layer's input to its output.")
@_opt("--tie-weights/--no-tie-weights", default=None, help="[recurrent, transformer] output matrix = embedding.")
@_opt("--attention", type=click.Choice(["none", "additive", "dot", "bilinear"]), default=None, help="[seq2seq] attention score.")
@_opt("--cell", type=click.Choice(["lstm", "gru"]), default=None, help="[seq2seq] encoder/decoder cell.")
@_opt("--bidirectional/--unidirectional", default=None, help="[seq2seq] encoder reads both ways.")
@_opt("--positions", type=click.Choice(["learned", "sinusoidal"]), default=None, help="[transformer] position encoding.")
@_opt("--encoder", type=click.Choice(["transformer", "lstm"]), default=None, help="[mlm] encoder type.")
@_opt("--set", "sets", multiple=True, metavar="KEY=VALUE",
      help="Any model setting of the arch (repeatable), e.g. --set mask_prob=0.2; see `seqplay archs NAME`.")
@_opt("--weight-decay", type=float, default=0.1, show_default=True)
@_opt("--steps", type=int, default=None, help="Step budget (default 2000, or unlimited with --time).")
@_opt("--time", "time_budget", type=float, default=None, help="Time budget in seconds.")
@_opt("--eval-every", type=int, default=200, show_default=True)
@_opt("--sample-every", type=int, default=200, show_default=True, help="Print a sample every N steps (0: never).")
@_opt("--checkpoint-every", type=int, default=None, help="Checkpoint every N steps (default: at each evaluation).")
@_opt("--keep-last", type=int, default=3, show_default=True, help="Step checkpoints kept (plus the best).")
@_opt("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps")
@_opt("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True)
@_opt("--threads", type=int, default=None, help="Torch threads (default: all cores available).")
@_opt("--compile", "compile_", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@_opt("--seed", type=int, default=1337, show_default=True)
@_opt("--runs-dir", default=None, help="Where run folders go (default: $SEQPLAY_HOME/runs or the user data dir).")
@_opt("--run-name", default=None, help="Name of the run folder.")
@_opt("--tensorboard", is_flag=True, help="Also write TensorBoard event files (needs tensorboard installed).")
@_opt("--auto-rollback", is_flag=True, help="On NaN/inf loss: reload the last good checkpoint, halve the lr, go on.")
@_opt("--json", "as_json", is_flag=True, help="Print the event stream as JSON lines.")
@_opt("--worker", "use_worker", is_flag=True, help="Train in the worker process (as the TUI does).")
@_opt("--nproc", type=int, default=1, show_default=True, help="Data-parallel processes (DDP: gloo on CPU, NCCL on GPUs).")
def train(source: str, arch: str, tokenizer: str, vocab_size: int | None, layers: int | None, width: int | None,
          embed: int | None, heads: int | None, context: int | None, batch_size: int, grad_accum: int, lr: float | None,
          optimizer: str, schedule: str, warmup: int, clip: float, dropout: float | None, weight_decay: float,
          steps: int | None, time_budget: float | None, eval_every: int, sample_every: int, checkpoint_every: int | None,
          keep_last: int, device: str, precision: str, threads: int | None, compile_: str, seed: int,
          runs_dir: str | None, run_name: str | None, tensorboard: bool, auto_rollback: bool, as_json: bool,
          use_worker: bool, nproc: int, order: int | None, nonlinearity: str | None, identity_init: bool | None,
          residual: bool | None, tie_weights: bool | None, attention: str | None, cell: str | None,
          bidirectional: bool | None, positions: str | None, encoder: str | None, sets: tuple[str, ...]) -> None:
    """Train a model on a text file or built-in corpus.

    Example: seqplay train ../shared/corpora/tinyshakespeare.txt --arch lstm --steps 500
    """
    from engine.errors import ConfigError
    from engine.models.registry import make_config

    model = {k: v for k, v in dict(layers=layers, width=width, embed=embed, heads=heads, dropout=dropout).items() if v is not None}
    model.update(arch_settings(arch, dict(
        order=order, nonlinearity=nonlinearity, identity_init=identity_init, residual=residual, tie_weights=tie_weights,
        attention=attention, cell=cell, bidirectional=bidirectional, positions=positions, encoder=encoder), sets))
    if steps is None:
        steps = None if time_budget else 2000
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ConfigError(f"checkpoint-every must be a positive whole number, got {checkpoint_every}")
    if warmup < 0 or weight_decay < 0 or sample_every < 0:
        raise ConfigError("warmup, weight-decay and sample-every must not be negative")
    config = TrainConfig(
        source=source, tokenizer=tokenizer, vocab_size=vocab_size, arch=arch, model=model, optimizer=optimizer, lr=lr,
        schedule=schedule, warmup=warmup, clip=clip if clip and clip > 0 else None, weight_decay=weight_decay,
        batch_size=batch_size, context=context, grad_accum=grad_accum, steps=steps, time_budget=time_budget,
        eval_every=eval_every, sample_every=sample_every, checkpoint_every=checkpoint_every, keep_last=keep_last,
        device=device, precision=precision, compile=compile_, threads=threads, seed=seed, runs_dir=runs_dir,
        run_name=run_name, tensorboard=tensorboard, auto_rollback=auto_rollback, nproc=nproc,
    ).validate()
    # Refuse impossible model sizes before touching the data or torch (the vocabulary is not known yet).
    overrides = dict(model, **({"context": context} if context else {}))
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
    code = _run_job(config, None, None, as_json, use_worker, config.steps, time_budget)
    if code:
        sys.exit(code)


@click.command("resume")
@click.argument("run")
@_opt("--steps", type=int, default=None, help="New total step budget (default: the run's).")
@_opt("--time", "time_budget", type=float, default=None, help="New time budget in seconds.")
@_opt("--device", default=None, help="Device to continue on (default: the run's).")
@_opt("--runs-dir", default=None)
@_opt("--json", "as_json", is_flag=True, help="Print the event stream as JSON lines.")
@_opt("--worker", "use_worker", is_flag=True, help="Train in the worker process (as the TUI does).")
@_opt("--nproc", type=int, default=None, help="Data-parallel processes (default: the run's).")
def resume(run: str, steps: int | None, time_budget: float | None, device: str | None, runs_dir: str | None,
           as_json: bool, use_worker: bool, nproc: int | None) -> None:
    """Continue RUN (a run name, folder or checkpoint file) exactly where it stopped."""
    from engine.runs.checkpoint import read_meta, resolve_checkpoint
    from engine.runs.folders import find_run

    target = run
    try:
        resolve_checkpoint(run, prefer_best=False)
    except Exception:  # noqa: BLE001 - try the --runs-dir name lookup before giving up
        target = str(find_run(run, runs_dir))
    ckpt = resolve_checkpoint(target, prefer_best=False)
    saved = read_meta(ckpt).get("train_config") or {}
    overrides = {k: v for k, v in dict(steps=steps, time_budget=time_budget, device=device, nproc=nproc).items() if v is not None}
    total = steps or saved.get("steps")
    code = _run_job({}, str(ckpt), overrides, as_json, use_worker, total, time_budget or saved.get("time_budget"))
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
