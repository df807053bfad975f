"""Vanishing and exploding gradients: ||dL_T/dh_t|| against the distance T - t.

For a window x_1 .. x_{T+1}, L_T = -log p(x_{T+1} | x_1..x_T) is the loss at the last position.

* Recurrent models (RNN, UGRNN, GRU, LSTM): the model is run token by token through its incremental
  path ``forward(x_t, state=s)``; before each step a zero "probe" tensor with ``requires_grad`` is added
  to the state entering it, so after one backward pass probe.grad = dL_T/dh_t, the total derivative
  through every later step. h_t is the state after reading x_t; the distance is d = T - t (d >= 1: the
  state that feeds the last output directly lives inside the model). The probe is on h only, the
  hidden state of every layer of a stacked model; for an LSTM the cell state c is not probed (dL/dc_t
  flows through it into the h_t of later steps, but its own norm is not part of the curve).
  In the linear case dL/dh_t = (W_h^T)^d dL/dh_T, so the norm shrinks or grows like the largest
  eigenvalue of W_h to the power d (the notes' proof sketch).
* The Transformer has no recurrent state: the probe is added to the token embeddings, the input of the
  residual stream, and d = T - t counts positions back from the last one (d = 0 included).

The curve is averaged over several windows (geometric mean, the right average on a log axis).
Gradient clipping rescales the whole gradient by min(1, c/||g||), so it caps explosion but leaves the
ratio between near and far distances -- the vanishing -- unchanged. With ``clip`` = c the curve is also
reported rescaled (``norm_clipped``): every distance times min(1, c/||g||), where ||g|| is the global
norm of the parameter gradient of sum_b L_T over the measured windows (a sum, not the training
batch's mean loss), i.e. the factor ``--clip c`` would apply to exactly that gradient.
"""

from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError

# Names accepted by ``--arch`` beyond the registry: registry arch + config overrides.
ARCH_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "rnn": ("rnn", {"nonlinearity": "tanh"}),
    "rnn-tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn-relu": ("rnn", {"nonlinearity": "relu"}),
    "irnn": ("rnn", {"nonlinearity": "relu", "identity_init": True}),
    "ugrnn": ("ugrnn", {}),
    "gru": ("gru", {}),
    "lstm": ("lstm", {}),
    "transformer": ("transformer", {}),
}


def _probe_state(state: Any, probes: list[torch.Tensor]) -> Any:
    """``state`` with a zero requires-grad tensor added to every floating tensor in it (kept in ``probes``)."""
    if isinstance(state, torch.Tensor):
        if not state.is_floating_point():
            return state
        probe = torch.zeros_like(state, requires_grad=True)
        probes.append(probe)
        return state + probe
    if isinstance(state, tuple):
        return tuple(_probe_state(s, probes) for s in state)
    if isinstance(state, list):
        return [_probe_state(s, probes) for s in state]
    if isinstance(state, dict):
        return {k: _probe_state(v, probes) for k, v in state.items()}
    return state


def _batch_norms(tensors: list[torch.Tensor], batch: int) -> torch.Tensor:
    """Per-window norm of the gradients of ``tensors``: recurrent states are (layers, B, H)."""
    total = torch.zeros(batch, dtype=torch.float64)
    for t in tensors:
        if t.grad is None:
            continue
        g = t.grad.detach().double()
        axis = 1 if g.dim() == 3 else 0
        g = g.movedim(axis, 0).reshape(batch, -1)
        total += (g * g).sum(dim=1)
    return total.sqrt()


def _token_embedding(model: nn.Module) -> nn.Embedding:
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    for m in embeddings:
        if m.num_embeddings == vocab:
            return m
    if embeddings:
        return embeddings[0]
    raise ConfigError("this model has no token embedding to measure gradients at; use a Transformer or an RNN")


def _param_grad_norm(model: nn.Module) -> float:
    sq = sum(float(p.grad.detach().double().pow(2).sum()) for p in model.parameters() if p.grad is not None)
    return math.sqrt(sq)


