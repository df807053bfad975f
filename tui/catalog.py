"""How the panes write the engine's facts: numbers, sizes, durations, run paths and the corpus list.

Nothing here computes a fact of its own: statistics and token counts come from ``engine.data.stats``,
parameter counts and estimates from ``engine.planning``, runs from ``engine.runs.folders``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from corpora import DEFAULT_CORPUS, list_corpora
from engine.runs.folders import runs_root

__all__ = ["DEFAULT_CORPUS", "PREVIEW_CHARS", "builtin_corpora", "human_bytes", "human_count", "human_seconds",
           "human_time", "short_path"]

PREVIEW_CHARS = 4000


def builtin_corpora() -> dict[str, str]:
    """Built-in corpus name -> one-line description (``corpora.list_corpora``)."""
    return {c.name: c.description for c in list_corpora()}


def short_path(path: str) -> str:
    """A run path relative to the runs folder ("runs/NAME/...") when it lies inside it."""
    try:
        return str(Path("runs") / Path(path).resolve().relative_to(runs_root().resolve()))
    except (ValueError, OSError):
        return path


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


def human_time(stamp: float | None) -> str:
    """A Unix time as local "YYYY-MM-DD HH:MM" ("" for none)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else ""
