"""What the app remembers between sessions: the last data, model and training settings and the recent
files, in one TOML file (``settings.toml``) in the user config folder (platformdirs), or under
``$SEQPLAY_HOME/config`` when that is set (tests). A missing or broken file is an empty memory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

RECENT_LIMIT = 10


def settings_path() -> Path:
    home = os.environ.get("SEQPLAY_HOME")
    if home:
        return Path(home).expanduser() / "config" / "settings.toml"
    from platformdirs import user_config_dir

    return Path(user_config_dir("seqplay", appauthor=False)) / "settings.toml"


def load() -> dict[str, Any]:
    try:
        with open(settings_path(), "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _plain(value: Any) -> Any:
    """TOML has no null: drop None values (recursively)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value if v is not None]
    return value


def save(data: dict[str, Any]) -> None:
    """Write atomically; a read-only config folder is not an error (the memory is a convenience)."""
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(tomli_w.dumps(_plain(data)), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        pass


def add_recent(items: list[str], item: str, limit: int = RECENT_LIMIT) -> list[str]:
    """``item`` first, no duplicates, at most ``limit`` entries."""
    return [item] + [x for x in items if x != item][: limit - 1]
