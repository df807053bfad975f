"""The Trainer: one loop for every architecture, reporting through protocol events.

What one optimisation step does (LM task; grad accumulation repeats the first three lines)::

    x, y = batch                      # RandomWindows, or ContiguousStreams for recurrent models
    logits, loss, state = model(x, y, state)      # recurrent: state carried, detached (truncated BPTT)
    (loss / accum).backward()
    g = ||grad||_2  (global, before clipping);  grad <- grad * min(1, clip / g)
    if loss or g is NaN/inf or loss explodes: skip the update, pause (guard rail)
    theta <- optimizer(theta, grad, lr(step))

Host syncs: exactly one per step (``[loss, grad_norm].tolist()``), which is what lets a NaN be caught
*before* the bad update is applied (within one step). On CPU a sync costs nothing; on a GPU it is one
small transfer per step, which we accept for the guard rail.

Resume is exact: checkpoints hold model + optimizer tensors, the torch RNG state, the batcher state,
the carried recurrent state and the schedule's state. Evaluation and samples run under
``torch.random.fork_rng`` so they never shift the training random stream.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.worker import protocol as P
from engine.runs.checkpoint import (
    atomic_write_json,
    build_from_meta,
    disk_error_message,
    load_model_state,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    step_checkpoints,
)
from engine.training.config import TrainConfig
from engine.device import (
    autocast,
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
from engine.runs.folders import MetricsWriter, create_run, process_identity, write_summary

Control = Callable[[float], Iterable[P.Command]]
FLUSH_SECONDS = 0.1  # StepMetrics batching: about ten flushes a second
MAX_ROLLBACKS = 5
TASK_EXTRA_IDS = {"mlm": 1, "seq2seq": 3}
EXACT_MATCH_PAIRS = 256  # seq2seq evaluation: greedy-decoded validation pairs scored by exact match
EVAL_COUNT_CELLS = 200_000_000  # n-gram evaluation: at most this many (token x vocabulary) probabilities
MLP_TRAIN_WINDOW_MIN = 64  # the MLP trains on windows of max(64, 4n) tokens (n = its context)

# Default learning rates for optimizers whose scale differs from Adam's (used when --lr is not given).
_OPT_DEFAULT_LR = {"sgd": 0.1, "adagrad": 1e-2}


def default_lr(config: TrainConfig) -> float:
    from engine.models.registry import get_arch

    if config.lr is not None:
        return float(config.lr)
    return _OPT_DEFAULT_LR.get(config.optimizer, get_arch(config.arch).default_lr or 1e-3)


def model_overrides(config: TrainConfig) -> dict[str, Any]:
    """The model-config overrides a TrainConfig asks for (``model`` dict plus ``context``)."""
    overrides = dict(config.model)
    if config.context is not None:
        overrides["context"] = config.context
    return overrides


def plan_model(config: TrainConfig, vocab_size: int) -> Any:
    """The validated model config for a TrainConfig (no torch allocation): refuses bad sizes early."""
    from engine.models.registry import get_arch, make_config

    info = get_arch(config.arch)
    extra = TASK_EXTRA_IDS.get(info.task, 0)  # mlm: [MASK]; seq2seq: pad, bos, eos (appended ids)
    mcfg = make_config(config.arch, vocab_size + extra, **model_overrides(config))
    return mcfg.validate()


def build_optimizer(name: str, params: list[torch.nn.Parameter], lr: float, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum), Adam, AdamW, RMSprop, Adagrad. Weight decay applies to matrices only (dim >= 2):
    biases and LayerNorm gains are not decayed. Adam/AdamW use the fused kernel where available (one
    kernel over all parameters), else foreach."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        try:
            return cls(groups, lr=lr, betas=(0.9, 0.95), fused=True)
        except (RuntimeError, TypeError, ValueError):
            return cls(groups, lr=lr, betas=(0.9, 0.95), foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.99, momentum=0.0, foreach=True)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, foreach=True)
    raise ConfigError(f"unknown optimizer {name!r}; choose adamw, adam, sgd, rmsprop or adagrad")


def _flatten_state(state: Any) -> list[torch.Tensor]:
    if state is None:
        return []
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, tuple | list):
        return [t for s in state for t in _flatten_state(s)]
    return []


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
        self.elapsed = 0.0
        self.best_val_loss: float | None = None
        self.best_val_bpc: float | None = None
        self.last_val_loss: float | None = None
        self.paused = False
        self._single = False
        self._stop: str | None = None
        self._stop_save = True
        self._points: list[P.StepPoint] = []
        self._last_flush = 0.0
        self._last_saved_step = -1
        self._last_eval_step = -1
        self.tainted = False  # weights after a blow-up: never checkpointed
        self.rollbacks = 0
        self.plateau_scale = 1.0
        self.plateau_bad = 0
        self.state: Any = None
        self._tb: Any = None
        self._train_text: str | None = None
        self._train_index: Any = None
        self._logged: set[str] = set()
        self.is_main = True  # False on data-parallel ranks other than 0: no run folder, no checkpoints

    # ---------------------------------------------------------------------------------------- events
    def emit(self, event: P.Event) -> None:
        if self.metrics is not None:
            self.metrics.append(event)
        self._emit_raw(event)

    def log(self, text: str, level: str = "info") -> None:
        self.emit(P.LogLine(job=self.job, level=level, text=text))

    def _flush(self, force: bool = False) -> None:
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
            meta, tensors = read_checkpoint(ckpt)
            saved = dict(meta.get("train_config") or {})
            saved.update({k: v for k, v in self.overrides.items() if v is not None})
            self.config = TrainConfig.from_dict(saved)
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
        self.task = self.info.task

        # Memory: estimate before allocating anything.
        T = self._train_window(mcfg)
        self.context = T  # the training/evaluation sequence length
        try:
            check_fits(self._memory_estimate(mcfg, T), self.device, cfg.batch_size)
        except ConfigError as err:
            raise ConfigError(f"{err}{self._width_that_fits(mcfg, T)}") from None

        model = build_from_meta(meta) if meta is not None else self._build(mcfg)
        self.model = model.to(self.device)
        self.recurrent = bool(getattr(self.model, "recurrent", False))
        self.trainable = bool(getattr(self.model, "trainable", True))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.base_lr = default_lr(cfg)
        self.optimizer = build_optimizer(cfg.optimizer, self.params, self.base_lr, cfg) if self.trainable and self.params else None
        self.forward_model = self._maybe_compile(self.model)
        self.batcher = self._make_batcher()
        self.explode_at = max(3.0 * math.log(max(2, mcfg.vocab_size)), 10.0)

        if meta is not None:
            self._restore(meta, tensors)
        elif self.is_main:  # data-parallel ranks other than 0 write nothing (engine.training.distributed)
            self.run_dir = create_run(cfg.arch, cfg.source, cfg.runs_dir, cfg.run_name)
            atomic_write_json(self.run_dir / "config.json", cfg.to_dict())
            self.tokenizer.save(self.run_dir / "tokenizer.json")
        if not self.is_main:
            self.run_dir = None
            return
        assert self.run_dir is not None
        self.metrics = MetricsWriter(self.run_dir)
        if cfg.tensorboard:
            self._open_tensorboard()

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
                self._pending_log = f"context {mcfg.context} is longer than the data allows; clamped to {limit}"
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
            self._pending_compile = f"torch.compile failed ({type(err).__name__}); training without it"
            return model

    def _make_batcher(self) -> Any:
        from engine.data.sources import ContiguousStreams, RandomWindows

        cfg = self.config
        if not self.trainable:
            return None
        if self.task == "seq2seq":
            return self._pair_batcher()
        if self.recurrent:
            return ContiguousStreams(self.data.train_ids, cfg.batch_size, self.context)
        return RandomWindows(self.data.train_ids, cfg.batch_size, self.context, seed=cfg.seed)

    def _pair_batcher(self) -> Any:
        """seq2seq: encode ``Source.pairs()``, keep the last ``val_fraction`` for validation, batch the rest."""
        from engine.data.pairs import PairBatches, encode_pairs, split_pairs

        cfg = self.config
        pairs = self.data.source.pairs()
        limit = int(self.model_config.context)
        srcs, tgts, cut = encode_pairs(pairs, self.tokenizer, limit)
        train, val = split_pairs(len(pairs), cfg.val_fraction)
        self.specials = self.model.special_ids(int(self.model_config.vocab_size))
        self.val_pairs = ([srcs[i] for i in val], [tgts[i] for i in val])
        if cut:
            self._pending_log = f"{cut} of {len(pairs)} pairs are longer than the context of {limit} tokens and were cut; use --context {limit * 2}"
        self._task_note = (f"{len(train):,} training and {len(val):,} validation pairs; each evaluation also "
                           f"greedy-decodes {min(len(val), EXACT_MATCH_PAIRS)} validation pairs for exact-match accuracy")
        return PairBatches([srcs[i] for i in train], [tgts[i] for i in train], cfg.batch_size, self.specials, seed=cfg.seed)

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._pending_tb = "TensorBoard is not installed, so --tensorboard writes nothing; pip install 'seqplay[tensorboard]'"
            return
        assert self.run_dir is not None
        self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    # ------------------------------------------------------------------------------- checkpoint state
    def _meta(self) -> dict[str, Any]:
        opt_meta: dict[str, Any] = {}
        if self.optimizer is not None:
            sd = self.optimizer.state_dict()
            opt_meta["param_groups"] = sd["param_groups"]
            opt_meta["scalars"] = {
                str(pid): {k: v for k, v in st.items() if not isinstance(v, torch.Tensor)} for pid, st in sd["state"].items()
            }
            opt_meta["tensor_keys"] = {str(pid): [k for k, v in st.items() if isinstance(v, torch.Tensor)] for pid, st in sd["state"].items()}
        return {
            "arch": self.config.arch,
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "elapsed": self.elapsed,
            "best_val_loss": self.best_val_loss,
            "best_val_bpc": self.best_val_bpc,
            "last_val_loss": self.last_val_loss,
            "schedule": {"base_lr": self.base_lr, "plateau_scale": self.plateau_scale, "plateau_bad": self.plateau_bad},
            "optimizer": opt_meta,
            "batcher": self.batcher.state_dict() if self.batcher is not None else None,
            "carried_state": len(_flatten_state(self.state)) if self.state is not None else None,
            "params": self.n_params,
            "device": self.device,
            "precision": self.precision,
            "saved": time.time(),
        }

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.optimizer is not None:
            for pid, st in self.optimizer.state_dict()["state"].items():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor):
                        out[f"optim.{pid}.{k}"] = v
        out["rng.torch"] = torch.get_rng_state()
        if self.device.startswith("cuda"):
            out["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        for i, t in enumerate(_flatten_state(self.state)):
            out[f"state.{i}"] = t
        return out

    def _restore(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Put model, optimizer, RNG, batcher, carried state and schedule back as they were saved."""
        load_model_state(self.model, tensors, self._resume_path)
        try:
            if self.optimizer is not None and meta.get("optimizer"):
                om = meta["optimizer"]
                state: dict[int, dict[str, Any]] = {}
                for pid, keys in om.get("tensor_keys", {}).items():
                    state[int(pid)] = {k: tensors[f"optim.{pid}.{k}"] for k in keys}
                for pid, scalars in om.get("scalars", {}).items():
                    state.setdefault(int(pid), {}).update(scalars)
                self.optimizer.load_state_dict({"state": state, "param_groups": om["param_groups"]})
            torch.set_rng_state(tensors["rng.torch"])
            if "rng.cuda" in tensors and self.device.startswith("cuda"):
                torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
            if self.batcher is not None and meta.get("batcher") is not None:
                self.batcher.load_state_dict(meta["batcher"])
            n_state = meta.get("carried_state")
            if n_state:
                parts = tuple(tensors[f"state.{i}"].to(self.device) for i in range(int(n_state)))
                self.state = parts
            self.step = int(meta["step"])
            self.tokens_seen = int(meta.get("tokens_seen", 0))
            self.elapsed = float(meta.get("elapsed", 0.0))
            self.best_val_loss = meta.get("best_val_loss")
            self.best_val_bpc = meta.get("best_val_bpc")
            self.last_val_loss = meta.get("last_val_loss")
            sched = meta.get("schedule") or {}
            self.base_lr = float(sched.get("base_lr", self.base_lr))
            self.plateau_scale = float(sched.get("plateau_scale", 1.0))
            self.plateau_bad = int(sched.get("plateau_bad", 0))
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{self._resume_path.name} cannot be resumed ({type(err).__name__}: {str(err)[:80]}); use an earlier checkpoint") from None
        self._last_saved_step = self.step
        self._last_eval_step = self.step

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
                meta, tensors = self._meta(), self._tensors()
                save_checkpoint(path, tensors, meta)
                self._last_saved_step = self.step
                written = path
                self._prune(folder)
            if best:
                meta, tensors = self._meta(), self._tensors()
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
        self._summary("running" if self._stop is None else "stopping")
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
                status=status, tokenizer=self.config.tokenizer, device=self.device, **process_identity(),
            )
        except OSError:
            pass

    # ------------------------------------------------------------------------------------- schedule
    def total_steps(self) -> int | None:
        return self.config.steps if self.config.steps else None

    def lr_at(self, step: int) -> float:
        """Learning rate for the step about to be taken (0-based)."""
        cfg = self.config
        base = self.base_lr * self.plateau_scale
        if cfg.schedule == "constant":
            return base
        total = self.total_steps()
        warm = min(cfg.warmup, total // 10) if total else cfg.warmup
        if warm > 0 and step < warm:
            return base * (step + 1) / warm
        if cfg.schedule == "cosine" and (total or cfg.time_budget):
            # a step budget: the fraction of its steps; a time budget alone: the fraction of its time
            progress = min(1.0, (step - warm) / max(1, total - warm)) if total else min(1.0, self.elapsed / cfg.time_budget)
            low = base * cfg.min_lr_ratio
            return low + (base - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return base

    def _plateau(self, val_loss: float, improved: bool) -> None:
        if self.config.schedule != "plateau":
            return
        self.plateau_bad = 0 if improved else self.plateau_bad + 1
        if self.plateau_bad >= 2:
            self.plateau_scale *= 0.5
            self.plateau_bad = 0
            self.log(f"validation loss has not improved for 2 evaluations: learning rate halved to {self.base_lr * self.plateau_scale:.3g}")

    # ----------------------------------------------------------------------------------------- steps
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if self.task == "seq2seq":  # x = src; y = [tgt_in | targets] (same width), split in train_step
            src, tgt_in, targets = self.batcher.next()
            x, y, reset = src, np.concatenate([tgt_in, targets], 1), False
        elif self.recurrent:
            x, y, reset = self.batcher.next()
        else:
            x, y = self.batcher.next()
            reset = False
        return self._to_device(x), self._to_device(y), reset

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """Host batch -> device. On CUDA through pinned memory, asynchronously (no host sync)."""
        t = torch.from_numpy(array)
        if self.device.startswith("cuda"):
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def train_step(self) -> tuple[float, float, float, int] | None:
        """One optimisation step. Returns (loss, grad_norm, lr, tokens), or None if it blew up (the
        update was not applied)."""
        cfg = self.config
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        tokens = 0
        for _ in range(cfg.grad_accum):
            x, y, reset = self._batch()
            if self.recurrent and reset:
                self.state = None
            with autocast(self.device, self.precision):
                if self.task == "seq2seq":  # teacher forcing: (src, [bos]+y, y+[eos])
                    _, loss, _ = self.forward_model(x, *y.chunk(2, dim=1))
                elif self.task == "mlm":  # 15% of positions masked 80/10/10 (training RNG: resumable)
                    _, loss, _ = self.forward_model(*self.model.masking(x))
                else:
                    _, loss, state = self.forward_model(x, y, state=self.state) if self.recurrent else self.forward_model(x, y)
            (loss / cfg.grad_accum).backward()
            total += loss.detach().float()
            tokens += x.numel() + (y.size(1) // 2 * y.size(0) if self.task == "seq2seq" else 0)  # seq2seq: + target positions
            if self.recurrent:
                self.state = self.model.detach_state(state)
        total = self._reduce_loss(total)
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip if cfg.clip else float("inf"), foreach=True)
        loss_v, norm_v = torch.stack([total / cfg.grad_accum, norm.float()]).tolist()  # the step's one sync
        if not (math.isfinite(loss_v) and math.isfinite(norm_v)) or loss_v > self.explode_at:
            self.optimizer.zero_grad(set_to_none=True)
            self._blowup = (loss_v, norm_v, lr)
            return None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += tokens
        return loss_v, norm_v, lr, tokens

    def _reduce_loss(self, total: torch.Tensor) -> torch.Tensor:
        """The step's summed loss as every rank should see it (data-parallel ranks average it)."""
        return total

    # ------------------------------------------------------------------------------------ evaluation
    def _rng_guard(self) -> Any:
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        return torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu")

    @torch.no_grad()
    def evaluate(self, ids: np.ndarray | None = None) -> P.EvalMetrics | float:
        """Mean validation loss over ``eval_batches`` batches (fixed windows / contiguous streams);
        count models (n-gram) over the whole validation split. With ``ids`` (the test split): the
        mean loss over all of them, returned as a float and not recorded as a validation result."""
        if ids is not None:
            return self._split_loss(ids)
        if not self.trainable:
            return self._record_eval(self._count_model_val_loss())
        if self.task == "seq2seq":
            return self._evaluate_seq2seq()
        return self._record_eval(self._split_loss(None), val_bpc=float("nan") if self.task == "mlm" else None)

    def _split_loss(self, ids: np.ndarray | None) -> float:
        """LM / MLM loss on validation (``eval_batches`` batches) or, given ``ids``, all of them."""
        cfg = self.config
        val = self.data.val_ids if ids is None else ids
        batches = cfg.eval_batches if ids is None else 1 << 40
        T, B = self.context, cfg.batch_size
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        with self._rng_guard():
            if self.recurrent:
                n_streams = max(1, min(B, (len(val) - 1) // max(T, 1)))
                length = (len(val) - 1) // n_streams
                xs = torch.from_numpy(np.asarray(val[: n_streams * length], dtype=np.int64)).view(n_streams, length)
                ys = torch.from_numpy(np.asarray(val[1 : n_streams * length + 1], dtype=np.int64)).view(n_streams, length)
                state = None
                for i, start in enumerate(range(0, length, T)):
                    if i >= batches:
                        break
                    x, y = xs[:, start : start + T].to(self.device), ys[:, start : start + T].to(self.device)
                    with autocast(self.device, self.precision):
                        _, loss, state = self.model(x, y, state=state)
                    loss_sum += loss.double() * y.numel()
                    count += y.numel()
            else:
                n_windows = max(1, min(batches * B, (len(val) - 1) // T))
                starts = np.linspace(0, len(val) - 1 - T, n_windows).astype(np.int64)
                offsets = np.arange(T + 1)
                masks = torch.Generator(device="cpu").manual_seed(cfg.seed)  # mlm: the same masks every evaluation
                for i in range(0, n_windows, B):
                    w = torch.from_numpy(np.asarray(val[starts[i : i + B, None] + offsets], dtype=np.int64)).to(self.device)
                    if self.task == "mlm":
                        inputs, targets = self.model.masking(w[:, :-1], generator=masks)
                        with autocast(self.device, self.precision):
                            _, loss, _ = self.model(inputs, targets)
                        n = int((targets != -100).sum())
                    else:
                        with autocast(self.device, self.precision):
                            _, loss, _ = self.model(w[:, :-1], w[:, 1:])
                        n = w[:, 1:].numel()
                    loss_sum += loss.double() * n
                    count += n
        if was_training:
            self.model.train()
        # bits/char needs a next-token distribution over the whole text; a masked LM predicts 15% of it
        return float(loss_sum.item() / max(count, 1))

    @torch.no_grad()
    def _evaluate_seq2seq(self) -> P.EvalMetrics:
        """Teacher-forced loss on the first ``eval_batches x batch_size`` validation pairs, bits per target
        character (eos counts as the line end), and exact match of greedy decoding on up to
        ``EXACT_MATCH_PAIRS`` validation pairs."""
        from engine.models.seq2seq import strip_specials
        from engine.data.pairs import collate

        cfg = self.config
        srcs, tgts = self.val_pairs
        B, V = cfg.batch_size, int(self.model_config.vocab_size)
        n_loss = min(len(srcs), cfg.eval_batches * B)
        was_training = self.model.training
        self.model.eval()
        loss_sum, count, hits = 0.0, 0, 0
        with self._rng_guard():
            for i in range(0, n_loss, B):
                batch = [torch.from_numpy(a).to(self.device) for a in collate(srcs[i : i + B], tgts[i : i + B], *self.specials)]
                with autocast(self.device, self.precision):
                    _, loss, _ = self.model(*batch)
                n = int((batch[2] != -100).sum())
                loss_sum += float(loss.double()) * n
                count += n
            n_match = min(len(srcs), EXACT_MATCH_PAIRS)
            for i in range(0, n_match, 64):
                src = torch.from_numpy(collate(srcs[i : i + 64], tgts[i : i + 64], *self.specials)[0]).to(self.device)
                longest = max(len(y) for y in tgts[i : i + 64]) + 1  # room for eos: a longer output is wrong anyway
                with autocast(self.device, self.precision):
                    out = self.model.greedy_decode(src, max_len=longest).tolist()
                hits += sum(strip_specials(row, V) == y.tolist() for row, y in zip(out, tgts[i : i + 64]))
        if was_training:
            self.model.train()
        val_loss = loss_sum / max(count, 1)
        chars = sum(len(self.tokenizer.decode(y)) + 1 for y in tgts[:n_loss])
        return self._record_eval(val_loss, val_bpc=bits_per_char(val_loss, count, chars), accuracy=hits / max(n_match, 1))

    @torch.no_grad()
    def _count_model_val_loss(self) -> float:
        """Exact mean loss of a count model over the validation split: one contiguous stream, read in
        chunks that carry the model's state (its last n-1 tokens), so every position sees its full
        history. Very large splits x vocabularies are cut to about ``EVAL_COUNT_CELLS`` probabilities."""
        val = self.data.val_ids
        V = int(self.model_config.vocab_size)
        n = len(val) - 1
        limit = max(4096, EVAL_COUNT_CELLS // max(V, 1))
        if n > limit:
            self._log_once("count_eval", f"validation uses the first {limit:,} of {n:,} tokens (vocabulary {V:,})")
            n = limit
        chunk = max(16, min(1024, EVAL_COUNT_CELLS // 50 // max(V, 1)))
        state = None
        loss_sum, count = 0.0, 0
        for start in range(0, n, chunk):
            w = torch.from_numpy(np.asarray(val[start : min(start + chunk, n) + 1], dtype=np.int64))[None].to(self.device)
            _, loss, state = self.model(w[:, :-1], w[:, 1:], state=state)
            loss_sum += float(loss.double()) * (w.size(1) - 1)
            count += w.size(1) - 1
        return loss_sum / max(count, 1)

    def _log_once(self, key: str, text: str, level: str = "info") -> None:
        """A log line emitted once per Trainer (e.g. why a figure is not reported)."""
        if key not in self._logged:
            self._logged.add(key)
            self.log(text, level)

    def _record_eval(self, val_loss: float, train_loss: float | None = None, val_bpc: float | None = None,
                     accuracy: float | None = None) -> P.EvalMetrics:
        """Emit EvalMetrics, track the best loss. ``val_bpc``: given by task-specific evaluations (NaN: not
        meaningful), else computed over the validation split; ``accuracy``: seq2seq exact match."""
        if val_bpc is None:
            val_bpc = bits_per_char(val_loss, len(self.data.val_ids), self.data.val_chars)
        improved = math.isfinite(val_loss) and (self.best_val_loss is None or val_loss < self.best_val_loss)
        if improved:
            self.best_val_loss, self.best_val_bpc = val_loss, (val_bpc if math.isfinite(val_bpc) else None)
        self.last_val_loss = val_loss
        self._plateau(val_loss, improved)
        self._last_eval_step = self.step
        ppl = math.exp(val_loss) if val_loss < 700 else float("inf")
        event = P.EvalMetrics(job=self.job, step=self.step, val_loss=val_loss, val_ppl=ppl, val_bpc=val_bpc,
                              train_loss=train_loss, best=improved, accuracy=accuracy)
        self.emit(event)
        if self._tb is not None:
            self._tb.add_scalar("val/loss", val_loss, self.step)
            if math.isfinite(val_bpc):
                self._tb.add_scalar("val/bpc", val_bpc, self.step)
            if accuracy is not None:
                self._tb.add_scalar("val/exact_match", accuracy, self.step)
        return event

    # --------------------------------------------------------------------------------------- samples
    @torch.no_grad()
    def sample(self, prompt: str = "", max_tokens: int | None = None, temperature: float = 0.8) -> P.SampleText:
        """A short sample from the current model (own RNG: the training stream is untouched)."""
        if self.task != "lm":
            return self._task_sample(prompt)
        n = max_tokens or self.config.sample_tokens
        tok = self.tokenizer
        ids = list(tok.encode(prompt)) if prompt else [int(self.data.val_ids[0])]
        start = len(ids)
        was_training = self.model.training
        self.model.eval()
        gen = torch.Generator(device="cpu").manual_seed(self.config.seed + self.step)
        with self._rng_guard():
            state = None
            x = torch.tensor([ids], dtype=torch.long, device=self.device)
            for _ in range(n):
                if self.recurrent:
                    logits, _, state = self.model(x, state=state)
                else:
                    window = self.model.max_context or self.context
                    logits, _, _ = self.model(torch.tensor([ids[-window:]], dtype=torch.long, device=self.device))
                probs = torch.softmax(logits[0, -1].float().cpu() / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
                ids.append(nxt)
                x = torch.tensor([[nxt]], dtype=torch.long, device=self.device)
        if was_training:
            self.model.train()
        text = tok.decode(ids[start:])
        event = P.SampleText(job=self.job, step=self.step, prompt=prompt, text=text, copied=self._copied(text))
        self.emit(event)
        return event

    @torch.no_grad()
    def _task_sample(self, prompt: str = "") -> P.SampleText | None:
        """seq2seq: greedy output for ``prompt`` (default: the first validation source). mlm: blanks
        (``_``) filled greedily in ``prompt`` (default: every 7th token of the validation text blanked)."""
        from engine.generation.generate import fill_blanks, seq2seq_decode
        from engine.generation.processors import SamplingSettings

        tok = self.tokenizer
        was_training = self.model.training
        self.model.eval()
        try:
            with self._rng_guard():
                if self.task == "seq2seq":
                    shown = prompt or tok.decode(self.val_pairs[0][0])
                    out = seq2seq_decode(self.model, tok, shown, SamplingSettings(temperature=0.0))
                    text = tok.decode(out)
                elif prompt:
                    shown, text = prompt, fill_blanks(self.model, tok, prompt)[0]
                else:
                    ids = np.asarray(self.data.val_ids[: min(self.context, 64)], dtype=np.int64)
                    blank = np.arange(len(ids)) % 7 == 3
                    x = torch.from_numpy(ids)[None].to(self.device)
                    filled = self.model.fill_mask(x, torch.from_numpy(blank)[None].to(self.device))[0].tolist()
                    shown = "".join("_" if b else tok.decode([int(i)]) for i, b in zip(ids, blank))
                    text = tok.decode(filled)
        except SeqplayError as err:  # a bad prompt from the user: report it, keep training
            self.emit(P.ErrorEvent(job=self.job, message=str(err), fatal=False))
            return None
        finally:
            if was_training:
                self.model.train()
        event = P.SampleText(job=self.job, step=self.step, prompt=shown, text=text)
        self.emit(event)
        return event

    def _copied(self, text: str, minimum: int = 20) -> str:
        """Longest span of ``text`` (>= ``minimum`` chars) found verbatim in the training text."""
        if len(text) < minimum:
            return ""
        try:
            from engine.insight.memorization import TrainingIndex

            if self._train_index is None:
                self._train_index = TrainingIndex(self._training_text())
            s, n = self._train_index.longest_span(text)
            span = text[s : s + n]
        except ImportError:
            train, span = self._training_text(), ""
            lo, hi = minimum, len(text)
            while lo <= hi:  # binary search on the length: a copied span of length L has all shorter ones
                mid = (lo + hi) // 2
                hit = next((text[i : i + mid] for i in range(len(text) - mid + 1) if text[i : i + mid] in train), None)
                if hit is None:
                    hi = mid - 1
                else:
                    span, lo = hit, mid + 1
        return span if len(span) >= minimum else ""

    def _training_text(self) -> str:
        if self._train_text is None:
            self._train_text = self.data.source.text()[: self.data.train_chars][:4_000_000]
        return self._train_text

    # ----------------------------------------------------------------------------------- commands
    def _poll(self, timeout: float) -> None:
        if self.control is None:
            return
        for cmd in self.control(timeout):
            self.handle(cmd)

    def handle(self, cmd: P.Command) -> None:
        """Apply one control command (between steps)."""
        if isinstance(cmd, P.Pause):
            if not self.paused:
                self.paused = True
                self._flush(force=True)
                self.emit(P.StateChanged(job=self.job, state="paused", reason="paused by you"))
                self._summary("paused")
        elif isinstance(cmd, P.Resume):
            if self.paused:
                self.paused = False
                self.emit(P.StateChanged(job=self.job, state="running"))
                self._summary("running")
        elif isinstance(cmd, P.SingleStep):
            self._single = True
        elif isinstance(cmd, P.Stop | P.Shutdown):
            self._stop = "stopped"
            self._stop_save = getattr(cmd, "save", True)
        elif isinstance(cmd, P.SaveNow):
            self.save(force=False)
        elif isinstance(cmd, P.SetLearningRate):
            if not (cmd.lr > 0 and math.isfinite(cmd.lr)):
                self.emit(P.ErrorEvent(job=self.job, message=f"learning rate must be a positive number, got {cmd.lr}"))
                return
            self.base_lr, self.plateau_scale = float(cmd.lr), 1.0
            self.log(f"learning rate set to {cmd.lr:.3g} (the schedule continues from it)")
        elif isinstance(cmd, P.SampleNow):
            self.sample(cmd.prompt, cmd.max_tokens)
        elif self.on_command is not None:
            self.on_command(cmd)

    # ------------------------------------------------------------------------------------ guard rail
    def _on_blowup(self) -> bool:
        """Handle a NaN/inf/exploding step. True: carry on (rolled back); False: paused or ending."""
        loss_v, norm_v, lr = self._blowup
        what = "NaN" if math.isnan(loss_v) else ("infinite" if math.isinf(loss_v) else f"{loss_v:.3g}")
        if math.isfinite(loss_v) and not math.isfinite(norm_v):
            what = f"{loss_v:.3g} with an infinite gradient"
        steps = step_checkpoints(self.run_dir) if self.run_dir else []
        last = steps[-1][1].name if steps else None
        self.state = None if self.recurrent else self.state
        if self.config.auto_rollback and last and self.rollbacks < MAX_ROLLBACKS:
            self.rollbacks += 1
            self._rollback(steps[-1][1])
            self.base_lr *= 0.5
            self.log(f"loss became {what} at step {self.step + 1}: rolled back to {last} and halved the learning rate to {self.base_lr:.3g}", "warning")
            return True
        self.tainted = self.tainted or math.isfinite(loss_v)
        remedy = (
            "training paused; lower the learning rate (l) and resume (p), or train again with auto-rollback"
            if self.pause_on_error
            else "training stopped; train again with a lower --lr, or add --auto-rollback"
        )
        message = (
            f"loss became {what} at step {self.step + 1} (learning rate {lr:.3g} is probably too high): {remedy}"
            + (f"; the last good checkpoint {last} is kept" if last else "")
        )
        self._flush(force=True)
        self.emit(P.ErrorEvent(job=self.job, message=message, fatal=False))
        if self.pause_on_error:
            self.paused = True
            self.emit(P.StateChanged(job=self.job, state="paused", reason=message))
            self._summary("paused")
            return False
        self._stop, self._stop_save = "error", False
        return False

    def _rollback(self, json_path: Path) -> None:
        meta, tensors = read_checkpoint(json_path)
        self._resume_path = json_path
        base = self.base_lr
        self._restore(meta, tensors)
        self.base_lr = min(base, self.base_lr)
        self.tainted = False

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
            if self._tb is not None:
                self._tb.close()

    def _fail(self, message: str) -> P.Finished:
        self._flush(force=True)
        self.emit(P.ErrorEvent(job=self.job, message=message, fatal=False))
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
            start_step=self.step, val_unk_share=self.data.unk_share() if self.task == "lm" else 0.0,
        ))
        for attr in ("_pending_log", "_pending_compile", "_pending_tb"):
            if hasattr(self, attr):
                self.log(getattr(self, attr), "warning")
        if hasattr(self, "_task_note"):
            self.log(self._task_note)
        if self.task == "mlm":
            self.log("masked LM: validation loss is over masked positions (same masks every evaluation); "
                     "bits/char is not reported (NaN): the model never predicts the text left to right")
        self.log(f"{cfg.arch}: {self.n_params:,} parameters on {self.device} ({self.precision}, {self.threads} threads)")
        if getattr(self.data, "split_rule", ""):
            unk = self.data.unk_share()
            self.log(self.data.split_rule + (f"; <unk> is {unk:.1%} of the validation tokens" if unk else ""))
        self._summary("running")

    def _budget_left(self) -> str | None:
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
        fresh = self.step == 0
        if fresh:
            self.save()  # a step-0 checkpoint: something good to fall back to from the very first step
        self.model.train()
        self._last_flush = time.perf_counter()
        reason: str | None = None
        while True:
            self._poll(0.0)
            if self.idle is not None:
                self.idle()
            if self._stop:
                reason = self._stop
                break
            reason = self._budget_left()
            if reason:
                break
            if self.paused and not self._single:
                self._flush(force=True)
                self._poll(0.05)
                if self.control is None:
                    time.sleep(0.05)
                continue
            self._single = False
            t0 = time.perf_counter()
            result = self.train_step()
            dt = time.perf_counter() - t0
            self.elapsed += dt
            if result is None:
                if not self._on_blowup() and self._stop:
                    reason = self._stop
                    break
                continue
            loss_v, norm_v, lr, tokens = result
            if self.tainted and loss_v < self.explode_at:
                self.tainted = False
            self._points.append(P.StepPoint(step=self.step, loss=loss_v, lr=lr, grad_norm=norm_v,
                                            tokens_per_s=tokens / dt if dt > 0 else 0.0, elapsed=self.elapsed,
                                            tokens_seen=self.tokens_seen))
            if self._tb is not None:
                self._tb.add_scalar("train/loss", loss_v, self.step)
                self._tb.add_scalar("train/lr", lr, self.step)
            self._flush()
            self._periodic(loss_v)
        return self._finish(reason)

    def _periodic(self, train_loss: float) -> None:
        cfg = self.config
        at_eval = self.step % cfg.eval_every == 0
        if at_eval:
            self._flush(force=True)
            before = self.best_val_loss
            ev = self.evaluate()
            if cfg.checkpoint_every is None:
                self.save(best=ev.best and ev.val_loss != before)
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save(best=at_eval and self._last_eval_step == self.step and self.best_val_loss == self.last_val_loss)
        if cfg.sample_every and self.step % cfg.sample_every == 0:
            self._flush(force=True)
            self.sample()

    def _finish(self, reason: str) -> P.Finished:
        self._flush(force=True)
        if reason != "error" and not self.tainted:
            if self._last_eval_step != self.step and self.step > 0:
                ev = self.evaluate()
                best = ev.best
            else:
                best = False
            if self._stop_save:
                self.save(best=best)
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
        if test is None or len(test) <= self.context or self.task != "lm" or not self.trainable:
            return None
        loss = float(self.evaluate(test))
        bpc = bits_per_char(loss, len(test), self.data.test_chars)
        unk = self.data.unk_share(test)
        self.log(f"test: loss {loss:.4f}, ppl {math.exp(min(loss, 700)):.2f}, {bpc:.3f} bits/char over all "
                 f"{len(test):,} test tokens" + (f" (<unk> {unk:.1%} of them)" if unk else ""))
        return loss

    def _fit_counts(self) -> P.Finished:
        """Count-based models (n-gram): ``fit`` on the training ids, one evaluation, one checkpoint."""
        t0 = time.perf_counter()
        self.model.fit(self.data.train_ids)
        self.elapsed += time.perf_counter() - t0
        self.step, self.tokens_seen = 1, len(self.data.train_ids)
        ev = self.evaluate()
        self.save(best=ev.best)
        self._summary("finished")
        fin = P.Finished(job=self.job, step=self.step, reason="done", best_val_loss=self.best_val_loss, run_dir=str(self.run_dir))
        self.emit(fin)
        return fin


def train(config: TrainConfig, emit: Callable[[P.Event], None] | None = None, **kwargs: Any) -> P.Finished:
    """Convenience: run a Trainer to the end and return its Finished event."""
    return Trainer(config, emit or (lambda e: None), **kwargs).run()
