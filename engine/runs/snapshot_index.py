"""Reading a run's time-machine snapshots: the schedule, the listing and ``RUN@STEP`` resolution.

Torch-free and free of ``engine.runs.checkpoint`` (which calls ``resolve_at`` for ``RUN@STEP``), so the
run package has no import circle; writing snapshots lives in ``engine.runs.snapshots``.
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


def snapshot_at_or_before(run_dir: str | Path, step: float) -> SnapshotInfo | None:
    """The newest snapshot at or before ``step`` (None: none yet); what a step cursor on the training curve
    picks, also while the run trains."""
    before = [s for s in list_snapshots(run_dir) if s.step <= step]
    return before[-1] if before else None


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
    saved = Path(run_dir) / "checkpoints" / f"step-{step:06d}.json"  # a step checkpoint at STEP
    if saved.is_file() and not saved.is_symlink():
        return saved
    raise CheckpointError(f"run {run_dir.name} has no snapshot at step {step}; its snapshots are at steps: {steps}")
