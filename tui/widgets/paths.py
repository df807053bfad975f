"""Typing a path: an Input suggester that completes file and folder names (``~`` understood)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester


class PathSuggester(Suggester):
    """Completes the last component of a typed path to the first matching entry (folders end in "/")."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value)


def complete_path(value: str) -> str | None:
    if not value:
        return None
    head, _, prefix = value.rpartition("/")
    folder = Path(os.path.expanduser(head + "/" if head or value.startswith("/") else ".")) if value else Path(".")
    if value.startswith("~") and "/" not in value:
        return "~/" if value == "~" else None
    try:
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder)
                       if e.name.startswith(prefix) and (prefix.startswith(".") or not e.name.startswith(".")))
    except OSError:
        return None
    names = [n for n in names if n != prefix]
    if not names:
        return None
    return (head + "/" if head or value.startswith("/") else "") + names[0]
