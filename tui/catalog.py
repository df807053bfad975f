"""Torch-free glue between the TUI and the engine's listing modules.

Corpora, statistics, run folders and rough estimates. Each helper uses the engine module that owns
the subject (``engine.data.sources``, ``engine.data.tokenizers``, ``engine.runs.folders``) and falls back to reading files
per docs/architecture.md when that module is missing, so the app works while the engine grows.
Everything here may be slow on big files: call it from a thread worker, never from an event handler.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DataError

DEFAULT_CORPUS = "grammar"
FALLBACK_CORPORA = {
    "grammar": "sentences from a small probabilistic grammar (default)",
    "copy": "copy a random string after a separator (long-range memory)",
    "reverse": "reverse a string (seq2seq)",
    "brackets": "balanced brackets (counting, nesting)",
    "addition": "multi-digit addition written out",
    "stdlib": "Python standard-library source code",
}
PREVIEW_CHARS = 4000


def home_dir() -> Path:
    try:
        from engine.data.sources import home_dir as engine_home

        return Path(engine_home())
    except ImportError:
        pass
    env = os.environ.get("SEQPLAY_HOME")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("seqplay"))


def runs_dir() -> Path:
    try:
        from engine.data.sources import runs_dir as engine_runs

        return Path(engine_runs())
    except ImportError:
        return home_dir() / "runs"


def builtin_corpora() -> dict[str, str]:
    """Built-in corpus name -> one-line description."""
    try:
        from corpora import list_corpora

        return {c.name: c.description for c in list_corpora()}
    except ImportError:
        pass
    try:
        import engine.data.sources as data

        for attr in ("builtin_corpora", "list_corpora", "corpora"):
            fn = getattr(data, attr, None)
            if callable(fn):
                found = fn()
                if isinstance(found, dict):
                    return {str(k): _describe(v) for k, v in found.items()}
                return {str(getattr(c, "name", c)): _describe(c) for c in found}
    except ImportError:
        pass
    return dict(FALLBACK_CORPORA)


def _describe(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    return str(getattr(obj, "description", "") or "")


def load_text(spec: str) -> tuple[str, str]:
    """(display name, text) of a file path or a built-in corpus spec. Raises DataError."""
    try:
        from engine.data.sources import resolve_source
    except ImportError:
        resolve_source = None
    if resolve_source is not None:
        from engine.data.sources import check_learnable

        src = resolve_source(spec)
        text = src.text()
        check_learnable(set(text), src.name)  # refuse at open, not only when training starts
        return src.name, text
    path = Path(spec).expanduser()
    if not path.is_file():
        if spec.split(":")[0] in FALLBACK_CORPORA:
            raise DataError(f"built-in corpus {spec!r} is not available yet; open a text file instead")
        raise DataError(f"{spec}: no such file; pick an existing text file or a built-in corpus")
    try:
        from engine.data.textio import read_text
    except ImportError:
        read_text = None
    if read_text is not None:
        return path.name, read_text(str(path))
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path.name} looks binary; choose a text file")
    try:
        return path.name, raw.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise DataError(f"{path.name} is not UTF-8 text; convert it to UTF-8") from None


@dataclass
class TextStats:
    chars: int
    lines: int
    vocab: int  # distinct characters
    words: int
    tokens: dict[str, int] = field(default_factory=dict)  # tokenizer -> token count


def basic_stats(text: str) -> TextStats:
    return TextStats(chars=len(text), lines=text.count("\n") + (1 if text and not text.endswith("\n") else 0),
                     vocab=len(set(text)), words=len(text.split()))


BPE_SAMPLE = 1_000_000  # characters: BPE on a larger text is estimated from a prefix
SCAN_SAMPLE = 4_000_000  # characters kept by scan_text; token counts of bigger texts are estimated


def scan_text(spec: str, sample_chars: int = SCAN_SAMPLE) -> tuple[str, str, TextStats, float]:
    """(display name, sample, stats, scale) of a file or corpus, read in chunks so a huge file never sits
    in memory: ``stats`` are exact, ``sample`` is the first ``sample_chars`` characters (the whole text
    if it is shorter) and ``scale`` = characters / len(sample) (1.0 when the sample is the whole text).
    Raises DataError (also for text with nothing to learn)."""
    from engine.data.sources import check_learnable, resolve_source

    src = resolve_source(spec)
    parts: list[str] = []
    kept = chars = lines = words = 0
    distinct: set[str] = set()
    last = ""
    for chunk in src.chunks():
        if not chunk:
            continue
        if kept < sample_chars:
            parts.append(chunk[: sample_chars - kept])
            kept += len(parts[-1])
        chars += len(chunk)
        lines += chunk.count("\n")
        words += len(chunk.split())  # chunks are cut inside whitespace: no word is split between two
        distinct.update(chunk)
        last = chunk[-1]
    check_learnable(distinct, src.name)
    lines += 1 if last and last != "\n" else 0
    sample = "".join(parts)
    stats = TextStats(chars=chars, lines=lines, vocab=len(distinct), words=words)
    return src.name, sample, stats, (chars / len(sample) if sample else 1.0)


def token_count(text: str, kind: str, scale: float = 1.0) -> tuple[int, bool]:
    """(tokens, estimated?) for tokenizer ``kind`` on ``text``, a sample of ``scale`` times its length
    (see scan_text); raises ImportError until engine.data.tokenizers lands."""
    from engine.data.tokenizers import build_tokenizer

    estimated = (kind == "bpe" and len(text) > BPE_SAMPLE) or scale > 1.0
    sample = text[:BPE_SAMPLE] if kind == "bpe" and len(text) > BPE_SAMPLE else text
    tok = build_tokenizer(kind, sample)
    n = len(tok.encode(sample))
    if estimated:
        n = round(n * len(text) * scale / max(1, len(sample)))
    return n, estimated


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    path: Path
    name: str
    arch: str = "?"
    source: str = "?"
    params: int | None = None
    steps: int | None = None
    best_val_loss: float | None = None
    best_val_bpc: float | None = None
    updated: str = ""
    status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def list_runs(folder: Path | None = None) -> list[RunInfo]:
    """Every run folder, newest first (``engine.runs.folders.list_runs`` when it exists)."""
    folder = folder or runs_dir()
    try:
        from engine.runs import folders as engine_runs
    except ImportError:
        engine_runs = None
    if engine_runs is not None:
        out = []
        for r in engine_runs.list_runs(folder):
            updated = r.updated or r.created
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(updated)) if updated else ""
            status = r.status + (f" ({r.problem})" if r.problem else "")
            out.append(RunInfo(path=Path(r.path), name=r.name, arch=r.arch or "?", source=r.source or "?",
                               params=r.params or None, steps=r.steps, best_val_loss=r.best_val_loss,
                               best_val_bpc=r.best_val_bpc, updated=stamp, status=status))
        return out
    if not folder.is_dir():
        return []
    runs: list[RunInfo] = []
    for child in folder.iterdir():
        meta_path = child / "run.json"
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            runs.append(RunInfo(path=child, name=child.name, status="unreadable"))
            continue
        runs.append(RunInfo(
            path=child, name=child.name, arch=str(meta.get("arch", "?")), source=str(meta.get("source", "?")),
            params=meta.get("params"), steps=meta.get("steps"), best_val_loss=meta.get("best_val_loss"),
            best_val_bpc=meta.get("best_val_bpc"), updated=str(meta.get("updated", "")),
            status=str(meta.get("status", "")), extra=meta,
        ))
    runs.sort(key=lambda r: (r.updated, r.name), reverse=True)
    return runs


def val_curve(run: Path) -> list[tuple[int, float]]:
    """(step, validation bits per character) from a run's metrics.jsonl."""
    points: list[tuple[int, float]] = []
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return points
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("event") == "eval" and row.get("val_bpc") is not None:
                points.append((int(row["step"]), float(row["val_bpc"])))
    return points


