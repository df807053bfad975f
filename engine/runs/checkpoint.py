"""Checkpoints: tensors in safetensors, everything else in JSON. Nothing is ever unpickled.

A checkpoint is a pair ``NAME.safetensors`` + ``NAME.json``. Both are written atomically (temporary
file, fsync, rename); the JSON is written *after* the tensors and names their sha256, so a crash or a
full disk part-way leaves either the previous complete pair or an orphan tensors file that no loader
takes for a checkpoint (``read_checkpoint`` verifies the hash). Loading goes through
``engine.models.registry.build_model``, which refuses absurd sizes before allocating anything, so an
untrusted checkpoint can at worst produce a one-line ``CheckpointError``.

Tensor keys: ``model.<name>`` (the module's state dict), ``optim.<param index>.<name>`` (optimizer
state), ``rng.torch`` / ``rng.cuda.<i>`` (generator states), ``state.<i>`` (a recurrent model's
hidden state carried across batches, so resume is exact). JSON: see ``save_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError, SeqplayError
from engine.runs.paths import BadJSON, open_regular, read_bytes, read_json, real_dir

FORMAT = "seqplay-checkpoint"
VERSION = 1
MAX_TENSORS_BYTES = 1 << 40  # a declared tensors size above this is refused (the model limit is far below)
_STEP_RE = re.compile(r"^step-(\d+)\.json$")


# --------------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------------


def _write_file(fh: Any, data: bytes) -> None:
    """The one place bytes reach the disk (tests monkeypatch it to simulate a full disk)."""
    fh.write(data)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either the old content or all of ``data``."""
    path = Path(path)
    if path.parent.name == "checkpoints":
        real_dir(path.parent)  # never write through a linked checkpoints/ folder
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        with open(tmp, "wb") as fh:  # fh.name is the temporary path (tests look at it)
            _write_file(fh, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=_json_default, allow_nan=True).encode())


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays (batcher states) become plain JSON."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def disk_error_message(err: OSError, where: Path) -> str:
    import errno

    if err.errno == errno.ENOSPC:
        return f"the disk is full while writing a checkpoint in {where}; free some space (the previous checkpoint is intact)"
    if err.errno in (errno.EDQUOT, errno.EFBIG):  # a quota or file-size limit: no space for this writer either
        return (f"no space left for a checkpoint in {where} ({err.strerror}: disk quota or file-size limit); "
                f"free some space or raise the limit (the previous checkpoint is intact)")
    return f"could not write a checkpoint in {where}: {err.strerror or err}; check the folder is writable"


# --------------------------------------------------------------------------------------------------
# Save / read
# --------------------------------------------------------------------------------------------------


def save_checkpoint(json_path: Path, tensors: dict[str, Any], meta: dict[str, Any], tensors_name: str | None = None) -> Path:
    """Write ``tensors`` (name -> torch tensor) and ``meta`` (JSON-able) as a checkpoint pair.

    Tensors first, JSON second (naming the tensors' sha256); both atomically. Shared storage (tied
    weights) is cloned so safetensors accepts it. ``tensors_name`` (default: the JSON's stem) lets a
    pair that is rewritten in place (best.json) put new tensors beside the old ones, so a failure
    before the JSON lands leaves the old pair intact. Returns the JSON path.
    """
    from safetensors.torch import save as st_save

    json_path = Path(json_path)
    tensors_path = json_path.parent / tensors_name if tensors_name else json_path.with_suffix(".safetensors")
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = st_save(flat)
    meta = dict(meta)
    meta.update(
        format=FORMAT,
        version=VERSION,
        tensors_file=tensors_path.name,
        tensors_sha256=hashlib.sha256(data).hexdigest(),
        tensors_bytes=len(data),
    )
    atomic_write_bytes(tensors_path, data)
    atomic_write_json(json_path, meta)
    return json_path


