"""Loading trusts nothing: a checkpoint's tensors and saved state checked against the live objects.

Every tensor read from a checkpoint (model parameters and buffers, optimizer moments and step
counts, RNG states, a recurrent model's carried state) must have exactly the shape and dtype the
live object expects before any kernel sees it; the optimizer's saved hyper-parameters must match
the live optimizer's (same keys, same flags, finite numbers); the batcher's JSON state must have the
live batcher's structure and stay in range. Any mismatch is one ``CheckpointError`` naming the tensor
or field. Torch is imported by the caller (the trainer, ``load_model``); this module takes objects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError

# Per-parameter state tensors each torch optimizer keeps (anything else in a checkpoint is refused).
OPTIMIZER_STATE_KEYS: dict[str, frozenset[str]] = {
    "AdamW": frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    "Adam": frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    "SGD": frozenset({"momentum_buffer"}),
    "RMSprop": frozenset({"step", "square_avg", "momentum_buffer", "grad_avg"}),
    "Adagrad": frozenset({"step", "sum"}),
}


def _describe(t: Any) -> str:
    return f"shape {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"


def _bad(where: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{Path(where).name}: {what}; the checkpoint is corrupt or altered, use an earlier one")


def expect_tensor(tensors: dict[str, Any], key: str, like: Any, where: Path, shape: tuple[int, ...] | None = None) -> Any:
    """``tensors[key]``, checked to have ``like``'s shape (or ``shape``) and dtype."""
    import torch

    if key not in tensors:
        raise _bad(where, f"tensor {key} is missing")
    got = tensors[key]
    if not isinstance(got, torch.Tensor):
        raise _bad(where, f"{key} is not a tensor")
    want_shape = tuple(like.shape) if shape is None else shape
    if tuple(got.shape) != want_shape or got.dtype != like.dtype:
        raise _bad(where, f"tensor {key} has {_describe(got)}, expected shape {want_shape} {str(like.dtype).replace('torch.', '')}")
    return got


def check_model_tensors(model: Any, tensors: dict[str, Any], where: Path) -> dict[str, Any]:
    """The ``model.*`` tensors as a state dict, each checked against the live model's entry; no key
    missing, none extra."""
    import torch

    live = model.state_dict()
    saved = {k[len("model."):] for k in tensors if k.startswith("model.")}
    extra = sorted(saved - set(live))
    if extra:
        raise _bad(where, f"tensor model.{extra[0]} is not part of this model")
    sized = set(getattr(model, "data_sized_buffers", lambda: ())())  # e.g. the n-gram's count tables
    out = {}
    for name, ref in live.items():
        if name in sized:
            got = tensors.get(f"model.{name}")
            if not isinstance(got, torch.Tensor) or got.dtype != ref.dtype or got.dim() != ref.dim():
                raise _bad(where, f"tensor model.{name} is missing or not a {ref.dim()}-d {str(ref.dtype).replace('torch.', '')} table")
            out[name] = got
        else:
            out[name] = expect_tensor(tensors, f"model.{name}", ref, where)
    for a, b in tied_names(model):  # one tensor in the model, two in the file: loading keeps the last
        if not _same_values(out[a], out[b]):
            raise _bad(where, f"tensors model.{a} and model.{b} are one tied weight in this model but differ in the file")
    problem = getattr(model, "check_tables", lambda state: None)(out)
    if problem:
        raise _bad(where, problem)
    return out


def tied_names(model: Any) -> list[tuple[str, str]]:
    """Pairs of state-dict names that are one tensor in ``model`` (tied weights), first name first."""
    first: dict[int, str] = {}
    pairs = []
    for name, p in model.named_parameters(remove_duplicate=False):
        key = id(p)
        if key in first:
            pairs.append((first[key], name))
        else:
            first[key] = name
    return pairs


def _same_values(a: Any, b: Any) -> bool:
    """Equal shape and values, NaN equal to NaN (a file whose tied copies are both NaN is broken, not
    inconsistent: the finiteness check names it)."""
    import torch

    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def _finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _same_setting(key: str, saved: Any, live: Any) -> bool:
    """A saved optimizer setting may replace the live one: the learning rate if finite and >= 0 (the
    schedule moves it), every other setting only if equal (the live optimizer is built from the same
    saved training settings, so a difference is an altered file)."""
    if key == "lr":
        return _finite_number(saved) and saved >= 0
    if isinstance(live, tuple | list):
        return isinstance(saved, list | tuple) and list(saved) == list(live) and all(map(_finite_or_flag, saved))
    return type(saved) is type(live) and saved == live if not isinstance(live, float) else _finite_number(saved) and saved == live