def gradient_norms(model: nn.Module, windows: torch.Tensor) -> dict[str, Any]:
    """||dL_T/dh_t|| per distance for each window of ``windows`` (B, T+1) int64.

    Returns ``distances`` (list of int), ``norms`` (B x len(distances) nested list) and
    ``param_grad_norm`` (global norm of the parameter gradient of sum_b L_T, before any clipping)."""
    if windows.dim() != 2 or windows.shape[1] < 3:
        raise ConfigError("gradient windows need at least 3 tokens; use a longer --distance")
    model.eval()
    model.zero_grad(set_to_none=True)
    x, target = windows[:, :-1], windows[:, -1]
    batch, length = x.shape
    device = next(model.parameters()).device
    x, target = x.to(device), target.to(device)
    if getattr(model, "recurrent", False):
        state = model.init_state(batch, device)
        per_step: list[list[torch.Tensor]] = []
        logits = None
        for t in range(length):
            probes: list[torch.Tensor] = []
            state = _probe_state(state, probes)
            per_step.append(probes[:1])  # h of every layer; an LSTM's c is state[1]
            logits, _, state = model(x[:, t : t + 1], state=state)
        loss = F.cross_entropy(logits[:, -1].float(), target, reduction="sum")
        loss.backward()
        # per_step[t] is h_{t-1} (0-based tokens): distance to the last position (length - 1) is length - t.
        norms = torch.stack([_batch_norms(p, batch) for p in per_step], dim=1)  # (B, length)
        distances = [length - t for t in range(length)]
    else:
        limit = getattr(model, "max_context", None)
        if limit is not None and length > limit:
            x = x[:, -limit:]
            length = limit
        probe = None

        def add_probe(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            nonlocal probe
            probe = torch.zeros_like(output, requires_grad=True)
            return output + probe

        handle = _token_embedding(model).register_forward_hook(add_probe)
        try:
            logits, _, _ = model(x)
        finally:
            handle.remove()
        loss = F.cross_entropy(logits[:, -1].float(), target, reduction="sum")
        loss.backward()
        assert probe is not None and probe.grad is not None
        norms = probe.grad.detach().double().pow(2).sum(dim=-1).sqrt()  # (B, length)
        distances = [length - 1 - t for t in range(length)]
    order = np.argsort(distances)
    norms_np = norms.cpu().numpy()[:, order]
    result = {
        "distances": [int(distances[i]) for i in order],
        "norms": norms_np.tolist(),
        "param_grad_norm": _param_grad_norm(model),
        "loss": float(loss.detach()) / batch,
    }
    model.zero_grad(set_to_none=True)
    return result


def summarize(norms: list[list[float]], distances: list[int], param_grad_norm: float,
              clip: float | None = None) -> dict[str, Any]:
    """Geometric mean over windows per distance (zeros floored at 1e-45), and the clipped curve."""
    arr = np.maximum(np.asarray(norms, dtype=np.float64), 1e-45)
    mean = np.exp(np.log(arr).mean(axis=0))
    out: dict[str, Any] = {"distances": distances, "norm": mean.tolist()}
    if clip is not None:
        scale = min(1.0, clip / param_grad_norm) if param_grad_norm > 0 else 1.0
        out["clip"] = clip
        out["clip_scale"] = scale
        out["norm_clipped"] = (mean * scale).tolist()
    return out


def random_windows(ids: np.ndarray, count: int, length: int, seed: int) -> torch.Tensor:
    """``count`` windows of ``length`` tokens from ``ids``, at seeded random offsets."""
    if len(ids) < length:
        raise ConfigError(f"the text has {len(ids)} tokens, fewer than the {length} a window needs; use a smaller --distance")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - length + 1, size=count)
    return torch.as_tensor(np.stack([np.asarray(ids[s : s + length], dtype=np.int64) for s in starts]))


def fresh_model(name: str, vocab_size: int, seed: int, identity_init: bool = False,
                **overrides: Any) -> tuple[str, nn.Module]:
    """A freshly initialised model for an ``--arch`` name (aliases such as ``rnn-relu``, ``irnn``)."""
    from engine.models.registry import build_model, make_config

    if name not in ARCH_ALIASES:
        raise ConfigError(f"unknown architecture {name!r} for gradients; choose from {', '.join(ARCH_ALIASES)}")
    arch, extra = ARCH_ALIASES[name]
    settings = {**overrides, **extra}
    if identity_init and arch == "rnn":
        settings["identity_init"] = True
    torch.manual_seed(seed)
    model = build_model(arch, make_config(arch, vocab_size, **settings))
    return arch, model


