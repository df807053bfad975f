"""Optimizers: which one, at which default learning rate, and what weight decay means for each.

Two different regularisers, named as the literature names them (Loshchilov & Hutter 2019)::

    weight decay (decoupled, AdamW only):  theta <- theta - lr * (update(g) + lambda * theta)
    L2 penalty (--l2, the others):         g <- g + lambda * theta, then the optimizer's update

Only AdamW defines decoupled decay, so ``weight_decay`` applies to AdamW alone (default 0.1) and is
refused for the others; ``l2`` is the L2 penalty (PyTorch's ``weight_decay`` argument of SGD, Adam,
RMSprop and Adagrad), 0 by default and refused for AdamW. Either acts on matrices only (dim >= 2):
biases and LayerNorm gains are never decayed. Torch-free at import (TrainConfig.validate uses it). Every optimizer learns at its default learning rate
(``DEFAULT_LR``; None: the architecture's, about Adam's scale). docs/training.md has the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    import torch

ADAM_BETAS = (0.9, 0.95)  # nanoGPT's; PyTorch's default is (0.9, 0.999)
DEFAULT_WEIGHT_DECAY = 0.1  # AdamW's decoupled decay when --weight-decay is not given
# Default learning rates for optimizers whose scale differs from Adam's (None: the architecture's).
DEFAULT_LR: dict[str, float | None] = {"adamw": None, "adam": None, "rmsprop": None, "sgd": 0.5, "adagrad": 0.03}
# SGD on recurrent models (with the default --clip 1) learns much faster at a larger step (docs/training.md).
SGD_LR_BY_FAMILY = {"recurrent": 2.0}


def default_lr(config: Any) -> float:
    """The learning rate a run uses: ``config.lr``, else the optimizer's default, else the arch's."""
    from engine.models.registry import get_arch

    if config.lr is not None:
        return float(config.lr)
    info = get_arch(config.arch)
    if config.optimizer == "sgd" and info.family in SGD_LR_BY_FAMILY:
        return SGD_LR_BY_FAMILY[info.family]
    return DEFAULT_LR.get(config.optimizer) or info.default_lr or 1e-3


def decay_settings(config: Any) -> tuple[float, float]:
    """(decoupled weight decay, L2 coefficient) for ``config``; refuses a regulariser the chosen
    optimizer does not define (one line saying which one it has)."""
    name = config.optimizer
    wd = getattr(config, "weight_decay", None)
    l2 = float(getattr(config, "l2", 0.0) or 0.0)
    if name == "adamw":
        if l2:
            raise ConfigError(f"--l2 {l2:g} is an L2 penalty; adamw decays weights decoupled instead: use --weight-decay "
                              f"{l2:g}, or --optimizer adam with --l2")
        return (DEFAULT_WEIGHT_DECAY if wd is None else float(wd)), 0.0
    if wd:
        raise ConfigError(f"--weight-decay is AdamW's decoupled decay and {name} has none; use --optimizer adamw, "
                          f"or --l2 {float(wd):g} for an L2 penalty added to the gradient")
    return 0.0, l2


def build_optimizer(name: str, params: list[torch.nn.Parameter], lr: float, config: Any) -> torch.optim.Optimizer:
    """SGD (momentum ``config.momentum``), Adam, AdamW (betas ``ADAM_BETAS``), RMSprop, Adagrad, with
    the decay of ``decay_settings`` on matrices only. Adam/AdamW use the fused kernel where available
    (one kernel over all parameters), else foreach."""
    import torch

    decoupled, l2 = decay_settings(config)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    lam = decoupled if name == "adamw" else l2  # torch's weight_decay: decoupled in AdamW, L2 elsewhere
    groups = [{"params": decay, "weight_decay": lam}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        try:
            return cls(groups, lr=lr, betas=ADAM_BETAS, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return cls(groups, lr=lr, betas=ADAM_BETAS, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.99, momentum=0.0, foreach=True)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, foreach=True)
    raise ConfigError(f"unknown optimizer {name!r}; choose adamw, adam, sgd, rmsprop or adagrad")
