"""What a checkpoint of a training run holds, and how it is put back: exact resume.

    meta (JSON)     arch, model/train config, tokenizer, step, tokens, elapsed wall time, best/last
                    validation, the schedule with its horizon, optimizer scalars, batcher position
    tensors         model.*, optim.<param>.<key> (moments), rng.torch (rng.cuda), state.<i> (the
                    carried recurrent state)

``capture`` and ``restore`` are inverses: a run restored from a checkpoint takes the same next steps
as the run that wrote it. Writing, pruning and the jail rules are ``engine.runs.checkpoint``'s.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.errors import CheckpointError
from engine.runs.checkpoint import load_model_state
from engine.training.schedule import Schedule

if TYPE_CHECKING:
    from engine.training.trainer import Trainer


def capture(t: Trainer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(meta, tensors) of the trainer as it is now."""
    opt_meta: dict[str, Any] = {}
    tensors = {f"model.{k}": v for k, v in t.model.state_dict().items()}
    if t.optimizer is not None:
        sd = t.optimizer.state_dict()
        opt_meta["param_groups"] = sd["param_groups"]
        opt_meta["scalars"] = {str(pid): {k: v for k, v in st.items() if not isinstance(v, torch.Tensor)}
                               for pid, st in sd["state"].items()}
        opt_meta["tensor_keys"] = {str(pid): [k for k, v in st.items() if isinstance(v, torch.Tensor)]
                                   for pid, st in sd["state"].items()}
        for pid, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optim.{pid}.{k}"] = v
    tensors["rng.torch"] = torch.get_rng_state()
    if t.device.startswith("cuda"):
        tensors["rng.cuda"] = torch.cuda.get_rng_state(t.device)
    carried = t.task.carried()
    for i, x in enumerate(carried):
        tensors[f"state.{i}"] = x
    meta = {
        "arch": t.config.arch,
        "model_config": t.model_config.to_dict(),
        "train_config": t.config.to_dict(),
        "tokenizer": t.tokenizer.to_dict(),
        "step": t.step,
        "tokens_seen": t.tokens_seen,
        "elapsed": t.elapsed,
        "best_val_loss": t.best_val_loss,
        "best_val_bpc": t.best_val_bpc,
        "last_val_loss": t.last_val_loss,
        "schedule": t.schedule.state_dict(),
        "optimizer": opt_meta,
        "batcher": t.task.batcher.state_dict() if t.task.batcher is not None else None,
        "carried_state": len(carried) if carried else None,
        "params": t.n_params,
        "device": t.device,
        "precision": t.precision,
        "saved": time.time(),
    }
    return meta, tensors


def restore(t: Trainer, meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Put model, optimizer, RNG, batcher, carried state and schedule back as ``path`` saved them.
    Every tensor is checked against what the live objects expect first (engine.runs.checks)."""
    from engine.runs.checks import check_resume_state

    check_resume_state(meta, tensors, path, model=t.model, optimizer=t.optimizer, batcher=t.task.batcher,
                       batch_size=t.config.batch_size, device=t.device)
    load_model_state(t.model, tensors, path)
    broken = [name for name, p in t.model.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        raise CheckpointError(f"{path.name} holds non-finite weights ({', '.join(broken[:3])}"
                              f"{' and more' if len(broken) > 3 else ''}): the checkpoint is broken, not the "
                              "learning rate; resume from an earlier checkpoint of the run")
    try:
        if t.optimizer is not None and meta.get("optimizer"):
            om = meta["optimizer"]
            state: dict[int, dict[str, Any]] = {}
            for pid, keys in om.get("tensor_keys", {}).items():
                state[int(pid)] = {k: tensors[f"optim.{pid}.{k}"] for k in keys}
            for pid, scalars in om.get("scalars", {}).items():
                state.setdefault(int(pid), {}).update(scalars)
            t.optimizer.load_state_dict({"state": state, "param_groups": om["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and t.device.startswith("cuda"):
            torch.cuda.set_rng_state(tensors["rng.cuda"], t.device)
        if t.task.batcher is not None and meta.get("batcher") is not None:
            t.task.batcher.load_state_dict(meta["batcher"])
        n_state = int(meta.get("carried_state") or 0)
        t.task.load_carried([tensors[f"state.{i}"] for i in range(n_state)])
        t.step = int(meta["step"])
        t.tokens_seen = int(meta.get("tokens_seen", 0))
        t.elapsed = float(meta.get("elapsed", 0.0))
        t.best_val_loss = meta.get("best_val_loss")
        t.best_val_bpc = meta.get("best_val_bpc")
        t.last_val_loss = meta.get("last_val_loss")
        saved_config = meta.get("train_config") or {}
        t.schedule = Schedule.from_state(meta.get("schedule") or {}, _Saved(t.config, saved_config), t.schedule.base_lr)
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path.name} cannot be resumed ({type(err).__name__}: {str(err)[:80]}); "
                              "use an earlier checkpoint") from None
    if not all(math.isfinite(v) for v in (t.schedule.base_lr, t.schedule.plateau_scale)):
        raise CheckpointError(f"{path.name} holds a non-finite learning rate ({t.schedule.base_lr}); "
                              "resume from an earlier checkpoint of the run")


class _Saved:
    """The run's config as it was saved (before resume overrides): what an old checkpoint's horizon
    is planned from."""

    def __init__(self, live: Any, saved: dict[str, Any]):
        self._live, self._saved = live, saved

    def __getattr__(self, name: str) -> Any:
        return self._saved.get(name, getattr(self._live, name))