def _finite_or_flag(x: Any) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def check_optimizer_state(optimizer: Any, saved: dict[str, Any], tensors: dict[str, Any], where: Path) -> dict[str, Any]:
    """The optimizer state dict to load, built from the checkpoint's ``optimizer`` JSON and
    ``optim.<param index>.<name>`` tensors, every piece checked against the live optimizer."""
    import torch

    if not isinstance(saved, dict):
        raise _bad(where, "the optimizer state is not a JSON object")
    live = optimizer.state_dict()
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(live["param_groups"]):
        raise _bad(where, f"the optimizer has {len(live['param_groups'])} parameter groups, the checkpoint another number")
    for i, (g, ref) in enumerate(zip(groups, live["param_groups"], strict=True)):
        if not isinstance(g, dict) or set(g) != set(ref):
            raise _bad(where, f"optimizer parameter group {i} has other settings than this optimizer's")
        if g["params"] != ref["params"]:
            raise _bad(where, f"optimizer parameter group {i} names other parameters than the model's")
        for k, v in g.items():
            if k != "params" and not _same_setting(k, v, ref[k]):
                raise _bad(where, f"optimizer setting {k}={str(v)[:40]} in group {i} does not fit this optimizer (expected like {ref[k]!r})")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    required, eager = _probe(optimizer)
    allowed = required if required is not None else OPTIMIZER_STATE_KEYS.get(type(optimizer).__name__)
    keys, scalars = saved.get("tensor_keys") or {}, saved.get("scalars") or {}
    if not isinstance(keys, dict) or not isinstance(scalars, dict):
        raise _bad(where, "the optimizer state lists are not JSON objects")
    state: dict[int, dict[str, Any]] = {}
    for pid, names in keys.items():
        if not (isinstance(pid, str) and pid.isdigit() and int(pid) < len(params)) or not isinstance(names, list):
            raise _bad(where, f"optimizer state names parameter {str(pid)[:20]!r}, which the model does not have")
        p = params[int(pid)]
        entry: dict[str, Any] = {}
        for name in names:
            if not isinstance(name, str) or (allowed is not None and name not in allowed):
                raise _bad(where, f"optimizer state {str(name)[:30]!r} of parameter {pid} is not one {type(optimizer).__name__} keeps")
            key = f"optim.{pid}.{name}"
            if name == "step":  # a scalar count, float32 as torch keeps it
                t = expect_tensor(tensors, key, torch.zeros((), dtype=torch.float32), where)
                if not (math.isfinite(float(t)) and float(t) >= 0):
                    raise _bad(where, f"tensor {key} is {float(t)}, not a step count")
            else:
                t = expect_tensor(tensors, key, p, where)
            entry[name] = t
        state[int(pid)] = entry
    for pid, values in scalars.items():
        if not (isinstance(pid, str) and pid.isdigit() and int(pid) < len(params)) or not isinstance(values, dict):
            raise _bad(where, f"optimizer state names parameter {str(pid)[:20]!r}, which the model does not have")
        for name, v in values.items():
            if (allowed is not None and name not in allowed) or not _finite_number(v):
                raise _bad(where, f"optimizer value {str(name)[:30]}={str(v)[:30]} of parameter {pid} does not fit {type(optimizer).__name__}")
        state.setdefault(int(pid), {}).update(values)
    stray = sorted(k for k in tensors if k.startswith("optim.") and k.split(".")[1] not in keys)
    if stray:
        raise _bad(where, f"tensor {stray[0]} belongs to no parameter the optimizer state lists")
    if required is not None:  # a partial state crashes the optimizer's step: each one complete (or absent)
        for pid, entry in state.items():
            if set(entry) != required:
                missing = sorted(required - set(entry)) or sorted(set(entry) - required)
                raise _bad(where, f"optimizer state of parameter {pid} lacks {', '.join(missing)}")
        lacking = [i for i in range(len(params)) if i not in state] if eager else []
        if lacking:  # an optimizer that makes its state at construction (Adagrad) never makes it again
            raise _bad(where, f"optimizer state of parameter {lacking[0]} is missing")
    return {"state": state, "param_groups": groups}


