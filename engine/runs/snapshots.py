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

from pathlib import Path
from typing import Any

from engine.errors import CheckpointError
from engine.runs.snapshot_index import (  # noqa: F401 - the listing and RUN@STEP, re-exported
    FOLDER,
    TAGS,
    SnapshotInfo,
    _read_json,
    disk_use,
    list_snapshots,
    resolve_at,
    schedule,
    scheduled,
    snapshot_at_or_before,
    snapshot_dir,
    split_at,
)

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


def write_snapshot(run_dir: Path, step: int, model: Any, meta: dict[str, Any], tags: list[str],
                   moment: str | None = None) -> Path:
    """Write the snapshot at ``step``. One already written at this moment of training (the same
    ``moment``: this process, this trajectory, this step) only gains the tags; one left by another
    trajectory (training re-reached the step after a rollback or a resume from an earlier checkpoint) is
    replaced, tags and all."""
    from engine.runs.checkpoint import atomic_write_json, save_checkpoint

    folder = snapshot_dir(run_dir)
    path = folder / f"snap-{step:06d}.json"
    old = _read_json(path) if path.exists() else None
    if (old is not None and old.get("kind") == "snapshot" and old.get("step") == step and moment is not None
            and old.get("moment") == moment):
        old["tags"] = sorted(set(old.get("tags") or []) | set(tags), key=TAGS.index)
        atomic_write_json(path, old)
        return path
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}  # as checkpoints: the loader is strict
    save_checkpoint(path, tensors, {**meta, "kind": "snapshot", "step": step, "moment": moment,
                                    "tags": sorted(set(tags), key=TAGS.index)})
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
        import os

        moment = f"{os.getpid()}:{id(trainer)}:{getattr(trainer, 'restores', 0)}:{step}"
        write_snapshot(run_dir, step, model, meta, tags, moment=moment)
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


def timeline(run: str | Path, prompt: str, settings: Any, device: str = "cpu", window: str = "exact"):
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
