"""What a training run will be, known before torch is loaded: the model config it builds, its exact
parameter count, and a rough memory, speed and time estimate.

Torch-free. The trainer builds its model from ``plan_model``, and the app's Model pane shows
``parameter_count`` and ``estimate_run``: one owner for each of these facts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from engine.training.config import TrainConfig

# Ids a task appends to the tokenizer's vocabulary: mlm [MASK]; seq2seq pad, bos, eos.
TASK_EXTRA_IDS = {"mlm": 1, "seq2seq": 3}

# Sustained training throughput assumed per device kind (FLOP/s): deliberately rough. CPU: about
# 2e10 per core, measured on this 2-core VM (transformer, width 128, 2 layers: ~20k tokens/s).
DEVICE_FLOPS = {"cpu": 2.0e10 * max(1, min(os.cpu_count() or 1, 8)), "cuda": 2.0e13, "mps": 2.0e12}


def model_overrides(config: TrainConfig) -> dict[str, Any]:
    """The model-config overrides a TrainConfig asks for (its ``model`` dict plus ``context``)."""
    overrides = dict(config.model)
    if config.context is not None:
        overrides["context"] = config.context
    return overrides


def plan_model(config: TrainConfig, vocab_size: int) -> Any:
    """The validated model config a TrainConfig builds on a tokenizer of ``vocab_size`` ids (the
    task's extra ids are added here). Raises ConfigError on impossible sizes, before any allocation."""
    from engine.models.registry import get_arch, make_config

    extra = TASK_EXTRA_IDS.get(get_arch(config.arch).task, 0)
    return make_config(config.arch, vocab_size + extra, **model_overrides(config)).validate()


def parameter_count(config: TrainConfig, vocab_size: int) -> int:
    """Exact number of parameters of the model ``config`` trains on a tokenizer of ``vocab_size`` ids."""
    return int(plan_model(config, vocab_size).num_params())


@dataclass(frozen=True)
class Estimate:
    """A rough forecast of one run: memory of a training step, tokens/s and wall time on ``device``."""

    params: int
    memory_bytes: int
    tokens_per_s: float
    seconds: float | None
    device: str
    warning: str = ""


def estimate_run(config: TrainConfig, vocab_size: int, train_tokens: int | None = None,
                 device: str | None = None) -> Estimate:
    """Memory (``engine.device.estimate_training_memory``), speed (6·N + 12·L·T·W FLOPs per token at
    ``DEVICE_FLOPS``) and time (whichever of steps and time budget ends the run first)."""
    from engine.device import estimate_training_memory
    from engine.models.registry import get_arch

    mcfg = plan_model(config, vocab_size)
    info = get_arch(config.arch)
    params = int(mcfg.num_params())
    context = int(getattr(mcfg, "context", 1) or 1)
    width = int(getattr(mcfg, "width", 0) or getattr(mcfg, "embed", 0) or 1)
    layers = int(getattr(mcfg, "layers", 1) or 1)
    device = device or config.device
    memory = estimate_training_memory(params, config.batch_size, context, width, layers, int(mcfg.vocab_size),
                                      config.optimizer, family=info.family)
    flops_per_token = 6 * max(params, 1) + 12 * layers * context * width
    tokens_per_s = DEVICE_FLOPS.get(device.split(":")[0], DEVICE_FLOPS["cpu"]) / flops_per_token
    seconds = config.steps * config.batch_size * context / tokens_per_s if config.steps else None
    if config.time_budget:
        seconds = min(seconds, config.time_budget) if seconds else float(config.time_budget)
    warning = ""
    if train_tokens and params > 10 * train_tokens:
        warning = (f"the model has {params:,} parameters for {train_tokens:,} training tokens "
                   f"({params / train_tokens:.0f}x): it will memorise; use a smaller model or more text")
    if seconds is not None and not math.isfinite(seconds):
        seconds = None
    return Estimate(params, int(memory), tokens_per_s, seconds, device, warning)


def arch_fields(arch: str) -> list[tuple[str, Any]]:
    """(name, default) of the hyper-parameters architecture ``arch`` has and a user may set: the
    settings ``engine.models.registry.model_settings`` lists (their metadata says which archs use them)."""
    from engine.models.registry import model_settings

    return [(s.name, s.default) for s in model_settings(arch)]
