"""Run folders: where each training run keeps its config, tokenizer, metrics and checkpoints.

Layout (``docs/architecture.md``)::

    <runs dir>/<run name>/
        config.json          TrainConfig.to_dict()
        tokenizer.json       the tokenizer (Tokenizer.save)
        metrics.jsonl        one Event.to_dict() per line; StepMetrics flattened to {"event": "step", ...}
        run.json             summary: arch, source, params, steps, best_val_loss, best_val_bpc, created,
                             updated, wall_time, status, pid, host, pid_started (the training process)
        checkpoints/         step-000500.{safetensors,json} (last K kept), best.{safetensors,json}

A run whose process died without a goodbye (SIGKILL, power loss) still says "running" in run.json;
listing reports it as "interrupted" when its pid is not alive on this host (``seqplay resume`` continues
it from its last checkpoint).

The runs directory is ``--runs-dir``, else ``$SEQPLAY_HOME/runs``, else platformdirs' user data dir.
Listing is torch-free: `seqplay runs` must be instant.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from engine.runs.checkpoint import atomic_write_json, latest_checkpoint, step_checkpoints, verify_checkpoint
from engine.errors import CheckpointError


def runs_root(runs_dir: str | Path | None = None) -> Path:
    """The folder holding run folders (not created)."""
    if runs_dir:
        return Path(runs_dir).expanduser()
    from engine.data.sources import home_dir  # the one owner of the home folder

    return home_dir() / "runs"


def _slug(text: str) -> str:
    stem = Path(text.split(":", 1)[0]).stem or "corpus"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)[:40].strip("-") or "corpus"


def create_run(arch: str, source: str, runs_dir: str | Path | None = None, name: str | None = None) -> Path:
    """Make a new, empty run folder and return it. Names: ``YYYYmmdd-HHMMSS-<arch>-<corpus>``."""
    root = runs_root(runs_dir)
    base = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{arch}-{_slug(source)}"
    if "/" in base or base in (".", ".."):
        raise CheckpointError(f"run name {base!r} is not a plain folder name; use letters, digits and dashes")
    for i in range(1000):
        path = root / (base if i == 0 else f"{base}-{i}")
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        except OSError as err:
            raise CheckpointError(f"cannot create run folder {path}: {err.strerror}; use --runs-dir to choose another place") from None
        (path / "checkpoints").mkdir()
        return path
    raise CheckpointError(f"too many runs named {base} in {root}; pass another --run-name")


def find_run(name_or_path: str, runs_dir: str | Path | None = None) -> Path:
    """A run folder from its path or its name under the runs directory (a unique prefix works too)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    root = runs_root(runs_dir)
    if (root / name_or_path).is_dir():
        return root / name_or_path
    matches = sorted(q for q in root.glob(f"{name_or_path}*") if q.is_dir()) if root.is_dir() and not p.is_absolute() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CheckpointError(f"{name_or_path!r} matches {len(matches)} runs; give more of the name (see `seqplay runs`)")
    raise CheckpointError(f"no run or checkpoint named {name_or_path!r} in {root}; see `seqplay runs`")


