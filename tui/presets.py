"""Named sampling presets of the generation lab, kept in the user config folder as JSON
(``$SEQPLAY_HOME/config/presets.json`` when SEQPLAY_HOME is set, else platformdirs' user config dir).

A preset is the sampling settings that differ from the defaults (``SamplingSettings.to_dict()`` keys);
loading one starts from the defaults, so a preset saved before a new setting existed still loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

BUILTIN: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0},
    "creative": {"temperature": 1.1, "top_p": 0.95},
    "focused": {"temperature": 0.7, "top_k": 40},
}


def presets_file() -> Path:
    home = os.environ.get("SEQPLAY_HOME")
    if home:
        return Path(home).expanduser() / "config" / "presets.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("seqplay", appauthor=False)) / "presets.json"


def load_presets() -> dict[str, dict[str, Any]]:
    """The built-in presets, then the user's (a user preset of the same name wins)."""
    out = {name: dict(values) for name, values in BUILTIN.items()}
    try:
        saved = json.loads(presets_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if isinstance(saved, dict):
        out.update({str(k): v for k, v in saved.items() if isinstance(v, dict)})
    return out


def save_preset(name: str, values: dict[str, Any]) -> Path:
    """Save (or replace) a user preset; returns the file written."""
    name = name.strip()
    if not name:
        raise ConfigError("a preset needs a name; type one")
    path = presets_file()
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            saved = {}
    except (OSError, ValueError):
        saved = {}
    saved[name] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path