def short_path(path: str) -> str:
    """A run path relative to the runs folder ("runs/NAME/...") when it lies inside it."""
    try:
        return str(Path("runs") / Path(path).resolve().relative_to(runs_dir().resolve()))
    except (ValueError, OSError):
        return path


def run_config(run: Path) -> dict[str, Any]:
    path = Path(run) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------
# Devices and estimates
# ---------------------------------------------------------------------------------------------


def detect_device(requested: str = "auto") -> str:
    """The device training would use, guessed without importing torch."""
    if requested != "auto":
        return requested
    if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
        return "cuda"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


# Sustained training throughput assumed per device (FLOP/s): deliberately rough.
# CPU: measured ~4e10 FLOP/s on 2 cores here (transformer, width 128, 2 layers: ~20k tokens/s).
DEVICE_FLOPS = {"cpu": 2.0e10 * max(1, min(os.cpu_count() or 1, 8)), "cuda": 2.0e13, "mps": 2.0e12}


@dataclass
class Estimate:
    params: int
    memory_bytes: int
    tokens_per_s: float
    seconds: float | None
    warning: str = ""


def estimate(params: int, width: int, layers: int, batch: int, context: int, steps: int | None,
             time_budget: float | None, device: str, train_tokens: int | None) -> Estimate:
    """Memory (weights, grads, Adam moments, activations), tokens/s (6·N FLOPs per token) and time."""
    activations = batch * context * max(width, 1) * max(layers, 1) * 16 * 4
    memory = params * 4 * 4 + activations
    flops_per_token = 6 * max(params, 1) + 12 * max(layers, 1) * context * max(width, 1)
    tps = DEVICE_FLOPS.get(device.split(":")[0], DEVICE_FLOPS["cpu"]) / flops_per_token
    seconds = None
    if steps:
        seconds = steps * batch * context / tps
    if time_budget:
        seconds = min(seconds, time_budget) if seconds else time_budget
    warning = ""
    if train_tokens and params > 10 * train_tokens:
        warning = (f"the model has {params:,} parameters for {train_tokens:,} training tokens "
                   f"({params / train_tokens:.0f}x): it will memorise; use a smaller model or more text")
    return Estimate(params, memory, tps, seconds, warning)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "--"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def human_count(n: float | None) -> str:
    if n is None:
        return "--"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"
