"""The Trainer: one loop for every architecture, reporting through protocol events.

What one optimisation step does (grad accumulation repeats the first three lines)::

    batch = task.next_batch()                      engine.training.tasks: one strategy per task
    loss = task.loss(model, batch);  (loss / accum).backward()
    g = ||grad||_2  (global, before clipping);  grad <- grad * min(1, clip / g)
    if loss or g is NaN/inf or loss explodes: skip the update, diagnose, pause (engine.training.guard)
    theta <- optimizer(theta, grad, lr(step, elapsed))     engine.training.optim, .schedule

Host syncs: none per step with a fused optimizer (Adam/AdamW, the default). The step's finiteness is
checked on the device and a sticky flag (``_halted``) is handed to the fused kernel as ``found_inf``:
from the first bad step on, no update touches the weights or the optimizer state. The losses and norms
stay on the device until ``settle()`` reads all pending steps at once (one sync), at the points that
need them: a metrics flush (about ten a second), an evaluation, checkpoint, sample or snapshot step, a
command, a pause, the end of the budget. At a blown-up step it undoes the steps counted after it (the
device skipped them; their batches are not trained on) and hands that step to the guard, which sees
the weights as they were before it. Other optimizers (SGD, RMSprop, Adagrad) and data-parallel ranks
read ``[loss, grad_norm]`` every step (``defer_checks`` False) and catch a bad step before its update.

Resume is exact (engine.training.state): checkpoints hold model + optimizer tensors, the torch RNG
state, the batcher state, the carried recurrent state and the schedule with its horizon. Evaluation
and samples run under ``torch.random.fork_rng`` so they never shift the training random stream.
``elapsed`` is the run's wall time (evaluation and checkpoints included, pauses not): what ``--time``
budgets and what drives a time-horizon schedule.

Hooks a subclass (data-parallel ranks, engine.training.distributed) overrides: ``setup``,
``next_batch``, ``reduce_loss``, ``train_step``, ``stop_reason`` and ``sample``.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from engine.device import (
    bits_per_char,
    check_fits,
    choose_precision,
    choose_threads,
    estimate_training_memory,
    is_out_of_memory,
    pick_device,
    should_compile,
)
from engine.errors import CheckpointError, ConfigError, DataError, SeqplayError, TrainingError
from engine.planning import plan_model  # the torch-free owner of the model a config builds
from engine.runs.checkpoint import (
    atomic_write_json,
    build_from_meta,
    disk_error_message,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    step_checkpoints,
)
from engine.runs.checks import resume_config
from engine.runs.folders import MetricsWriter, create_run, lock_run, process_identity, write_summary
from engine.runs.snapshots import after_step, scheduled
from engine.training import guard, state
from engine.training.config import TrainConfig
from engine.training.optim import build_optimizer, default_lr
from engine.training.schedule import Schedule
from engine.training.tasks import Batch, Evaluation, make_task
from engine.worker import protocol as P

Control = Callable[[float], Iterable[P.Command]]
FLUSH_SECONDS = 0.1  # StepMetrics batching: about ten flushes a second; a deferred guard settles as often
MLP_TRAIN_WINDOW_MIN = 64  # the MLP trains on windows of max(64, 4n) tokens (n = its context)


class Trainer:
    """Trains one run. ``emit`` receives protocol events; ``control(timeout)`` (optional) returns the
    commands that arrived, waiting up to ``timeout`` seconds (0 while running, a little while paused).

    ``pause_on_error``: on a NaN/exploding loss, pause and wait for commands (the worker, with a UI
    attached) or end the job with reason "error" (headless CLI). Defaults to "a control is attached".
    """

    def __init__(
        self,
        config: TrainConfig | dict[str, Any],
        emit: Callable[[P.Event], None],
        control: Control | None = None,
        resume_from: str | Path | None = None,
        job: str = "",
        pause_on_error: bool | None = None,
        overrides: dict[str, Any] | None = None,
        on_command: Callable[[P.Command], bool] | None = None,
        idle: Callable[[], None] | None = None,
    ):
        self.config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
        self._emit_raw = emit
        self.control = control
        self.resume_from = resume_from
        self.job = job
        self.pause_on_error = control is not None if pause_on_error is None else pause_on_error
        self.overrides = overrides or {}  # resume: budget/device changes allowed on top of the saved config
        self.on_command = on_command  # the worker's hook for commands the trainer does not handle
        self.idle = idle  # called between steps and while paused (generation pumping)
        self.run_dir: Path | None = None
        self.metrics: MetricsWriter | None = None
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0  # wall time of the run, pauses excluded (saved, so it spans resumes)
        self.best_val_loss: float | None = None
        self.best_val_bpc: float | None = None
        self.last_val_loss: float | None = None
        self.paused = False
        self._single = False
        self.stop_requested: str | None = None
        self.stop_save = True
        self._points: list[P.StepPoint] = []
        self._pending: list[tuple[Any, ...]] = []  # steps whose loss/norm are still on the device (settle)
        self.deferred = False  # the guard checks on the device; set in setup (a fused optimizer)
        self._last_flush = 0.0
        self._last_saved_step = -1
        self._last_eval_step = -1
        self.restores = 0
        self.tainted = False  # weights after a blow-up: never checkpointed
        self.rollbacks = 0
        self.last_batch: Batch | None = None
        self._tb: Any = None
        self._train_text: str | None = None
        self._train_index: Any = None
        self._logged: set[str] = set()
        self._notes: list[tuple[str, str]] = []  # (level, text) logged once the run has started
        self.is_main = True  # False on data-parallel ranks other than 0: no run folder, no checkpoints

    # ---------------------------------------------------------------------------------------- events
    def emit(self, event: P.Event) -> None:
        if self.metrics is not None:
            self.metrics.append(event)
        self._emit_raw(event)

    def log(self, text: str, level: str = "info") -> None:
        self.emit(P.LogLine(job=self.job, level=level, text=text))

    def emit_error(self, message: str) -> None:
        self.emit(P.ErrorEvent(job=self.job, message=message, fatal=False))

    def _log_once(self, key: str, text: str, level: str = "info") -> None:
        if key not in self._logged:
            self._logged.add(key)
            self.log(text, level)

    def flush(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self._points and (force or now - self._last_flush >= FLUSH_SECONDS):
            self.emit(P.StepMetrics(job=self.job, points=tuple(self._points)))
            self._points = []
            self._last_flush = now
            if self.metrics is not None:
                self.metrics.flush()
        elif force and self.metrics is not None:
            self.metrics.flush()

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Everything before the first step: validate, load data, plan/check memory, build, resume."""
        from engine.data.sources import prepare
        from engine.models.registry import get_arch

        meta = tensors = None
        if self.resume_from is not None:
            ckpt = resolve_checkpoint(self.resume_from, prefer_best=False)
            self._lock = lock_run(ckpt.parent.parent) if self.is_main else None  # one writer per run
            meta, tensors = read_checkpoint(ckpt)
            saved = meta.get("train_config")
            if isinstance(saved, dict) and "l2" not in saved and saved.get("optimizer", "adamw") != "adamw" \
                    and saved.get("weight_decay"):
                saved["l2"], saved["weight_decay"] = saved["weight_decay"], None  # runs from before --l2: it was L2
            self.config = resume_config(meta, self.overrides, ckpt)  # same bounds as the CLI; no unnamed file read
            self.run_dir = ckpt.parent.parent
            self._resume_path = ckpt
        cfg = self.config.validate()
        self.info = get_arch(cfg.arch)
        self.device = pick_device(cfg.device)
        self.threads = choose_threads(cfg.threads)
        torch.set_num_threads(self.threads)
        self.precision = choose_precision(cfg.precision, self.device, self.info.family)
        torch.manual_seed(cfg.seed)

        self.data = prepare(cfg.source, cfg.tokenizer, cfg.vocab_size, cfg.val_fraction)
        self.tokenizer = self.data.tokenizer
        if meta is not None and isinstance(meta.get("tokenizer"), dict) and meta["tokenizer"] != self.tokenizer.to_dict():
            raise CheckpointError(f"the corpus {cfg.source} changed since this run started (its tokenizer differs); start a new run")
        if len(self.data.val_ids) < 2:
            raise DataError(f"{cfg.source} leaves {len(self.data.val_ids)} validation tokens; give more text or a larger validation fraction")
        mcfg = self._plan(meta)
        self.model_config = mcfg

        # Memory: estimate before allocating anything.
        T = self._train_window(mcfg)
        self.context = T  # the training/evaluation sequence length
        try:
            check_fits(self._memory_estimate(mcfg, T), self.device, cfg.batch_size)
        except ConfigError as err:
            raise ConfigError(f"{err}{self._width_that_fits(mcfg, T)}") from None

        model = build_from_meta(meta) if meta is not None else self._build(mcfg)
        self.model = model.to(self.device)
        self.trainable = bool(getattr(self.model, "trainable", True))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.schedule = Schedule.plan(cfg, default_lr(cfg))
        self.optimizer = (build_optimizer(cfg.optimizer, self.params, self.schedule.base_lr, cfg)
                          if self.trainable and self.params else None)
        self.forward_model = self._maybe_compile(self.model)
        self.task = make_task(self)
        self.task.setup()
        self._notes += [("info", line) for line in self.task.notes()]
        self.explode_at = max(3.0 * math.log(max(2, mcfg.vocab_size)), 10.0)
        self.deferred = bool(self.defer_checks and self.optimizer is not None and self.optimizer.defaults.get("fused"))
        self._halted = torch.zeros((), device=self.device)  # 1 from a blown-up step until settle() reads it

        if meta is not None:
            state.restore(self, meta, tensors, self._resume_path)
            self.mark_restored()
            if self.schedule.beyond_horizon(cfg.steps, cfg.time_budget):
                self._notes.append(("warning", self._extension_note()))
        elif self.is_main:  # data-parallel ranks other than 0 write nothing (engine.training.distributed)
            self.run_dir = create_run(cfg.arch, cfg.source, cfg.runs_dir, cfg.run_name)
            self._lock = lock_run(self.run_dir)
            atomic_write_json(self.run_dir / "config.json", cfg.to_dict())
            self.tokenizer.save(self.run_dir / "tokenizer.json")
        if not self.is_main:
            self.run_dir = None
            return
        assert self.run_dir is not None
        self.metrics = MetricsWriter(self.run_dir)
        if cfg.tensorboard:
            self._open_tensorboard()

    def _extension_note(self) -> str:
        s = self.schedule
        horizon = " and ".join(x for x in (f"{s.total_steps} steps" if s.total_steps else "",
                                           f"{s.time_budget:g} s" if s.time_budget else "") if x)
        end = s.lr(10**12, 10**12)
        return (f"the budget goes past the schedule's horizon ({horizon}, fixed when the run started): "
                f"the schedule is not re-planned, steps past it run at its final learning rate {end:.3g}")

    def mark_restored(self) -> None:
        """The state was just loaded from a checkpoint (resume or rollback): nothing to save or evaluate."""
        self._last_saved_step = self.step
        self._last_eval_step = self.step
        self.restores += 1  # a new trajectory from here (time-machine snapshots re-reached are replaced)

    def _plan(self, meta: dict[str, Any] | None) -> Any:
        from engine.models.registry import config_from_dict

        cfg = self.config
        if meta is not None:
            return config_from_dict(cfg.arch, meta["model_config"]).validate()
        mcfg = plan_model(cfg, self.tokenizer.vocab_size)
        if hasattr(mcfg, "context") and self.info.task != "seq2seq":
            # A window longer than the data cannot be sampled: clamp it and say so.
            limit = min(len(self.data.train_ids), len(self.data.val_ids)) - 1
            if self.info.recurrent:
                limit = min(len(self.data.train_ids) // cfg.batch_size, len(self.data.val_ids)) - 1
            if mcfg.context > limit:
                if limit < 2:
                    raise DataError(f"{cfg.source} is too short for training ({len(self.data.val_ids)} validation tokens); give more text")
                self._notes.append(("warning", f"context {mcfg.context} is longer than the data allows; clamped to {limit}"))
                mcfg = mcfg.replace(context=limit).validate()
        return mcfg

    def _train_window(self, mcfg: Any) -> int:
        """Sequence length of training batches: the model's ``context``, except for the MLP, whose
        ``context`` is its n-token window: it trains on max(64, 4n)-token windows (positions >= n-1 see
        a full window), clamped to what the data allows."""
        n = int(getattr(mcfg, "context", 1))
        if self.info.name != "mlp":
            return n
        limit = min(len(self.data.train_ids), len(self.data.val_ids)) - 1
        return max(n, min(max(MLP_TRAIN_WINDOW_MIN, 4 * n), limit))

    def _memory_estimate(self, mcfg: Any, T: int) -> int:
        cfg = self.config
        return estimate_training_memory(
            mcfg.num_params(), cfg.batch_size, T, getattr(mcfg, "width", 0) or getattr(mcfg, "embed", 0),
            getattr(mcfg, "layers", 1), mcfg.vocab_size, cfg.optimizer, family=self.info.family,
        )

    def _width_that_fits(self, mcfg: Any, T: int) -> str:
        """The suffix "; --width N fits at this batch size" for the widest halving that fits, else ""."""
        width, heads = getattr(mcfg, "width", 0), getattr(mcfg, "heads", 1) or 1
        while width > heads:
            width //= 2
            if width % heads:
                continue
            try:
                check_fits(self._memory_estimate(mcfg.replace(width=width), T), self.device, self.config.batch_size)
            except ConfigError:
                continue
            return f"; --width {width} fits at this batch size"
        return ""

    def _build(self, mcfg: Any) -> Any:
        from engine.models.registry import build_model

        return build_model(self.config.arch, mcfg)

    def _maybe_compile(self, model: Any) -> Any:
        if not should_compile(self.config.compile, self.device, self.info.family):
            return model
        try:
            return torch.compile(model)
        except Exception as err:  # noqa: BLE001 - compile is an optimisation, eager always works
            self._notes.append(("warning", f"torch.compile failed ({type(err).__name__}); training without it"))
            return model

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._notes.append(("warning", "TensorBoard is not installed, so --tensorboard writes nothing; pip install 'seqplay[tensorboard]'"))
            return
        assert self.run_dir is not None
        from engine.runs.paths import real_dir  # a linked tensorboard/ would write outside the run

        self._tb = SummaryWriter(log_dir=str(real_dir(self.run_dir / "tensorboard")))


    # ------------------------------------------------------------------------------------ checkpoints
    def save(self, best: bool = False, force: bool = False) -> Path | None:
        """Write step-NNNNNN (and best) checkpoints; prune old ones. Never after a blow-up."""
        if self.tainted or self.run_dir is None:
            return None
        folder = self.run_dir / "checkpoints"
        path = folder / f"step-{self.step:06d}.json"
        written = None
        try:
            if force or self._last_saved_step != self.step or not path.exists():
                if path.exists():  # re-reached after a resume from an earlier checkpoint
                    path.unlink()
                meta, tensors = state.capture(self)
                save_checkpoint(path, tensors, meta)
                self._last_saved_step = self.step
                written = path
                self._prune(folder)
            if best:
                meta, tensors = state.capture(self)
                name = f"best-{self.step:06d}.safetensors"
                save_checkpoint(folder / "best.json", tensors, meta, tensors_name=name)
                for old in folder.glob("best-*.safetensors"):
                    if old.name != name:
                        old.unlink(missing_ok=True)
        except OSError as err:
            raise TrainingError(disk_error_message(err, folder)) from None
        if written is not None:
            self.emit(P.CheckpointWritten(job=self.job, step=self.step, path=str(written), best=best))
        elif best:
            self.emit(P.CheckpointWritten(job=self.job, step=self.step, path=str(folder / "best.json"), best=True))
        self._summary("running" if self.stop_requested is None else "stopping")
        return written

    def _prune(self, folder: Path) -> None:
        steps = step_checkpoints(folder.parent)
        for _s, json_path in steps[: max(0, len(steps) - self.config.keep_last)]:
            json_path.unlink(missing_ok=True)  # JSON first: a half-pruned pair is never taken for a checkpoint
            json_path.with_suffix(".safetensors").unlink(missing_ok=True)

    def _summary(self, status: str) -> None:
        if self.run_dir is None or not hasattr(self, "n_params"):
            return  # setup did not finish (e.g. a resume refused): leave the run's summary as it was
        try:
            write_summary(
                self.run_dir, arch=self.config.arch, source=self.config.source, params=self.n_params, steps=self.step,
                best_val_loss=self.best_val_loss, best_val_bpc=self.best_val_bpc, wall_time=self.elapsed,
                status=status, tokenizer=self.config.tokenizer, device=self.device,
                val_scored=getattr(self, "_val_scored", None), **process_identity(),
            )
        except OSError:
            pass

    # ------------------------------------------------------------------------------------- schedule
    @property
    def base_lr(self) -> float:
        return self.schedule.base_lr

    @base_lr.setter
    def base_lr(self, value: float) -> None:
        self.schedule.base_lr = float(value)

    def total_steps(self) -> int | None:
        return self.config.steps if self.config.steps else None

    def lr_at(self, step: int) -> float:
        """Learning rate for the step about to be taken (0-based), at the run's wall time so far."""
        return self.schedule.lr(step, self.elapsed)

    # ----------------------------------------------------------------------------------------- steps
    def next_batch(self) -> Batch:
        """The next micro-batch (data-parallel ranks take their rows of it)."""
        return self.task.next_batch()

    def reduce_loss(self, total: torch.Tensor) -> torch.Tensor:
        """The step's summed loss as every rank should see it (data-parallel ranks average it)."""
        return total

    defer_checks = True  # data-parallel ranks set False: every rank must see a blow-up at the same step

    def train_step(self) -> tuple[Any, Any, float, int] | None:
        """One optimisation step. Returns (loss, grad_norm, lr, tokens), or None if it blew up (the
        update was not applied; ``self.blowup`` holds (loss, grad_norm, lr)). With ``self.deferred``
        loss and grad_norm are device tensors and a blow-up is found by ``settle()``: the update of a bad
        step and of every step after it until then is skipped on the device (``found_inf``)."""
        from engine.device import autocast

        cfg = self.config
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        tokens = 0
        for _ in range(cfg.grad_accum):
            batch = self.last_batch = self.next_batch()
            with autocast(self.device, self.precision):
                loss = self.task.loss(self.forward_model, batch)
            (loss / cfg.grad_accum).backward()
            total += loss.detach().float()
            tokens += batch.tokens
        total = self.reduce_loss(total)
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip if cfg.clip else float("inf"), foreach=True)
        loss, norm = total / cfg.grad_accum, norm.float()
        if self.deferred and math.isfinite(lr):
            bad = ~(torch.isfinite(loss) & torch.isfinite(norm)) | (loss > self.explode_at)
            torch.maximum(self._halted, bad.float(), out=self._halted)
            self.optimizer.found_inf = self._halted  # the fused kernel skips the whole update when 1
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.tokens_seen += tokens
            return loss, norm, lr, tokens
        self.optimizer.found_inf = None
        loss_v, norm_v = torch.stack([loss, norm]).tolist()  # the step's one sync
        if not (math.isfinite(loss_v) and math.isfinite(norm_v) and math.isfinite(lr)) or loss_v > self.explode_at:
            self.optimizer.zero_grad(set_to_none=True)
            self.blowup = (loss_v, norm_v, lr)
            return None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += tokens
        return loss_v, norm_v, lr, tokens

    # ------------------------------------------------------------------------------------ evaluation
    def rng_guard(self) -> Any:
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        return torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu")

    def evaluate(self) -> P.EvalMetrics:
        """Validation over the whole split (``--eval-batches N``: a sample of N batches, said so)."""
        ev = self.task.evaluate(self.config.eval_batches if self.task.trainable else None)
        return self._record_eval(ev)

    def _record_eval(self, ev: Evaluation, train_loss: float | None = None) -> P.EvalMetrics:
        """Emit EvalMetrics (with how much of the split it scored), track the best loss."""
        val_loss = ev.loss
        improved = math.isfinite(val_loss) and (self.best_val_loss is None or val_loss < self.best_val_loss)
        if improved:
            self.best_val_loss, self.best_val_bpc = val_loss, (ev.bpc if math.isfinite(ev.bpc) else None)
        self.last_val_loss = val_loss
        if self.schedule.plateau(improved):
            self.log("validation loss has not improved for 2 evaluations: learning rate halved to "
                     f"{self.schedule.base_lr * self.schedule.plateau_scale:.3g}")
        self._last_eval_step = self.step
        self._val_scored = {"tokens": ev.tokens, "of": ev.split_tokens, "sampled": ev.sampled,
                            "accuracy_pairs": ev.accuracy_pairs}
        ppl = math.exp(val_loss) if val_loss < 700 else float("inf")
        event = P.EvalMetrics(job=self.job, step=self.step, val_loss=val_loss, val_ppl=ppl, val_bpc=ev.bpc,
                              train_loss=train_loss, best=improved, accuracy=ev.accuracy, val_tokens=ev.tokens,
                              val_split_tokens=ev.split_tokens, val_sampled=ev.sampled,
                              accuracy_pairs=ev.accuracy_pairs)
        self.emit(event)
        if self._tb is not None:
            self._tb.add_scalar("val/loss", val_loss, self.step)
            if math.isfinite(ev.bpc):
                self._tb.add_scalar("val/bpc", ev.bpc, self.step)
            if ev.accuracy is not None:
                self._tb.add_scalar("val/exact_match", ev.accuracy, self.step)
        return event

    # --------------------------------------------------------------------------------------- samples
    def sample(self, prompt: str = "", max_tokens: int | None = None) -> P.SampleText | None:
        """A short sample from the current model (own RNG: the training stream is untouched)."""
        event = self.task.sample(prompt, max_tokens or self.config.sample_tokens)
        if event is not None:
            self.emit(event)
        return event

    def copied(self, text: str, minimum: int = 20) -> str:
        """Longest span of ``text`` (>= ``minimum`` chars) found verbatim in the training text."""
        if len(text) < minimum:
            return ""
        from engine.insight.memorization import TrainingIndex

        if self._train_index is None:
            self._train_index = TrainingIndex(self._training_text())
        s, n = self._train_index.longest_span(text)
        span = text[s : s + n]
        return span if len(span) >= minimum else ""

    def _training_text(self) -> str:
        if self._train_text is None:
            self._train_text = self.data.source.text()[: self.data.train_chars][:4_000_000]
        return self._train_text

    # ----------------------------------------------------------------------------------- commands
    def _poll(self, timeout: float) -> None:
        if self.control is None:
            return
        commands = list(self.control(timeout))
        if commands:
            self.settle()  # a command sees the steps as they are (a save, a pause, a sample)
        for cmd in commands:
            self.handle(cmd)

    def _settle_due(self) -> bool:
        """Whether the pending steps must be read now: something after this step needs their values."""
        cfg, s = self.config, self.step
        base = int(cfg.snapshot_base or 0)
        return (not self.deferred or self.paused or bool(self.stop_requested)
                or time.perf_counter() - self._last_flush >= FLUSH_SECONDS
                or s % cfg.eval_every == 0 or bool(cfg.checkpoint_every and s % cfg.checkpoint_every == 0)
                or bool(cfg.sample_every and s % cfg.sample_every == 0) or (base > 0 and scheduled(s, base))
                or bool(cfg.steps and s >= cfg.steps))

    def settle(self, guard_blowup: bool = True) -> bool:
        """Turn the pending steps into step points, reading their losses and norms in one sync. At the
        first blown-up step: undo the steps counted from it on (none of them was applied), reset the
        device flag and (``guard_blowup``) hand it to ``guard.on_blowup``. True when a step blew up."""
        pending, self._pending = self._pending, []
        if not pending:
            return False
        on_device = [v for p in pending for v in p[1:3] if isinstance(v, torch.Tensor)]
        read = iter(torch.stack(on_device).tolist() if on_device else [])
        for i, (step, loss, norm, lr, tokens, dt, elapsed, seen, batch) in enumerate(pending):
            loss_v = next(read) if isinstance(loss, torch.Tensor) else loss
            norm_v = next(read) if isinstance(norm, torch.Tensor) else norm
            if not (math.isfinite(loss_v) and math.isfinite(norm_v)) or loss_v > self.explode_at:
                self.step = step - 1
                self.tokens_seen -= sum(p[4] for p in pending[i:])
                self.last_batch = batch
                self._halted.zero_()
                self.blowup = (loss_v, norm_v, lr)
                if guard_blowup:
                    guard.on_blowup(self, *self.blowup)
                return True
            if self.tainted and loss_v < self.explode_at:
                self.tainted = False
            self._points.append(P.StepPoint(step=step, loss=loss_v, lr=lr, grad_norm=norm_v,
                                            tokens_per_s=tokens / dt if dt > 0 else 0.0, elapsed=elapsed,
                                            tokens_seen=seen))
            if self._tb is not None:
                self._tb.add_scalar("train/loss", loss_v, step)
                self._tb.add_scalar("train/lr", lr, step)
        return False

    def pause(self, reason: str = "paused by you") -> None:
        if not self.paused:
            self.paused = True
            self.flush(force=True)
            self.emit(P.StateChanged(job=self.job, state="paused", reason=reason))
            self._summary("paused")

    def handle(self, cmd: P.Command) -> None:
        """Apply one control command (between steps)."""
        if isinstance(cmd, P.Pause):
            self.pause()
        elif isinstance(cmd, P.Resume):
            if self.paused:
                self.paused = False
                self.emit(P.StateChanged(job=self.job, state="running"))
                self._summary("running")
        elif isinstance(cmd, P.SingleStep):
            self._single = True
        elif isinstance(cmd, P.Stop | P.Shutdown):
            self.stop_requested = "stopped"
            self.stop_save = getattr(cmd, "save", True)
        elif isinstance(cmd, P.SaveNow):
            self.save(force=False)
        elif isinstance(cmd, P.SetLearningRate):
            if not (cmd.lr > 0 and math.isfinite(cmd.lr)):
                self.emit_error(f"learning rate must be a positive number, got {cmd.lr}")
                return
            self.schedule.base_lr, self.schedule.plateau_scale = float(cmd.lr), 1.0
            self.log(f"learning rate set to {cmd.lr:.3g} (the schedule continues from it)")
        elif isinstance(cmd, P.SampleNow):
            self.sample(cmd.prompt, cmd.max_tokens)
        elif self.on_command is not None:
            self.on_command(cmd)

    # ------------------------------------------------------------------------------------------- run
    def run(self) -> P.Finished:
        """Train until the budget is spent or a stop arrives. Never raises for problems a user can fix:
        they become ErrorEvent + Finished(reason="error")."""
        try:
            try:
                self.setup()
            except torch.OutOfMemoryError:
                raise TrainingError("out of memory while building the model; use a smaller --width/--layers") from None
            return self._loop()
        except SeqplayError as err:
            return self._fail(str(err))
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            if getattr(self, "optimizer", None) is not None:
                self.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            b = self.config.batch_size
            return self._fail(
                f"out of memory at step {self.step + 1} (batch {b} x context {getattr(self, 'context', '?')}); "
                f"use --batch-size {max(1, b // 2)} or a shorter --context (the last checkpoint is kept)"
            )
        finally:
            if self.metrics is not None:
                self.metrics.close()
            if getattr(self, "_lock", None) is not None:
                self._lock.release()
            if self._tb is not None:
                self._tb.close()

    def _fail(self, message: str) -> P.Finished:
        try:
            self.settle(guard_blowup=False)
        except RuntimeError:  # the device failed: its pending steps cannot be read
            self._pending = []
        self.flush(force=True)
        self.emit_error(message)
        self._summary("error")
        fin = P.Finished(job=self.job, step=self.step, reason="error", best_val_loss=self.best_val_loss,
                         run_dir=str(self.run_dir or ""))
        self.emit(fin)
        return fin

    def _started(self) -> None:
        cfg = self.config
        self.emit(P.Started(
            job=self.job, run_dir=str(self.run_dir), arch=cfg.arch, params=self.n_params, device=self.device,
            dtype=self.precision, train_tokens=len(self.data.train_ids), val_tokens=len(self.data.val_ids),
            vocab_size=self.model_config.vocab_size, total_steps=self.total_steps(), time_budget=cfg.time_budget,
            start_step=self.step, val_unk_share=self.data.unk_share() if self.info.task == "lm" else 0.0,
        ))
        for level, text in self._notes:
            self.log(text, level)
        self.log(f"{cfg.arch}: {self.n_params:,} parameters on {self.device} ({self.precision}, {self.threads} thread{'' if self.threads == 1 else 's'})")
        if getattr(self.data, "split_rule", ""):
            unk = self.data.unk_share()
            self.log(self.data.split_rule + (f"; <unk> is {unk:.1%} of the validation tokens" if unk else ""))
        self._summary("running")

    def stop_reason(self) -> str | None:
        """Why the loop should stop now: a stop request, or the budget ("done": steps, "time")."""
        if self.stop_requested:
            return self.stop_requested
        cfg = self.config
        if cfg.steps and self.step >= cfg.steps:
            return "done"
        if cfg.time_budget and self.elapsed >= cfg.time_budget:
            return "time"
        return None

    def _loop(self) -> P.Finished:
        self._started()
        if not self.trainable:
            return self._fit_counts()
        if self.step == 0:
            self.save()  # a step-0 checkpoint: something good to fall back to from the very first step
            after_step(self)  # the step-0 snapshot (engine.runs.snapshots)
        self.model.train()
        self._last_flush = clock = time.perf_counter()
        while True:
            self._poll(0.0)
            if self.idle is not None:
                self.idle()
            now = time.perf_counter()
            if not self.paused:
                self.elapsed += now - clock  # wall time: steps, evaluations, checkpoints, samples
            clock = now
            reason = self.stop_reason()
            if reason and self.settle():
                continue  # a step before the end blew up: the guard decided (rolled back, paused, stopping)
            if reason:
                break
            if self.paused and not self._single:
                self.flush(force=True)
                self._poll(0.05)
                if self.control is None:
                    time.sleep(0.05)
                continue
            self._single = False
            t0 = time.perf_counter()
            result = self.train_step()
            dt = time.perf_counter() - t0
            if result is None:
                earlier = self.settle()  # a pending step that blew up first is the one to handle
                if (earlier or not guard.on_blowup(self, *self.blowup)) and self.stop_requested:
                    reason = self.stop_requested
                    break
                continue
            loss_v, norm_v, lr, tokens = result
            self._pending.append((self.step, loss_v, norm_v, lr, tokens, dt,
                                  self.elapsed + (time.perf_counter() - clock), self.tokens_seen, self.last_batch))
            if self._settle_due() and self.settle():
                if self.stop_requested:
                    reason = self.stop_requested
                    break
                continue
            self.flush()
            self._periodic()
            after_step(self)
        return self._finish(reason)

    def _periodic(self) -> None:
        cfg = self.config
        at_eval = self.step % cfg.eval_every == 0
        if at_eval:
            self.flush(force=True)
            before = self.best_val_loss
            ev = self.evaluate()
            if cfg.checkpoint_every is None:
                self.save(best=ev.best and ev.val_loss != before)
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save(best=at_eval and self._last_eval_step == self.step and self.best_val_loss == self.last_val_loss)
        if cfg.sample_every and self.step % cfg.sample_every == 0:
            self.flush(force=True)
            self.sample()

    def _finish(self, reason: str) -> P.Finished:
        self.flush(force=True)
        if reason != "error" and not self.tainted:
            best = False
            if self._last_eval_step != self.step and self.step > 0:
                best = self.evaluate().best
            if self.stop_save:
                self.save(best=best)
            after_step(self, final=True)
        test_loss = self._report_test() if reason != "error" and not self.tainted else None
        status = {"done": "finished", "time": "finished", "stopped": "stopped", "error": "error"}.get(reason, reason)
        self._summary(status)
        fin = P.Finished(job=self.job, step=self.step, reason=reason, best_val_loss=self.best_val_loss,
                         run_dir=str(self.run_dir), test_loss=test_loss)
        self.emit(fin)
        return fin

    def _report_test(self) -> float | None:
        """Test-split loss of the final weights (sources with a test split, LM task): logged once."""
        test = getattr(self.data, "test_ids", None)
        if test is None or len(test) <= self.context or self.info.task != "lm" or not self.task.trainable:
            return None
        loss = float(self.task.split_loss(test))
        bpc = bits_per_char(loss, len(test), self.data.test_chars)
        unk = self.data.unk_share(test)
        self.log(f"test: loss {loss:.4f}, ppl {math.exp(min(loss, 700)):.2f}, {bpc:.3f} bits/char over all "
                 f"{len(test):,} test tokens" + (f" (<unk> {unk:.1%} of them)" if unk else ""))
        return loss

    def _fit_counts(self) -> P.Finished:
        """Count-based models (n-gram): ``fit`` on the training ids, one evaluation, one checkpoint."""
        t0 = time.perf_counter()
        self.tokens_seen = self.task.fit()
        self.elapsed += time.perf_counter() - t0
        self.step = 1
        ev = self.evaluate()
        self.save(best=ev.best)
        self._summary("finished")
        fin = P.Finished(job=self.job, step=self.step, reason="done", best_val_loss=self.best_val_loss, run_dir=str(self.run_dir))
        self.emit(fin)
        return fin


def train(config: TrainConfig, emit: Callable[[P.Event], None] | None = None, **kwargs: Any) -> P.Finished:
    """Convenience: run a Trainer to the end and return its Finished event."""
    return Trainer(config, emit or (lambda e: None), **kwargs).run()
