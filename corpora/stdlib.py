"""The Python standard library's own source, read from the running interpreter: a real corpus of
code on every machine, with no download. Files are taken in sorted path order (tests and
site-packages left out), each preceded by a ``# file: <path>`` line, until ``size`` characters.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from engine.errors import DataError

VERSION = 1
SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "idle_test", "__pycache__", "lib2to3"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def generate(size: int = 2_000_000) -> str:
    """About ``size`` characters of standard-library Python source."""
    root = stdlib_dir()
    if not root.is_dir():
        raise DataError(f"the Python standard library source is not at {root}; use another corpus (see `seqplay corpora`)")
    files = sorted(
        (p for p in root.rglob("*.py") if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    parts: list[str] = []
    total = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a few files are not UTF-8 or not readable: leave them out
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        part = f"# file: {path.relative_to(root).as_posix()}\n{text}\n"
        parts.append(part)
        total += len(part)
        if total >= size:
            break
    if not parts:
        raise DataError(f"no readable Python files under {root}; use another corpus (see `seqplay corpora`)")
    return "".join(parts)[:size] if total > size else "".join(parts)