# Statuses of a run whose process is (supposedly) alive; "interrupted" replaces them if it is not.
LIVE_STATUSES = ("starting", "running", "stopping", "paused")


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux /proc clock ticks; None where unknown): with the pid
    it tells a live process from a later one that reused the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_identity() -> dict[str, Any]:
    """What run.json records about the training process: pid, host and (Linux) its start time."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "pid_started": _process_start(pid)}


def process_alive(summary: dict[str, Any]) -> bool | None:
    """Whether the process a run.json names is alive: None when unknowable (no pid, another host)."""
    pid, host = summary.get("pid"), summary.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    except OSError:
        return None
    started = summary.get("pid_started")
    if started is not None:
        now = _process_start(pid)
        if now is not None and now != started:
            return False  # the pid was reused by a later process
    return True


def write_summary(run_dir: Path, **fields: Any) -> None:
    """Update run.json atomically with ``fields`` (others kept)."""
    path = Path(run_dir) / "run.json"
    summary: dict[str, Any] = {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    if not isinstance(summary, dict):
        summary = {}
    summary.update(fields)
    summary["updated"] = time.time()
    summary.setdefault("created", summary["updated"])
    atomic_write_json(path, summary)


class MetricsWriter:
    """Appends events to metrics.jsonl, one JSON object per line (StepMetrics: one line per point).

    Lines are buffered and written on ``flush()`` (the trainer flushes with each StepMetrics batch),
    so a killed process loses at most the last tenth of a second of metrics, never a checkpoint.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._fh: TextIO | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived
        self._lines: list[str] = []

    def append(self, event: Any) -> None:
        data = event.to_dict()
        if data.get("event") == "steps":
            job = data.get("job", "")
            for point in data.get("points", ()):
                self._lines.append(json.dumps({"event": "step", "job": job, **point}))
        else:
            self._lines.append(json.dumps(data, default=str))

    def flush(self) -> None:
        if self._fh is None or not self._lines:
            return
        try:
            self._fh.write("\n".join(self._lines) + "\n")
            self._fh.flush()
        except OSError:
            pass  # metrics are best-effort; a full disk is reported by the checkpoint writer
        self._lines.clear()

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass  # a full disk already failed the flush above; the checkpoint writer reports it
            self._fh = None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every parseable line of a run's metrics.jsonl (a torn last line is skipped)."""
    out = []
    try:
        with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


@dataclass
class RunInfo:
    """One row of `seqplay runs`. ``problem`` is set (and the rest may be empty) for a corrupt run."""

    name: str
    path: Path
    arch: str = ""
    source: str = ""
    params: int = 0
    steps: int = 0
    best_val_loss: float | None = None
    best_val_bpc: float | None = None
    created: float = 0.0
    updated: float = 0.0
    status: str = ""
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def inspect_run(path: Path) -> RunInfo:
    """Read a run folder's summary and check its pieces; never raises for a broken folder."""
    info = RunInfo(name=path.name, path=path)
    try:
        summary = json.loads((path / "run.json").read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError
    except FileNotFoundError:
        info.problem = "run.json missing"
        return info
    except (OSError, ValueError):
        info.problem = "run.json unreadable"
        return info
    for key in ("arch", "source", "status"):
        setattr(info, key, str(summary.get(key) or ""))
    if info.status in LIVE_STATUSES and process_alive(summary) is False:
        info.status = "interrupted"
    for key in ("params", "steps"):
        try:
            setattr(info, key, int(summary.get(key) or 0))
        except (TypeError, ValueError):
            pass
    for key in ("best_val_loss", "best_val_bpc", "created", "updated"):
        value = summary.get(key)
        if isinstance(value, int | float):
            setattr(info, key, float(value))
    if not (path / "config.json").is_file():
        info.problem = "config.json missing"
    elif not (path / "tokenizer.json").is_file():
        info.problem = "tokenizer.json missing"
    else:
        steps = step_checkpoints(path)
        if steps:
            newest = steps[-1][1]
            why = verify_checkpoint(newest)
            if why is not None:
                ok = latest_checkpoint(path)
                info.problem = f"{newest.name}: {why}" + ("" if ok else " (no intact checkpoint)")
        elif info.status not in LIVE_STATUSES:
            best = path / "checkpoints" / "best.json"
            if not best.exists():
                info.problem = "no checkpoint"
    return info


def list_runs(runs_dir: str | Path | None = None) -> list[RunInfo]:
    """Every run folder under the runs directory, newest first."""
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    runs = [inspect_run(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(runs, key=lambda r: (r.created or r.path.stat().st_mtime), reverse=True)


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's config.json (the TrainConfig it was started with), or None when missing or unreadable."""
    try:
        data = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