def read_meta(json_path: Path) -> dict[str, Any]:
    """The checkpoint's JSON, checked to be a seqplay checkpoint (does not read the tensors)."""
    json_path = Path(json_path)
    try:
        meta = read_json(json_path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {json_path} does not exist; pick another with `seqplay runs`") from None
    except (OSError, BadJSON):
        raise CheckpointError(f"{json_path} is not a readable checkpoint (corrupt JSON); use another checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a seqplay checkpoint; pass a run folder or a step-*.json file")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{json_path} has checkpoint version {meta.get('version')}, this seqplay reads {VERSION}")
    name = meta.get("tensors_file")
    if (not isinstance(name, str) or "/" in name or "\\" in name or "\0" in name or name.startswith(".")
            or not name.endswith(".safetensors")):
        raise CheckpointError(f"{json_path} names no valid tensors file; the checkpoint is corrupt")
    for key, kind in (("arch", str), ("model_config", dict), ("train_config", dict), ("tokenizer", dict),
                      ("optimizer", dict), ("batcher", dict), ("schedule", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise CheckpointError(f"{json_path.name}: {key} is not a JSON {'object' if kind is dict else 'string'}; the checkpoint is corrupt")
    size = meta.get("tensors_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_TENSORS_BYTES:
        raise CheckpointError(f"{json_path} declares no valid tensors size ({str(size)[:40]}); the checkpoint is corrupt")
    if not isinstance(meta.get("tensors_sha256"), str):
        raise CheckpointError(f"{json_path} carries no tensors hash; the checkpoint is corrupt")
    return meta


def read_checkpoint(json_path: Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, tensors) of a checkpoint, after checking the tensors file's sha256 against the JSON.

    Only safetensors parses the tensors file: a pickle, a ``torch.save`` zip or a truncated file
    renamed ``.safetensors`` is refused with a ``CheckpointError`` and never executed.
    """
    from safetensors.torch import load as st_load

    json_path = Path(json_path)
    meta = read_meta(json_path)
    tensors_path = json_path.parent / meta["tensors_file"]
    try:
        data = read_bytes(tensors_path, MAX_TENSORS_BYTES, exact=meta["tensors_bytes"])
    except OSError:
        raise CheckpointError(f"tensors file {tensors_path} is missing or unreadable; use an earlier checkpoint") from None
    if verify and hashlib.sha256(data).hexdigest() != meta.get("tensors_sha256"):
        raise CheckpointError(
            f"{tensors_path.name} does not match the hash in {json_path.name} (half-written or altered); use an earlier checkpoint"
        )
    try:
        tensors = st_load(data)
    except Exception:  # noqa: BLE001 - any parse failure is a corrupt file
        raise CheckpointError(f"{tensors_path} is not a valid safetensors file; use an earlier checkpoint") from None
    return meta, tensors


def verify_checkpoint(json_path: Path) -> str | None:
    """None if the pair is complete and intact, else a short reason (for `seqplay runs`)."""
    try:
        meta = read_meta(json_path)
        tensors_path = Path(json_path).parent / meta["tensors_file"]
        h = hashlib.sha256()
        fd = open_regular(tensors_path)
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fd).st_size
            if size != meta["tensors_bytes"]:
                return f"{tensors_path.name} does not match its hash ({size:,} bytes, {meta['tensors_bytes']:,} declared)"
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != meta.get("tensors_sha256"):
            return f"{tensors_path.name} does not match its hash"
    except CheckpointError as err:
        return str(err)
    except OSError:
        return "tensors file missing"
    return None


def step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, json path) of a run's step checkpoints, oldest first (unverified)."""
    folder = real_dir(Path(run_dir) / "checkpoints")
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _STEP_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest step checkpoint of a run that verifies (a corrupt newest one is skipped)."""
    for _step, path in reversed(step_checkpoints(run_dir)):
        if verify_checkpoint(path) is None:
            return path
    return None


def resolve_checkpoint(path_or_run: str | Path, prefer_best: bool = True) -> Path:
    """A checkpoint JSON from: a ``.json``/``.safetensors`` file, a run folder (best, else latest), or
    a run name under the runs directory."""
    from engine.runs.paths import find_run

    if "\0" in str(path_or_run):
        raise CheckpointError("a checkpoint path cannot contain a NUL character; see `seqplay runs`")
    p = Path(path_or_run)
    if not p.exists() and "@" in str(path_or_run):  # RUN@STEP: a snapshot (engine.runs.snapshots)
        from engine.runs.snapshot_index import resolve_at

        return resolve_at(str(path_or_run))
    if not p.exists():
        p = find_run(str(path_or_run))
    if p.is_file():
        if p.suffix == ".safetensors":
            p = p.with_suffix(".json")
        return p
    best = p / "checkpoints" / "best.json"
    if prefer_best and best.exists() and verify_checkpoint(best) is None:
        return best
    latest = latest_checkpoint(p)
    if latest is None:
        if best.exists() and verify_checkpoint(best) is None:
            return best
        raise CheckpointError(f"{p} holds no complete checkpoint; train it further or pick another run")
    return latest


@dataclass(frozen=True)
class CheckpointIdentity:
    """Which checkpoint JSON a source names, and the version of it: equal identities load equal weights
    (the JSON is written after its tensors and names their sha256, so a rewrite changes its stamp)."""

    path: Path
    mtime_ns: int
    size: int


def checkpoint_identity(path_or_run: str | Path) -> CheckpointIdentity:
    """The checkpoint ``load_model(path_or_run)`` would load now (a file, a run folder's best or latest,
    ``RUN@STEP`` / ``RUN@best`` / ``RUN@last``) with its stamp; the caches of loaded models key on it,
    so a new best snapshot or checkpoint is loaded, not the one cached before it. Torch-free."""
    path = resolve_checkpoint(path_or_run)
    try:
        st = path.stat()
    except OSError:
        raise CheckpointError(f"{path} cannot be read; pick another checkpoint (see `seqplay runs`)") from None
    return CheckpointIdentity(path=path.resolve(), mtime_ns=st.st_mtime_ns, size=st.st_size)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A model ready for generation or introspection."""

    model: Any  # engine.models.base.SeqModel, eval mode
    tokenizer: Any  # engine.data.tokenizers.Tokenizer
    config: Any  # engine.training.config.TrainConfig
    meta: dict[str, Any]
    path: Path


def build_from_meta(meta: dict[str, Any]) -> Any:
    """Rebuild the (untrained) model a checkpoint describes; absurd configs are refused first."""
    from engine.models.registry import build_model, config_from_dict

    arch = meta.get("arch")
    cfg_dict = meta.get("model_config")
    if not isinstance(arch, str) or not isinstance(cfg_dict, dict):
        raise CheckpointError("checkpoint names no architecture/model config; it is corrupt")
    try:
        cfg = config_from_dict(arch, cfg_dict)
        return build_model(arch, cfg)
    except SeqplayError as err:
        raise CheckpointError(f"checkpoint's model cannot be built: {err}") from None
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as err:  # a value torch cannot take
        raise CheckpointError(f"checkpoint's model config is invalid ({str(err)[:120]}); it is corrupt") from None


def load_model_state(model: Any, tensors: dict[str, Any], where: Path) -> None:
    """Load the ``model.*`` tensors into ``model``, each checked first for the shape and dtype the
    model expects (``engine.runs.checks``): a wrong one is a one-line error naming it."""
    from engine.runs.checks import check_model_tensors

    state = check_model_tensors(model, tensors, where)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"tensors in {where.name} do not fit the model ({first[:120]}); the checkpoint is corrupt") from None


def tokenizer_from_meta(meta: dict[str, Any], json_path: Path) -> Any:
    from engine.data.tokenizers import Tokenizer

    tok = meta.get("tokenizer")
    try:
        if isinstance(tok, dict):
            return Tokenizer.from_dict(tok)
        return Tokenizer.from_dict(read_json(Path(json_path).parent.parent / "tokenizer.json"))  # through the jail
    except SeqplayError:
        raise
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"the checkpoint's tokenizer cannot be read ({type(err).__name__}); the run is corrupt") from None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def _read_settled(path_or_run: str | Path, attempts: int = 3) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Resolve and read a checkpoint of a run that may still be training: if the one found is replaced
    between finding and reading it (a new best.json, pruned step files), find and read again."""
    for attempt in range(attempts):
        json_path = resolve_checkpoint(path_or_run)
        stamp = _stamp(json_path)
        try:
            return (json_path, *read_checkpoint(json_path))
        except CheckpointError:
            if attempt + 1 == attempts or (_stamp(json_path) == stamp and resolve_checkpoint(path_or_run) == json_path):
                raise  # nothing moved: the checkpoint really is broken
    raise AssertionError("unreachable")


def load_model(path_or_run: str | Path, device: str = "cpu") -> Loaded:
    """Load a model for generation/introspection: the best checkpoint of a run folder, else the latest
    (or the given checkpoint file). Eval mode, on ``device``."""
    from engine.training.config import TrainConfig

    json_path, meta, tensors = _read_settled(path_or_run)
    model = build_from_meta(meta)
    load_model_state(model, tensors, json_path)
    model.to(device)
    model.eval()
    tokenizer = tokenizer_from_meta(meta, json_path)
    try:  # saved settings pass the same bounds as the CLI's, or are not used at all
        config = TrainConfig.from_dict(meta.get("train_config") or {}).validate()
    except (SeqplayError, TypeError, ValueError):
        config = TrainConfig(arch=meta["arch"])
    return Loaded(model=model, tokenizer=tokenizer, config=config, meta=meta, path=json_path)


def finite_or_none(x: float | None) -> float | None:
    """JSON-friendly: NaN/inf become None."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)