def _probe(optimizer: Any) -> tuple[frozenset[str] | None, bool]:
    """(the state names this optimizer keeps per parameter after a step, with its settings: amsgrad,
    momentum, centered...; whether it makes that state at construction), found by stepping a copy on
    a one-element parameter. (None, False) if the copy cannot be made."""
    import inspect

    import torch

    try:
        p = torch.zeros(1, requires_grad=True)
        p.grad = torch.zeros(1)
        accepted = inspect.signature(type(optimizer).__init__).parameters
        probe = type(optimizer)([p], **{k: v for k, v in optimizer.defaults.items() if k in accepted})
        eager = bool(probe.state.get(p))
        probe.step()
        return frozenset(probe.state[p]), eager
    except Exception:  # noqa: BLE001 - an optimizer that cannot be probed keeps the name table only
        return None, False


def check_rng(tensors: dict[str, Any], key: str, live_state: Any, where: Path) -> Any:
    """An RNG state tensor, checked against the live generator's state (uint8, same length)."""
    return expect_tensor(tensors, key, live_state, where)


def check_carried_state(model: Any, tensors: dict[str, Any], n: Any, batch_size: int, where: Path) -> tuple[Any, ...]:
    """A recurrent model's carried state: ``n`` tensors shaped as ``model.init_state(batch_size)``."""
    import torch

    ref = model.init_state(batch_size)
    flat: list[Any] = []

    def walk(s: Any) -> None:
        if isinstance(s, torch.Tensor):
            flat.append(s)
        elif isinstance(s, tuple | list):
            for x in s:
                walk(x)

    walk(ref)
    if not isinstance(n, int) or isinstance(n, bool) or n != len(flat):
        raise _bad(where, f"the checkpoint carries {str(n)[:20]} state tensors, this model carries {len(flat)}")
    out = []
    for i, like in enumerate(flat):
        shape = tuple(like.shape)
        got = tensors.get(f"state.{i}")
        if got is not None and len(shape) >= 2 and got.dim() == len(shape):
            rows = int(got.shape[1])  # the batch dimension: a data-parallel rank carries its share of the batch
            if rows >= 1 and batch_size % rows == 0:
                shape = (shape[0], rows, *shape[2:])
        out.append(expect_tensor(tensors, f"state.{i}", like, where, shape=shape))
    return tuple(out)


def check_batcher_state(batcher: Any, saved: Any, where: Path) -> None:
    """The batcher's saved JSON state has the live state's structure (keys, types, lengths) and its
    stream position lies inside the data."""
    live = batcher.state_dict()

    def same(a: Any, b: Any, path: str) -> None:
        if isinstance(b, dict):
            if not isinstance(a, dict) or set(a) != set(b):
                raise _bad(where, f"batcher state {path or 'top'} has other fields than this batcher's")
            for k in b:
                same(a[k], b[k], f"{path}.{k}" if path else k)
        elif isinstance(b, bool) or isinstance(b, str):
            if type(a) is not type(b) or (isinstance(b, str) and a != b):
                raise _bad(where, f"batcher state {path}={str(a)[:30]} does not fit this batcher")
        elif isinstance(b, int):
            if not isinstance(a, int) or isinstance(a, bool) or a < 0:
                raise _bad(where, f"batcher state {path}={str(a)[:30]} is not a count")
        elif isinstance(b, float):
            if not _finite_number(a):
                raise _bad(where, f"batcher state {path}={str(a)[:30]} is not a finite number")
        elif isinstance(b, list | tuple):
            if not isinstance(a, list | tuple) or len(a) != len(b):
                raise _bad(where, f"batcher state {path} has another length than this batcher's")
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{path}[{i}]")

    same(saved, live, "")
    length = getattr(batcher, "length", None)
    if isinstance(length, int) and "pos" in live and not saved["pos"] < length:
        raise _bad(where, f"batcher position {saved['pos']} lies past the data ({length} tokens per stream)")


