"""The training time machine: a log-spaced series of model snapshots kept by every run.

A run with ``TrainConfig.snapshot_base = b`` (default 50; 0 = off) keeps the model at steps
0, b, 2b, 4b, 8b, ... (each twice the one before), plus the last step and the best validation step::

    <run>/snapshots/snap-000400.safetensors   model tensors only (no optimizer, no RNG)
    <run>/snapshots/snap-000400.json          a checkpoint JSON (same reader, same sha256 check) with
                                              kind "snapshot" and tags: scheduled | best | last

Snapshots are checkpoints without the training state, so ``engine.runs.checkpoint.load_model`` reads
them with the same safety rules (never unpickled, hash-checked) and the run's ``tokenizer.json``.
Each snapshot also records the training machine (``engine.device.environment``: CPU, device, threads,
torch version), which the experiment card reads. ``RUN@STEP`` (also ``RUN@best``, ``RUN@last``) names one; ``list_snapshots`` is torch-free (the app's
step cursor uses it). A step that has no snapshot but still has a step checkpoint resolves to that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError

FOLDER = "snapshots"
_STEP_RE = re.compile(r"^snap-(\d+)\.json$")  # not step-*: never taken for a training checkpoint
TAGS = ("scheduled", "best", "last")


def scheduled(step: int, base: int) -> bool:
    """Whether ``step`` is on the log-spaced schedule 0, base, 2 base, 4 base, ... (base 0: never)."""
    if base <= 0 or step < 0:
        return False
    if step == 0:
        return True
    if step % base:
        return False
    k = step // base
    return k & (k - 1) == 0  # a power of two


def schedule(base: int, last: int) -> list[int]:
    """The scheduled steps up to ``last`` (the last and best steps come on top)."""
    if base <= 0:
        return []
    out, s = [0], base
    while s <= last:
        out.append(s)
        s *= 2
    return out


@dataclass
class SnapshotInfo:
    """One snapshot as the listing sees it (read from its JSON only)."""

    step: int
    path: Path  # the JSON
    tags: list[str] = field(default_factory=list)
    val_loss: float | None = None  # the last evaluation at or before this step (None: none yet)
    tensors_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "path": str(self.path), "tags": list(self.tags), "val_loss": self.val_loss,
                "tensors_bytes": self.tensors_bytes}


def snapshot_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / FOLDER


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_snapshots(run_dir: str | Path) -> list[SnapshotInfo]:
    """The run's snapshots, oldest first (torch-free; unreadable JSON files are skipped, tensors are not
    read: loading checks their hash)."""
    folder = snapshot_dir(run_dir)
    out = []
    if not folder.is_dir():
        return out
    for p in folder.iterdir():
        m = _STEP_RE.match(p.name)
        meta = _read_json(p) if m else None
        if meta is None or meta.get("kind") != "snapshot":
            continue
        tags = [t for t in meta.get("tags") or [] if t in TAGS]
        val = meta.get("last_val_loss")
        out.append(SnapshotInfo(step=int(m.group(1)), path=p, tags=tags,
                                val_loss=float(val) if isinstance(val, int | float) else None,
                                tensors_bytes=int(meta.get("tensors_bytes") or 0)))
    return sorted(out, key=lambda s: s.step)


def disk_use(run_dir: str | Path) -> int:
    """Bytes the run's snapshot files take."""
    folder = snapshot_dir(run_dir)
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


# --------------------------------------------------------------------------------------------------
# RUN@STEP
# --------------------------------------------------------------------------------------------------


def split_at(spec: str) -> tuple[str, str] | None:
    """``"RUN@STEP"`` -> (RUN, STEP); None when ``spec`` holds no ``@``."""
    run, at, step = str(spec).rpartition("@")
    if not at or not run:
        return None
    return run, step


def resolve_at(spec: str) -> Path:
    """The checkpoint JSON ``RUN@STEP`` names: the snapshot at STEP (``best``/``last``: the snapshot
    so tagged), else the step checkpoint at STEP. A one-line CheckpointError names the steps there are."""
    from engine.runs.checkpoint import step_checkpoints
    from engine.runs.paths import find_run

    parts = split_at(spec)
    if parts is None:
        raise CheckpointError(f"{spec!r} is not RUN@STEP; write e.g. myrun@400 or myrun@best")
    run, what = parts
    run_dir = find_run(run)
    snaps = list_snapshots(run_dir)
    steps = ", ".join(str(s.step) for s in snaps) or "none"
    if what in ("best", "last"):
        tagged = [s for s in snaps if what in s.tags]
        if not tagged:
            raise CheckpointError(f"run {run_dir.name} has no {what} snapshot (snapshots at steps: {steps}); use RUN@STEP")
        return tagged[-1].path
    try:
        step = int(what)
    except ValueError:
        raise CheckpointError(f"{what!r} after @ is not a step; write RUN@400, RUN@best or RUN@last") from None
    for s in snaps:
        if s.step == step:
            return s.path
    for s, path in step_checkpoints(run_dir):
        if s == step:
            return path
    raise CheckpointError(f"run {run_dir.name} has no snapshot at step {step}; its snapshots are at steps: {steps}")


# --------------------------------------------------------------------------------------------------
# Writing (called by the trainer)
# --------------------------------------------------------------------------------------------------


