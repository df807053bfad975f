"""Guard rails: a step whose loss or gradient is NaN, infinite or explodes is never applied, and the
message says what caused it, checked in this order:

1. bad settings: a learning rate, weight decay, L2, momentum or clip that is not a finite number;
2. a broken checkpoint: weights that are already non-finite before the step (on resume they are
   refused at load by ``engine.training.state``; here: weights broken in memory);
3. bad data: the weights are finite and the rows that give a non-finite loss are ones the task can
   name as unusual (e.g. a seq2seq pair with an empty source);
4. otherwise the learning rate: with finite weights, settings and data, the loss grew out of range.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from engine.device import autocast
from engine.runs.checkpoint import read_checkpoint, step_checkpoints

if TYPE_CHECKING:
    from pathlib import Path

    from engine.training.trainer import Trainer

MAX_ROLLBACKS = 5


def bad_setting(t: Trainer, lr: float) -> str | None:
    """The first non-finite setting that reaches the optimizer, as a sentence, or None."""
    cfg = t.config
    checks = [("learning rate", t.schedule.base_lr), ("learning rate", lr), ("weight decay", cfg.weight_decay),
              ("l2", cfg.l2), ("momentum", cfg.momentum), ("clip", cfg.clip)]
    for name, value in checks:
        if value is not None and not math.isfinite(float(value)):
            return f"the {name} is {value}, not a finite number"
    return None


def broken_weights(t: Trainer) -> list[str]:
    return [name for name, p in t.model.named_parameters() if not bool(torch.isfinite(p).all())]


@torch.no_grad()
def bad_rows(t: Trainer, batch: Any) -> list[int]:
    """Rows of ``batch`` whose own loss is not finite (each row run alone, in eval mode)."""
    if batch is None:
        return []
    rows = []
    was = t.model.training
    t.model.eval()
    try:
        with t.rng_guard():
            for r in range(batch.tensors[0].size(0)):
                one = batch.slice(r, r + 1)
                with autocast(t.device, t.precision):
                    loss = t.task.loss(t.model, one) if t.task.name != "lm" or not t.task.recurrent else None
                if loss is not None and not bool(torch.isfinite(loss)):
                    rows.append(r)
    finally:
        if was:
            t.model.train()
    return rows


def diagnose(t: Trainer, loss_v: float, norm_v: float, lr: float) -> tuple[str, str]:
    """(cause, remedy) of a blown-up step."""
    setting = bad_setting(t, lr)
    if setting:
        return f"bad settings: {setting}", "give a finite positive value (e.g. --lr 1e-3)"
    broken = broken_weights(t)
    if broken:
        where = f" since step {t.step}" if t.step else ""
        return (f"the weights are broken{where} (non-finite {', '.join(broken[:3])})",
                "resume from an earlier checkpoint of the run")
    if not math.isfinite(loss_v):
        rows = bad_rows(t, getattr(t, "last_batch", None))
        described = t.task.describe_rows(t.last_batch, rows) if rows else None
        if described:
            return f"bad data: {described}", "fix or remove those lines of the data and train again"
    return (f"learning rate {lr:.3g} is probably too high", "")


def on_blowup(t: Trainer, loss_v: float, norm_v: float, lr: float) -> bool:
    """Handle a NaN/inf/exploding step. True: carry on (rolled back); False: paused or ending."""
    what = "NaN" if math.isnan(loss_v) else ("infinite" if math.isinf(loss_v) else f"{loss_v:.3g}")
    if math.isfinite(loss_v) and not math.isfinite(norm_v):
        what = f"{loss_v:.3g} with an infinite gradient"
    cause, remedy = diagnose(t, loss_v, norm_v, lr)
    steps = step_checkpoints(t.run_dir) if t.run_dir else []
    last = steps[-1][1].name if steps else None
    t.task.reset_carried()
    lr_cause = cause.startswith("learning rate")
    if lr_cause and t.config.auto_rollback and last and t.rollbacks < MAX_ROLLBACKS:
        t.rollbacks += 1
        rollback(t, steps[-1][1])
        t.schedule.base_lr *= 0.5
        t.log(f"loss became {what} at step {t.step + 1}: rolled back to {last} and halved the learning rate to "
              f"{t.schedule.base_lr:.3g}", "warning")
        return True
    t.tainted = t.tainted or math.isfinite(loss_v) or bool(broken_weights(t))
    if lr_cause:
        remedy = ("training paused; lower the learning rate (l) and resume (p), or train again with auto-rollback"
                  if t.pause_on_error else "training stopped; train again with a lower --lr, or add --auto-rollback")
    else:
        remedy = ("training paused; " if t.pause_on_error else "training stopped; ") + remedy
    message = (f"loss became {what} at step {t.step + 1} ({cause}): {remedy}"
               + (f"; the last good checkpoint {last} is kept" if last else ""))
    t.flush(force=True)
    t.emit_error(message)
    if t.pause_on_error:
        t.pause(message)
        return False
    t.stop_requested, t.stop_save = "error", False
    return False


def rollback(t: Trainer, json_path: Path) -> None:
    """Reload ``json_path`` in place (keeping the lower of the current and the saved learning rate)."""
    from engine.training.state import restore

    meta, tensors = read_checkpoint(json_path)
    base = t.schedule.base_lr
    restore(t, meta, tensors, json_path)
    t.schedule.base_lr = min(base, t.schedule.base_lr)
    t.mark_restored()
    t.tainted = False
