"""Run folders: where each training run keeps its config, tokenizer, metrics and checkpoints.

Layout (``docs/architecture.md``)::

    <runs dir>/<run name>/
        config.json          TrainConfig.to_dict()
        tokenizer.json       the tokenizer (Tokenizer.save)
        metrics.jsonl        one Event.to_dict() per line; StepMetrics flattened to {"event": "step", ...}
        run.json             summary: arch, source, params, steps, best_val_loss, best_val_bpc, created,
                             updated, wall_time, status, pid, host, pid_started (the training process)
        checkpoints/         step-000500.{safetensors,json} (last K kept), best.{safetensors,json}
        lock                 flock'ed by the process training the run (pid and host inside)

A run whose process died without a goodbye (SIGKILL, power loss) still says "running" in run.json;
listing reports it as "interrupted" when its pid is not alive on this host (``seqplay resume`` continues
it from its last checkpoint).

The runs directory is ``--runs-dir``, else ``<home>/runs`` (``engine.runs.paths.home_dir``). Every file
of a run is opened through ``engine.runs.paths`` (no links, no FIFOs or devices, capped reads).
Listing (``list_runs``) is torch-free and the one listing the CLI and the app use; a broken run is a
row with its ``problem``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError
from engine.runs.checkpoint import (
    atomic_write_json,
    latest_checkpoint,
    read_meta,
    step_checkpoints,
    verify_checkpoint,
)
from engine.runs.paths import (
    BadJSON,
    find_run,
    home_dir,
    is_link,
    open_append,
    open_regular,
    read_bytes,
    read_json,
    runs_root,
)

__all__ = ["RunInfo", "MetricsWriter", "RunLock", "create_run", "find_run", "home_dir", "inspect_run", "list_runs",
           "read_metrics", "runs_root", "write_summary"]

MAX_METRICS_BYTES = 1 << 30  # metrics.jsonl read back (curves): at most this much


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
    """Update run.json atomically with ``fields`` (others kept; a link or broken file is replaced)."""
    path = Path(run_dir) / "run.json"
    try:
        summary = read_json(path)
    except (OSError, BadJSON, CheckpointError):
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
    The file is opened through the jail: a metrics.jsonl that is a link (or a FIFO, a device) is
    refused with a one-line ``CheckpointError``, so nothing is ever appended outside the run.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"
        try:
            fd = open_append(self.path)
        except OSError as err:
            raise CheckpointError(f"cannot write {self.path}: {err.strerror}; check the run folder is writable") from None
        self._fh: Any = os.fdopen(fd, "a", encoding="utf-8")
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
    """Every parseable line of a run's metrics.jsonl (a torn, non-JSON or too deep line is skipped;
    a linked or non-regular file reads as empty)."""
    out = []
    try:
        data = read_bytes(Path(run_dir) / "metrics.jsonl", MAX_METRICS_BYTES)
    except (OSError, CheckpointError):
        return out
    from engine.runs.paths import parse_json

    for line in data.splitlines():
        try:
            obj = parse_json(line)
        except BadJSON:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


# --------------------------------------------------------------------------------------------- lock
LOCK_NAME = "lock"


class RunLock:
    """The training process's claim on a run folder: an exclusive ``fcntl`` lock on ``<run>/lock``,
    held while it trains (released on ``release()`` or when the process ends, however it ends).

    A second writer (``seqplay resume`` of a run that is still training, the app continuing it) gets
    a one-line ``CheckpointError`` naming the process that holds it. Where ``fcntl`` does not exist
    (Windows) the lock is a no-op."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(f"cannot lock {self.path.parent}: {err.strerror}; check the run folder is writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise CheckpointError(
                f"run {self.path.parent.name} is in use by {holder}; wait for it to finish or stop it first "
                f"(two writers would corrupt the run)") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(process_identity()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the fd releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    try:
        who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        pid, host = int(who["pid"]), str(who.get("host", ""))[:64]
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
    return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")


def lock_run(run_dir: Path) -> RunLock:
    """Lock ``run_dir`` for this process (``RunLock(run_dir).acquire()``)."""
    return RunLock(run_dir).acquire()


# ------------------------------------------------------------------------------------------ listing
@dataclass
class RunInfo:
    """One row of `seqplay runs` and of the app's Runs pane. ``problem`` is set (and the rest may be
    empty) for a broken run: a listing shows it with the reason instead of failing."""

    name: str
    path: Path
    arch: str = ""
    source: str = ""
    tokenizer: str = ""
    device: str = ""
    params: int = 0
    steps: int = 0
    tokens_seen: int | None = None  # from the newest intact checkpoint
    final_lr: float | None = None  # the learning rate at the newest intact checkpoint
    best_val_loss: float | None = None
    best_val_bpc: float | None = None
    wall_time: float | None = None  # seconds of training
    size: int = 0  # bytes on disk (regular files of the folder, links not followed)
    checkpoints: int = 0  # step checkpoints present
    created: float = 0.0
    updated: float = 0.0
    status: str = ""
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EARLIEST, LATEST_AHEAD = 0.0, 10 * 365 * 86400.0  # timestamps: from 1970 to ten years ahead


def _text(value: Any, limit: int = 200) -> str:
    """A summary field as display text: control characters (NUL, escapes) shown as '?', bounded."""
    return _CONTROL.sub("?", str(value if value is not None else ""))[:limit]


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e18 or value != value:
        return None
    return int(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def folder_size(path: Path, limit_entries: int = 100_000) -> int:
    """Bytes in the regular files under ``path`` (links and special files not followed or counted)."""
    total, stack, seen = 0, [path], 0
    while stack and seen < limit_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    seen += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
                    elif stat.S_ISDIR(st.st_mode):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total


def inspect_run(path: Path) -> RunInfo:
    """Read a run folder's summary and check its pieces; never raises for a broken folder (any
    failure becomes ``problem``, so one bad run cannot take a listing down)."""
    info = RunInfo(name=_text(path.name), path=path)
    try:
        _inspect(path, info)
    except PermissionError as err:
        where = Path(err.filename).name if err.filename else "a file"
        info.problem = info.problem or f"{where} unreadable (permission denied)"
    except Exception as err:  # noqa: BLE001 - a listing survives any single bad run
        info.problem = info.problem or f"unreadable ({_text(err, 200) or type(err).__name__})"
    if info.problem:  # short: paths inside the run are shown relative to it
        info.problem = info.problem.replace(str(path) + os.sep, "")
    return info


def _inspect(path: Path, info: RunInfo) -> None:
    info.size = folder_size(path)
    try:
        summary = read_json(path / "run.json")
        if not isinstance(summary, dict):
            raise BadJSON("not a JSON object")
    except FileNotFoundError:
        info.problem = "run.json missing"
        return
    except PermissionError:
        info.problem = "run.json unreadable (permission denied)"
        return
    except (OSError, BadJSON, CheckpointError) as err:
        info.problem = f"run.json unreadable ({_text(err, 200)})"
        return
    for key in ("arch", "source", "status", "tokenizer", "device"):
        setattr(info, key, _text(summary.get(key)))
    if info.status in LIVE_STATUSES and process_alive(summary) is False:
        info.status = "interrupted"
    info.params, info.steps = _count(summary.get("params")) or 0, _count(summary.get("steps")) or 0
    info.best_val_loss, info.best_val_bpc = _number(summary.get("best_val_loss")), _number(summary.get("best_val_bpc"))
    info.wall_time = _number(summary.get("wall_time"))
    now = time.time()
    for key in ("created", "updated"):
        value = _number(summary.get(key))
        if value is None and summary.get(key) is None:
            continue
        if value is None or not EARLIEST <= value <= now + LATEST_AHEAD:
            info.problem = f"run.json has an impossible {key} time ({_text(summary.get(key), 30)})"
            continue
        setattr(info, key, value)
    problem = _pieces(path, info)
    info.problem = info.problem or problem


def _pieces(path: Path, info: RunInfo) -> str | None:
    """What is wrong with a run's files (None: nothing); fills in what the newest checkpoint says."""
    for name in ("config.json", "tokenizer.json"):
        if is_link(path / name):
            return f"{name} is a symbolic link"
        if not (path / name).is_file():
            return f"{name} missing"
    if is_link(path / "checkpoints"):
        return "checkpoints/ is a symbolic link"
    steps = step_checkpoints(path)
    info.checkpoints = len(steps)
    why = verify_checkpoint(steps[-1][1]) if steps else None
    intact = (steps[-1][1] if why is None else latest_checkpoint(path)) if steps else None
    best = path / "checkpoints" / "best.json"
    if intact is None and best.is_file() and verify_checkpoint(best) is None:
        intact = best
    if intact is not None:
        meta = read_meta(intact)
        info.tokens_seen = _count(meta.get("tokens_seen"))
        groups = (meta.get("optimizer") or {}).get("param_groups") if isinstance(meta.get("optimizer"), dict) else None
        if isinstance(groups, list) and groups and isinstance(groups[0], dict):
            info.final_lr = _number(groups[0].get("lr"))
    if why is not None:
        return _text(f"{steps[-1][1].name}: {why}" + ("" if intact else " (no intact checkpoint)"), 300)
    elif info.status not in LIVE_STATUSES and intact is None:
        return "no checkpoint"
    return None


def list_runs(runs_dir: str | Path | None = None) -> list[RunInfo]:
    """Every run folder under the runs directory, newest first (torch-free; one broken run is a row
    with its ``problem``, never an exception). This is the one run listing: CLI and app use it."""
    root = runs_root(runs_dir)
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()]
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise CheckpointError(f"the runs folder {root} is a file or under a file; point SEQPLAY_HOME (or --runs-dir) at a folder") from None
    except OSError as err:
        raise CheckpointError(f"cannot list the runs folder {root}: {err.strerror}; check its permissions") from None
    runs = [inspect_run(p) for p in entries]

    def when(r: RunInfo) -> float:
        if r.created:
            return r.created
        try:
            return r.path.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(runs, key=when, reverse=True)


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's config.json (the TrainConfig it was started with), or None when missing or unreadable."""
    try:
        data = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
