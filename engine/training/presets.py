"""Fast defaults: the settings ``seqplay train FILE`` uses for everything the user did not set.

A playground run should learn as fast as the machine allows without the user tuning anything, and
show what it picked before it starts (``preflight``). Torch-free: the CLI and the app call it before
the worker starts.

The rules (a setting the user gave always wins):

* Transformer language models train nanoGPT's shakespeare_char model shape (4 layers, 4 heads,
  width 128, context 64) with the recipe tuned in ``seqplay bench target``: batch 16, peak lr 3e-3
  (3x nanoGPT's), warmup 20 steps, cosine to 10%, dropout 0 while the run sees the training text
  fewer than ``DROPOUT_EPOCHS`` times (a short run cannot over-fit; dropout only slows it down).
* The Transformer's step budget (no ``--steps``, no ``--time``): about ``EPOCHS`` passes over the
  training tokens, between ``MIN_STEPS`` and ``MAX_STEPS`` (other architectures keep 2,000 steps). With ``--time`` the budget is the time and the
  cosine schedule follows the elapsed fraction of it.
* Evaluation costs at most about ``EVAL_SHARE`` of the training compute: an evaluation (forward
  only, about a third of a training step per token) over the validation tokens, as many times as
  that share allows (at least once, at the end), each over the whole validation split when it is
  small enough, else over as many batches as the share allows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.training.config import TrainConfig

EPOCHS = 1.2
MIN_STEPS, MAX_STEPS = 200, 5000
DROPOUT_EPOCHS = 2.0
EVAL_SHARE = 0.1
EVAL_COST = 1 / 3  # forward-only cost of a token relative to a training step's (forward + backward)
# Training throughput assumed when only a time budget is known (tokens/s; only the number of
# evaluations depends on it, never the schedule): the small Transformer in bf16 on a 2-core CPU.
ASSUMED_TOKENS_PER_S = 20_000.0

TRANSFORMER_FAST: dict[str, Any] = {
    "model": {"layers": 4, "heads": 4, "width": 128},
    "context": 64, "batch_size": 16, "lr": 3e-3, "warmup": 20, "schedule": "cosine", "min_lr_ratio": 0.1,
    "weight_decay": 0.1,
}


@dataclass(frozen=True)
class Choice:
    """One setting the defaults picked (not given by the user), and why."""

    name: str
    value: Any
    why: str


def fast_defaults(config: TrainConfig, given: set[str], train_tokens: int, val_tokens: int) -> tuple[TrainConfig, list[Choice]]:
    """``config`` with the fast defaults applied to every setting not in ``given`` (TrainConfig field
    names; model settings as ``model.<name>``), and the list of what was picked.

    ``train_tokens``/``val_tokens``: the prepared corpus' split sizes (``engine.data.sources.prepare``)."""
    from engine.models.registry import get_arch

    info = get_arch(config.arch)
    if info.task != "lm" or info.family == "count":
        return config, []
    changes: dict[str, Any] = {}
    model = dict(config.model)
    picked: list[Choice] = []

    if "model.context" in given:  # the model's own context setting wins over the run-level one
        given = given | {"context"}

    def pick(name: str, value: Any, why: str) -> None:
        if name in given:
            return
        if name.startswith("model."):
            model[name[6:]] = value
        else:
            changes[name] = value
        picked.append(Choice(name, value, why))

    if config.arch == "transformer":
        for key, value in TRANSFORMER_FAST.items():
            if key == "model":
                for mk, mv in value.items():
                    pick(f"model.{mk}", mv, "nanoGPT shakespeare_char shape")
            else:
                pick(key, value, "tuned recipe (seqplay bench target)")
    cur = dataclasses.replace(config, **changes, model=model)
    context = int(cur.context or cur.model.get("context") or info.make_config().to_dict().get("context", 64))
    per_step = cur.batch_size * cur.grad_accum * context
    if cur.time_budget:
        planned_steps = max(1, int(cur.time_budget * ASSUMED_TOKENS_PER_S / per_step))
        if "steps" not in given:
            pick("steps", None, f"the {cur.time_budget:g} s budget ends the run; cosine follows its elapsed fraction")
    elif ("steps" in given and cur.steps) or config.arch != "transformer":
        planned_steps = int(cur.steps or MAX_STEPS)  # other archs keep their step default (not tuned yet)
    else:
        planned_steps = int(min(MAX_STEPS, max(MIN_STEPS, round(EPOCHS * train_tokens / per_step))))
        pick("steps", planned_steps, f"about {EPOCHS:g} passes over the {train_tokens:,} training tokens")
    epochs = planned_steps * per_step / max(1, train_tokens)
    if config.arch == "transformer":
        pick("model.dropout", 0.0 if epochs < DROPOUT_EPOCHS else 0.1,
             f"{epochs:.1f} passes over the data" + (": too few to over-fit" if epochs < DROPOUT_EPOCHS else ""))
    # evaluation: at most EVAL_SHARE of the training compute
    train_cost = planned_steps * per_step
    eval_tokens = max(1, val_tokens)
    n_evals = max(1, int(EVAL_SHARE * train_cost / (EVAL_COST * eval_tokens)))  # the last one at the end
    # the whole validation split every time (issue 13: figures on the whole split unless asked): the
    # budget is kept by evaluating less often, never by scoring a sample
    every = max(1, planned_steps // n_evals)
    pick("eval_every", every, f"{n_evals} evaluation(s), about {EVAL_SHARE:.0%} of the compute")
    pick("sample_every", every, "a sample at each evaluation")
    return dataclasses.replace(cur, **changes, model=model).validate(), picked


def given_settings(params: dict[str, bool], model_keys: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """TrainConfig names the user set, from ``{cli parameter name: given?}`` (the shared model flags
    map to ``model.<name>``) plus ``model_keys``, the model settings given another way (``--set``)."""
    model_flags = {"layers", "width", "embed", "heads", "dropout"}
    out = {f"model.{k}" for k in model_keys}
    for name, was_given in params.items():
        if was_given:
            out.add(f"model.{name}" if name in model_flags else name)
    return out


def describe_model(config: TrainConfig, vocab_size: int) -> tuple[str, int]:
    """("transformer 4 layers x width 128, 4 heads, context 64, dropout 0", parameter count) of the
    model a language-model config builds (``ModelConfig.num_params``, the registry's count)."""
    from engine.models.registry import make_config

    overrides = dict(config.model)
    if config.context is not None:
        overrides["context"] = config.context
    mcfg = make_config(config.arch, vocab_size, **overrides)
    d = mcfg.to_dict()
    parts = [f"order {d['order']}" if "order" in d else "", f"{d['layers']} layers" if "layers" in d else "", f"width {d['width']}" if "width" in d else "",
             f"{d['heads']} heads" if "heads" in d else "", f"context {d['context']}" if "context" in d else "",
             f"dropout {d['dropout']:g}" if "dropout" in d else ""]
    return f"{config.arch} " + ", ".join(p for p in parts if p), int(mcfg.num_params())


def describe_context(config: TrainConfig) -> int | None:
    """The architecture's default window (None for models without one)."""
    from engine.models.registry import get_arch

    return get_arch(config.arch).make_config().to_dict().get("context")


def preflight(config: TrainConfig, picked: list[Choice], train_tokens: int, val_tokens: int,
              vocab_size: int, override: str = "give a flag to override") -> list[tuple[str, str]]:
    """What the run will do, as (label, value) rows: model, data, optimisation, budget, evaluation,
    and which of them the defaults chose (``override``: how to set one yourself). Torch-free: the
    app's Model pane shows the same rows."""
    auto = {c.name for c in picked}
    model_line, params = describe_model(config, vocab_size)
    ctx = config.context or config.model.get("context") or describe_context(config)
    lr = f"{config.lr:g}" if config.lr is not None else "architecture default"
    if config.schedule == "cosine":
        sched = f"cosine (warmup {config.warmup}, down to {config.min_lr_ratio:g}x)"
    else:
        sched = config.schedule
    if config.steps:
        budget = f"{config.steps:,} steps" + (f" or {config.time_budget:g} s" if config.time_budget else "")
    else:
        budget = f"{config.time_budget:g} s" if config.time_budget else "until stopped"
    per_eval = val_tokens if config.eval_batches is None else min(
        val_tokens, config.eval_batches * config.batch_size * int(ctx or 1))
    from engine.models.registry import get_arch

    data_row = ("data", f"{train_tokens:,} training / {val_tokens:,} validation tokens, vocabulary {vocab_size:,}")
    if get_arch(config.arch).family == "count":
        return [("model", model_line + " (counts: fit once, no steps)"), data_row]
    rows = [
        ("model", f"{model_line}, {params:,} parameters"),
        data_row,
        ("batch", f"{config.batch_size} x {ctx if ctx else 'default'} tokens" + (f" x {config.grad_accum}" if config.grad_accum > 1 else "")),
        ("optimizer", f"{config.optimizer}, lr {lr}, {sched}, " + _regulariser(config)),
        ("budget", budget),
        ("evaluation", f"every {config.eval_every:,} steps and at the end, "
                       + ("whole validation split" if per_eval >= val_tokens else f"{per_eval:,} of {val_tokens:,} validation tokens")),
        ("machine", f"device {config.device}, precision {config.precision}, threads {config.threads or 'auto'}"),
    ]
    if auto:
        rows.append(("fast defaults", ", ".join(sorted(auto)) + f" ({override})"))
    return rows


def _regulariser(config: Any) -> str:
    """The weight decay or L2 the optimizer will use (``engine.training.optim.decay_settings``)."""
    from engine.training.optim import decay_settings

    try:
        decay, l2 = decay_settings(config)
    except Exception:  # noqa: BLE001 - validate() reports a bad pair; the summary stays printable
        return "weight decay ?"
    return f"L2 {l2:g}" if l2 else f"weight decay {decay:g}"