def check_resume_state(meta: dict[str, Any], tensors: dict[str, Any], where: Path, *, model: Any, optimizer: Any,
                       batcher: Any, batch_size: int, device: str = "cpu") -> None:
    """Everything a resume loads, checked before any of it is loaded (the trainer's one hook)."""
    import torch

    check_model_tensors(model, tensors, where)
    if optimizer is not None and meta.get("optimizer"):
        check_optimizer_state(optimizer, meta["optimizer"], tensors, where)
    check_rng(tensors, "rng.torch", torch.get_rng_state(), where)
    if "rng.cuda" in tensors and str(device).startswith("cuda"):
        check_rng(tensors, "rng.cuda", torch.cuda.get_rng_state(device), where)
    if batcher is not None and meta.get("batcher") is not None:
        check_batcher_state(batcher, meta["batcher"], where)
    if meta.get("carried_state"):
        check_carried_state(model, tensors, meta["carried_state"], getattr(batcher, "batch_size", batch_size), where)
    sched = meta.get("schedule") or {}
    if not isinstance(sched, dict):
        raise _bad(where, "the schedule state is not a JSON object")
    for key, v in sched.items():  # the fields of engine.training.schedule.Schedule
        if key == "kind":
            from engine.training.config import SCHEDULES

            if v not in SCHEDULES:
                raise _bad(where, f"schedule kind={str(v)[:30]} is not one of {', '.join(SCHEDULES)}")
            continue
        if v is None and key in ("total_steps", "time_budget"):  # no horizon of that kind
            continue
        if not _finite_number(v) or v < 0 or (key in ("base_lr", "plateau_scale") and v == 0):
            raise _bad(where, f"schedule {str(key)[:30]}={str(v)[:30]} is not a usable value")
    for key in ("step", "tokens_seen"):
        v = meta.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _bad(where, f"{key}={str(v)[:30]} is not a count")
    for key in ("best_val_loss", "best_val_bpc", "last_val_loss"):  # compared with new losses
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):  # NaN: MLM bits/char
            raise _bad(where, f"{key}={str(v)[:30]} is not a loss")
    v = meta.get("elapsed", 0.0)
    if not _finite_number(v) or v < 0:
        raise _bad(where, f"elapsed={str(v)[:30]} is not a time")


def resume_config(meta: dict[str, Any], overrides: dict[str, Any], where: Path) -> Any:
    """The TrainConfig a resume continues with: the saved settings plus the user's ``overrides``,
    through the same strict reading and bounds as the CLI's (``TrainConfig.from_dict().validate()``).

    A file source saved in the checkpoint is read only if the user names it (``--source``) or this
    user's data cache shows seqplay already read that very file here (it trained the run); a run
    folder handed over by someone else cannot make seqplay read an arbitrary file."""
    import os

    from engine.data.sources import read_before
    from engine.errors import SeqplayError
    from engine.training.config import TrainConfig

    saved = meta.get("train_config")
    if not isinstance(saved, dict):
        raise _bad(where, "the saved training settings are missing")
    if not isinstance(meta.get("arch"), str) or not isinstance(meta.get("model_config"), dict):
        raise _bad(where, "the checkpoint names no architecture or model config")
    if saved.get("arch") != meta["arch"]:
        raise _bad(where, f"the saved settings are for {str(saved.get('arch'))[:30]!r}, the model is {meta['arch'][:30]!r}")
    try:  # the model's settings: the same strict reading and bounds as for a new run
        from engine.models.registry import config_from_dict

        config_from_dict(meta["arch"], meta["model_config"]).validate()
    except SeqplayError as err:
        raise CheckpointError(f"{Path(where).name}: the saved model settings are refused: {err}") from None
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise _bad(where, f"the saved model settings are invalid ({type(err).__name__})") from None
    saved = dict(saved)
    saved.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = TrainConfig.from_dict(saved).validate()
    except SeqplayError as err:
        raise CheckpointError(f"{Path(where).name}: a saved setting is refused: {err}") from None
    if "source" not in overrides and isinstance(config.source, str) and "\0" not in config.source:
        path = os.path.expanduser(config.source)
        if os.path.lexists(path) and not read_before(path):
            raise CheckpointError(
                f"this run was trained on the file {config.source[:200]}, which seqplay has not read on this machine; "
                f"if you mean to train on it, name it: seqplay resume RUN --source {config.source[:200]}")
    return config