def _retag(info: SnapshotInfo, drop: str) -> None:
    """Remove tag ``drop`` from a snapshot; a snapshot left with no tag is deleted (JSON first)."""
    from engine.runs.checkpoint import atomic_write_json

    meta = _read_json(info.path)
    if meta is None:
        return
    tags = [t for t in meta.get("tags") or [] if t != drop]
    if tags:
        meta["tags"] = tags
        atomic_write_json(info.path, meta)
        return
    tensors = info.path.parent / str(meta.get("tensors_file") or "")
    info.path.unlink(missing_ok=True)
    if tensors.name.endswith(".safetensors"):
        tensors.unlink(missing_ok=True)


def write_snapshot(run_dir: Path, step: int, model: Any, meta: dict[str, Any], tags: list[str]) -> Path:
    """Write the snapshot at ``step``. One already written at this moment of training (same step and
    elapsed time) only gains the tags; one left by another trajectory (training re-reached the step
    after a rollback or a resume from an earlier checkpoint) is replaced, tags and all."""
    from engine.runs.checkpoint import atomic_write_json, save_checkpoint

    folder = snapshot_dir(run_dir)
    path = folder / f"snap-{step:06d}.json"
    old = _read_json(path) if path.exists() else None
    if (old is not None and old.get("kind") == "snapshot" and old.get("step") == step
            and old.get("elapsed") == meta.get("elapsed")):
        old["tags"] = sorted(set(old.get("tags") or []) | set(tags), key=TAGS.index)
        atomic_write_json(path, old)
        return path
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}  # as checkpoints: the loader is strict
    save_checkpoint(path, tensors, {**meta, "kind": "snapshot", "step": step, "tags": sorted(set(tags), key=TAGS.index)})
    return path


def after_step(trainer: Any, final: bool = False) -> None:
    """The trainer's hook: at the end of a step (and once when training ends, ``final``) write the
    snapshots due: a scheduled step, a new best evaluation at this step, the last step."""
    cfg = trainer.config
    base = int(getattr(cfg, "snapshot_base", 0) or 0)
    run_dir = trainer.run_dir
    if base <= 0 or run_dir is None or trainer.tainted or not trainer.task.trainable:
        return
    step = int(trainer.step)
    tags = []
    if scheduled(step, base):
        tags.append("scheduled")
    new_best = (trainer._last_eval_step == step and trainer.best_val_loss is not None
                and trainer.best_val_loss == trainer.last_val_loss)
    snaps = list_snapshots(run_dir) if (new_best or final) else []
    if new_best and not any(s.step == step and "best" in s.tags for s in snaps):
        tags.append("best")
    if final:
        tags.append("last")
    if not tags:
        return
    from engine.device import environment

    model = trainer.model
    meta = {
        "arch": cfg.arch, "model_config": trainer.model_config.to_dict(), "train_config": cfg.to_dict(),
        "tokens_seen": trainer.tokens_seen, "elapsed": trainer.elapsed, "last_val_loss": trainer.last_val_loss,
        "best_val_loss": trainer.best_val_loss, "params": trainer.n_params, "device": trainer.device,
        "precision": trainer.precision, "environment": environment(threads=trainer.threads, device=trainer.device),
    }
    try:
        write_snapshot(run_dir, step, model, meta, tags)
    except OSError as err:
        from engine.errors import TrainingError
        from engine.runs.checkpoint import disk_error_message

        raise TrainingError(disk_error_message(err, snapshot_dir(run_dir))) from None
    for s in snaps:  # one best and one last: the tag moves to this step (after the new one is safely written)
        for tag in ("best", "last"):
            if tag in tags and tag in s.tags and s.step != step:
                try:
                    _retag(s, tag)
                except OSError:
                    pass  # the old one keeps its tag: RUN@best / RUN@last take the newest so tagged


# --------------------------------------------------------------------------------------------------
# The timeline: one sample per snapshot, same settings and seed
# --------------------------------------------------------------------------------------------------


def timeline(run: str | Path, prompt: str, settings: Any, device: str = "cpu", window: str = "slide"):
    """Yield ``{"step", "tags", "val_loss", "text"}`` for each snapshot of ``run``, oldest first: the
    continuation of ``prompt`` under the same ``settings`` (their seed included) from every snapshot,
    so the only thing that changes between lines is the model."""
    from engine.generation.generate import Generation
    from engine.runs.checkpoint import load_model
    from engine.runs.paths import find_run

    run_dir = find_run(str(run))
    snaps = list_snapshots(run_dir)
    if not snaps:
        raise CheckpointError(f"run {run_dir.name} has no snapshots (an n-gram is counted, not trained; other runs were trained "
                              "with --snapshot-base 0 or before snapshots existed); train a new run to get a timeline")
    for s in snaps:
        loaded = load_model(s.path, device=device)
        if loaded.model.task != "lm":
            raise CheckpointError(f"run {run_dir.name} is a {loaded.model.task} model; the timeline continues text (language models only)")
        gen = Generation(loaded.model, loaded.tokenizer, prompt, settings, window=window)
        for _ in gen:
            pass
        yield {"step": s.step, "tags": list(s.tags), "val_loss": s.val_loss, "text": gen.text}
