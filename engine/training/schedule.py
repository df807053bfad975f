"""The learning-rate schedule of a run, with its horizon fixed when the run starts.

    warmup (cosine, plateau):  lr(k) = base * (k + 1) / W                          k < W
    cosine:                    lr(k) = low + (base - low) * (1 + cos(pi * p)) / 2,  low = base * min_lr_ratio
                               p = clamp(max((k - W) / (S - W), t / T), 0, 1)
    constant:                  lr(k) = base
    plateau:                   lr(k) = base * 0.5^h, h = halvings after 2 evaluations without improvement

k is the 0-based step about to be taken, W the warmup steps (``--warmup``, at most a tenth of S),
S the step horizon (``--steps``), t the run's wall time so far and T the time horizon (``--time``);
a horizon that is not set drops out of the max. The horizon (W, S, T) is decided once, at the start of
a run, and saved in every checkpoint: resuming continues exactly the same curve, whatever budget the
resumed run is given.

Extending a run past its horizon (``seqplay resume RUN --steps N`` with N beyond S, or a longer
``--time``) is allowed and follows one rule: the horizon stays, so p stays at 1 and every further step
runs at the schedule's final learning rate (cosine: ``low``; constant: ``base``; plateau: as it is).
The trainer logs that line when it happens. A new curve needs a new run (or ``--lr`` from the app).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Schedule:
    kind: str  # constant | cosine | plateau
    base_lr: float
    warmup: int  # W, already clamped to a tenth of the step horizon
    total_steps: int | None  # S (None: no step horizon)
    time_budget: float | None  # T in seconds of wall time (None: no time horizon)
    min_lr_ratio: float = 0.1
    plateau_scale: float = 1.0
    plateau_bad: int = 0

    @classmethod
    def plan(cls, config: Any, base_lr: float) -> Schedule:
        """The schedule a new run starts with (its horizon from ``--steps``/``--time``/``--warmup``)."""
        steps = int(config.steps) if config.steps else None
        budget = float(config.time_budget) if config.time_budget else None
        warm = min(int(config.warmup), steps // 10) if steps else int(config.warmup)
        return cls(config.schedule, float(base_lr), warm, steps, budget, float(config.min_lr_ratio))

    @classmethod
    def from_state(cls, state: dict[str, Any], config: Any, base_lr: float) -> Schedule:
        """The schedule saved in a checkpoint. Checkpoints from before the horizon was saved only hold
        base_lr and the plateau state: their horizon is planned from the run's saved config."""
        planned = cls.plan(config, float(state.get("base_lr", base_lr)))
        fields = {k: state[k] for k in ("kind", "warmup", "total_steps", "time_budget", "min_lr_ratio") if k in state}
        sched = cls(**{**asdict(planned), **fields})
        sched.plateau_scale = float(state.get("plateau_scale", 1.0))
        sched.plateau_bad = int(state.get("plateau_bad", 0))
        return sched

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def progress(self, step: int, elapsed: float) -> float | None:
        """p in [0, 1] after warmup (None: no horizon at all)."""
        parts = []
        if self.total_steps:
            parts.append((step - self.warmup) / max(1, self.total_steps - self.warmup))
        if self.time_budget:
            parts.append(elapsed / self.time_budget)
        return min(1.0, max(0.0, max(parts))) if parts else None

    def lr(self, step: int, elapsed: float = 0.0) -> float:
        """Learning rate for the 0-based step about to be taken, ``elapsed`` seconds into the run."""
        base = self.base_lr * self.plateau_scale
        if self.kind == "constant":
            return base
        if self.warmup > 0 and step < self.warmup:
            return base * (step + 1) / self.warmup
        p = self.progress(step, elapsed)
        if self.kind == "cosine" and p is not None:
            low = base * self.min_lr_ratio
            return low + (base - low) * 0.5 * (1.0 + math.cos(math.pi * p))
        return base

    def beyond_horizon(self, steps: int | None, time_budget: float | None) -> bool:
        """Whether a budget reaches past the horizon (extending the run: the final-LR rule applies)."""
        return bool((steps and self.total_steps and steps > self.total_steps)
                    or (time_budget and self.time_budget and time_budget > self.time_budget))

    def plateau(self, improved: bool) -> bool:
        """Record one evaluation; True when the learning rate was just halved."""
        if self.kind != "plateau":
            return False
        self.plateau_bad = 0 if improved else self.plateau_bad + 1
        if self.plateau_bad >= 2:
            self.plateau_scale *= 0.5
            self.plateau_bad = 0
            return True
        return False