def curve(model: nn.Module, ids: np.ndarray, distance: int, windows: int, seed: int,
          clip: float | None = None, float64: bool = True) -> dict[str, Any]:
    """The averaged gradient-through-time curve of one model over ``windows`` windows of ``ids``.

    ``float64`` runs the analysis in double precision (the model is converted in place) so that
    gradients of 1e-40 at long distances do not underflow to zero."""
    if float64:
        model.to(torch.float64)
    batch = random_windows(ids, windows, distance + 1, seed)
    raw = gradient_norms(model, batch)
    out = summarize(raw["norms"], raw["distances"], raw["param_grad_norm"], clip)
    out["param_grad_norm"] = raw["param_grad_norm"]
    out["loss"] = raw["loss"]
    return out


def gradients_report(archs: list[str], run: Any = None, source: str = "grammar", distance: int = 100,
                     windows: int = 8, seeds: int = 1, clip: float | None = None, identity_init: bool = False,
                     progress: Callable[[int, int, str], None] | None = None, cancel: threading.Event | None = None,
                     **overrides: Any) -> dict[str, Any]:
    """The ``seqplay gradients --json`` dict: one curve per fresh architecture (averaged over ``seeds``
    initialisations) or, with ``run`` (a run path, or a loaded model with ``model``, ``tokenizer``,
    ``config``; it is converted to float64 in place), the trained model and a fresh one of the same
    config. ``progress(done, total, message)`` reports each model; ``cancel`` is checked between them."""
    from engine.data.sources import prepare
    from engine.insight.analyses import check

    report = progress or (lambda _d, _t, _m: None)
    if distance < 2:
        raise ConfigError(f"--distance must be at least 2, got {distance}")
    curves = []
    if run is not None:
        from engine.models.registry import build_model

        if isinstance(run, str | os.PathLike):
            from engine.runs.checkpoint import load_model

            label_run = str(run)
            run = load_model(run)
        else:
            label_run = str(getattr(run, "path", "") or getattr(run, "run_dir", "") or "live model")
        cfg = run.config
        arch = getattr(run, "meta", {}).get("arch", cfg.arch)
        report(0, 3, f"tokenising {cfg.source}")
        data = prepare(cfg.source, cfg.tokenizer, cfg.vocab_size, cfg.val_fraction)
        ids = data.val_ids if len(data.val_ids) > distance + 1 else data.train_ids
        if getattr(run.model, "task", "lm") != "lm":
            raise ConfigError("gradients through time need a language-model run (not seq2seq or masked LM)")
        check(cancel)
        report(1, 3, f"{arch} trained")
        curves.append({"label": f"{arch} trained", **curve(run.model, ids, distance, windows, 0, clip)})
        check(cancel)
        report(2, 3, f"{arch} at init")
        torch.manual_seed(0)
        fresh = build_model(arch, copy.deepcopy(run.model.config))
        curves.append({"label": f"{arch} at init", **curve(fresh, ids, distance, windows, 0, clip)})
        report(3, 3, "done")
        return {"analysis": "gradients", "mode": f"run {label_run}", "source": cfg.source, "curves": curves}
    report(0, len(archs) * seeds + 1, f"tokenising {source}")
    data = prepare(source)
    ids, vocab = data.train_ids, data.tokenizer.vocab_size
    for k, name in enumerate(archs):
        per_seed = []
        for seed in range(seeds):
            check(cancel)
            report(1 + k * seeds + seed, len(archs) * seeds + 1, f"{name} seed {seed}")
            arch, model = fresh_model(name, vocab, seed, identity_init, **overrides)
            per_seed.append(curve(model, ids, distance, windows, seed, clip))
        stacked = np.asarray([c["norm"] for c in per_seed])
        merged = summarize(stacked.tolist(), per_seed[0]["distances"],
                           float(np.mean([c["param_grad_norm"] for c in per_seed])), clip)
        label = name + (" +identity" if identity_init and ARCH_ALIASES[name][0] == "rnn" and name != "irnn" else "")
        curves.append({"label": label, **merged})
    report(len(archs) * seeds + 1, len(archs) * seeds + 1, "done")
    return {"analysis": "gradients", "mode": "at initialisation", "source": source, "curves": curves}
