"""Managing run folders: rename, note, delete to a trash folder (and undo), per-run figures for the
listing (wall time, tokens seen, final LR, size on disk), validation curves by step, tokens or time,
and the config difference of two runs. Torch-free (the app calls these directly, in a thread).

Deleting moves ``<runs>/<name>`` to ``<runs>/.trash/<stamp>-<name>`` (the listing skips dot-folders);
``restore_run`` moves it back. Nothing is ever removed for good here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError
from engine.runs.folders import LIVE_STATUSES, process_alive, read_metrics, write_summary

TRASH = ".trash"


def _summary(run: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run) / "run.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _refuse_if_training(run: Path, what: str) -> None:
    summary = _summary(run)
    if summary.get("status") in LIVE_STATUSES and process_alive(summary) is not False:
        raise CheckpointError(f"run {run.name} is still training; stop it before you {what} it")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or "/" in name or "\\" in name or name.startswith(".") or name in ("..",):
        raise CheckpointError(f"run name {name!r} is not a plain folder name; use letters, digits and dashes")
    return name


def rename_run(run: str | Path, new_name: str) -> Path:
    """Rename a run folder (same parent); returns the new path."""
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"no run folder {run}; refresh the list")
    target = run.parent / _check_name(new_name)
    if target == run:
        return run
    if target.exists():
        raise CheckpointError(f"a run named {target.name} exists already; choose another name")
    _refuse_if_training(run, "rename")
    run.rename(target)
    return target


def set_note(run: str | Path, note: str) -> None:
    """Store a free-text note in the run's run.json (``note``; empty removes it)."""
    run = Path(run)
    if not (run / "run.json").is_file():
        raise CheckpointError(f"{run.name} has no run.json; it is not a run folder")
    write_summary(run, note=note.strip())


def delete_run(run: str | Path) -> Path:
    """Move a run folder into the trash; returns its trash path (what ``restore_run`` takes)."""
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"no run folder {run}; refresh the list")
    _refuse_if_training(run, "delete")
    trash = run.parent / TRASH
    trash.mkdir(exist_ok=True)
    target = trash / f"{time.strftime('%Y%m%d-%H%M%S')}-{run.name}"
    for i in range(1, 1000):
        if not target.exists():
            break
        target = trash / f"{time.strftime('%Y%m%d-%H%M%S')}-{i}-{run.name}"
    run.rename(target)
    (target / ".trashed-from").write_text(run.name, encoding="utf-8")
    return target


def restore_run(trashed: str | Path) -> Path:
    """Undo ``delete_run``: move the folder back under its old name; returns its path."""
    trashed = Path(trashed)
    marker = trashed / ".trashed-from"
    if not marker.is_file():
        raise CheckpointError(f"{trashed} is not a trashed run; nothing to restore")
    name = marker.read_text(encoding="utf-8").strip()
    target = trashed.parent.parent / name
    if target.exists():
        raise CheckpointError(f"a run named {name} exists again; rename it before you restore this one")
    marker.unlink()
    trashed.rename(target)
    return target


@dataclass(frozen=True)
class RunFigures:
    """What the Runs table shows beyond the listing: seconds trained, tokens seen, the LR of the last
    step, bytes on disk, and the note."""

    wall_time: float | None
    tokens_seen: int | None
    final_lr: float | None
    size_bytes: int
    note: str


def _last_step(run: Path, tail_bytes: int = 16_384) -> dict[str, Any] | None:
    """The last step line of metrics.jsonl, reading only the file's tail."""
    path = run / "metrics.jsonl"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("event") == "step":
            return row
    return None


def folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def run_figures(run: str | Path) -> RunFigures:
    run = Path(run)
    summary = _summary(run)
    last = _last_step(run) or {}
    wall = summary.get("wall_time")
    tokens = summary.get("tokens_seen", last.get("tokens_seen"))
    lr = last.get("lr")
    return RunFigures(
        wall_time=float(wall) if isinstance(wall, int | float) else (float(last["elapsed"]) if isinstance(last.get("elapsed"), int | float) else None),
        tokens_seen=int(tokens) if isinstance(tokens, int | float) and not isinstance(tokens, bool) else None,
        final_lr=float(lr) if isinstance(lr, int | float) else None,
        size_bytes=folder_size(run),
        note=str(summary.get("note") or ""),
    )


X_AXES = ("step", "tokens", "time")


def val_curve(run: str | Path, x: str = "step") -> list[tuple[float, float]]:
    """(x, validation bits/char) of a run, x being the step, the tokens seen or the seconds trained
    at that step (read from the step lines of metrics.jsonl)."""
    if x not in X_AXES:
        raise CheckpointError(f"x axis must be one of {', '.join(X_AXES)}, got {x!r}")
    rows = read_metrics(Path(run))
    where: dict[int, tuple[float, float]] = {}
    points: list[tuple[int, float]] = []
    for row in rows:
        kind = row.get("event")
        if kind == "step" and isinstance(row.get("step"), int):
            where[row["step"]] = (float(row.get("tokens_seen") or 0), float(row.get("elapsed") or 0.0))
        elif kind == "eval" and isinstance(row.get("step"), int) and isinstance(row.get("val_bpc"), int | float):
            points.append((row["step"], float(row["val_bpc"])))
    if x == "step":
        return [(float(s), v) for s, v in points]
    k = 0 if x == "tokens" else 1
    return [(where[s][k], v) for s, v in points if s in where]


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def config_diff(a: str | Path, b: str | Path) -> list[tuple[str, Any, Any]]:
    """The settings where two runs' config.json differ: (dotted key, value in a, value in b); a key
    one config lacks shows as None there. Sorted by key; the run names themselves are left out."""
    configs = []
    for run in (Path(a), Path(b)):
        try:
            configs.append(_flat(json.loads((run / "config.json").read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            raise CheckpointError(f"{run.name} has no readable config.json; it cannot be compared") from None
    ca, cb = configs
    skip = {"run_name"}
    return [(k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb))
            if k not in skip and ca.get(k) != cb.get(k)]
