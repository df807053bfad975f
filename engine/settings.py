"""Settings described once: the metadata of every config field, and the one check that uses it.

A config dataclass declares each field with ``setting(default, help=..., lo=..., hi=..., ...)``: the
field's type (from its annotation), default, bounds, choices, help text and the architectures that use
it travel with the field. ``settings_of(cls)`` lists them as ``Setting`` objects; ``check_fields(obj)``
refuses a value outside them; ``Setting.parse`` turns text (a CLI flag, a TUI input) into a value;
``strict_from_dict`` builds a config from untrusted JSON. The CLI options (``seqplay.commands.options``),
the TUI forms and JSON loading all go through these, so the three refuse the same values with the same
one-line message. Torch-free.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

_KEY = "seqplay"  # the key of a field's metadata mapping that holds its Setting
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class Setting:
    """What a config field is: its type, default, bounds, choices, help and which architectures use it.

    ``lo``/``hi`` are inclusive unless ``lo_open``/``hi_open``; a float must be finite unless
    ``allow_inf``. ``optional``: ``None`` is allowed (``none_means`` says what it means). ``archs``:
    the architectures that use the field (``None``: every architecture of its config class).
    ``flag``: the CLI spelling when it is not ``--name-with-dashes``.
    """

    name: str = ""
    kind: type = str
    default: Any = None
    help: str = ""
    label: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    allow_inf: bool = False
    optional: bool = False
    none_means: str = ""
    choices: tuple[str, ...] = ()
    archs: tuple[str, ...] | None = None
    flag: str = ""
    pattern: str = ""  # text settings: a regular expression the whole value must match
    advice: str = ""  # what to do when the value is refused (default: an example value)
    cli: bool = True  # a plain ``--flag value`` option of the commands that take this config

    # -- naming -------------------------------------------------------------------------------------
    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def subject(self) -> str:
        """How messages name the setting: the CLI spelling without dashes, plus the flag if that differs
        (else the label, if one is given)."""
        base = self.name.replace("_", "-")
        if self.cli_flag != "--" + base:
            return f"{base} ({self.cli_flag})"
        return f"{base} ({self.label})" if self.label and self.label != self.name.replace("_", " ") else base

    @property
    def type_name(self) -> str:
        return self.kind.__name__

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly description the TUI and ``seqplay archs NAME --json`` show."""
        return {
            "name": self.name, "label": self.label or self.name.replace("_", " "), "type": self.type_name,
            "default": self.default, "min": self.lo, "max": self.hi, "min_open": self.lo_open, "max_open": self.hi_open,
            "optional": self.optional, "none_means": self.none_means, "choices": list(self.choices),
            "help": self.help, "archs": list(self.archs) if self.archs is not None else None, "flag": self.cli_flag,
        }

    # -- words ----------------------------------------------------------------------------------------
    def _fmt(self, x: float) -> str:
        return str(int(x)) if self.kind is int or (float(x).is_integer() and abs(x) < 1e15) else f"{x:g}"

    def expected(self) -> str:
        """What a valid value is, in words: 'a positive whole number', 'in (0, 1)', 'one of a, b'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern and self.help:
            return self.help.rstrip(".")
        if self.kind is bool:
            return "true or false"
        if self.kind is int:
            lo, hi = self.lo, self.hi
            if lo == 1:
                return "a positive whole number" + (f" up to {self._fmt(hi)}" if hi is not None else "")
            if lo is not None and hi is not None:
                return f"a whole number from {self._fmt(lo)} to {self._fmt(hi)}"
            if lo is not None:
                return f"a whole number >= {self._fmt(lo)}"
            return "a whole number"
        if self.kind is float:
            lo, hi = self.lo, self.hi
            if lo is not None and hi is not None:
                return f"in {'(' if self.lo_open else '['}{self._fmt(lo)}, {self._fmt(hi)}{')' if self.hi_open else ']'}"
            if lo == 0 and self.lo_open:
                return "positive" + ("" if self.allow_inf else " and finite")
            if lo is not None:
                return f"{'>' if self.lo_open else '>='} {self._fmt(lo)}" + ("" if self.allow_inf else " and finite")
            return "a number" if self.allow_inf else "a finite number"
        return {str: "text", list: "a list", dict: "a JSON object"}.get(self.kind, self.type_name)

    def refuse(self, value: Any) -> ConfigError:
        """The one-line error for a refused value: what is wrong; what to do."""
        what = self.expected()
        if self.optional:
            what += f" (or leave it out: {self.none_means})" if self.none_means else " (or leave it out)"
        shown = f"{value!r}" if not isinstance(value, float) else f"{value:g}"
        too_big = self.kind in (int, float) and self.accepts_type(value) and value is not None and (
            self.hi is not None and value > self.hi)
        example = f"e.g. {self.default}" if self.default not in (None, "", [], {}) else ""
        advice = self.advice or ("use a smaller value" if too_big else example)
        return ConfigError(f"{self.subject} must be {what}, got {shown}" + (f"; {advice}" if advice else ""))

    # -- checks ---------------------------------------------------------------------------------------
    def accepts_type(self, value: Any) -> bool:
        """Whether a value has the field's type (an int counts as a float; a bool is no number)."""
        if value is None:
            return self.optional
        if self.kind is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self.kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, self.kind)

    def check(self, value: Any) -> Any:
        """``value`` if the setting allows it, else a ConfigError naming the setting and its bounds."""
        if not self.accepts_type(value):
            raise self.refuse(value)
        if value is None:
            return value
        if self.choices and value not in self.choices:
            raise self.refuse(value)
        if self.pattern and isinstance(value, str) and not re.fullmatch(self.pattern, value):
            raise self.refuse(value)
        if self.kind in (int, float):
            if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not self.allow_inf)):
                raise self.refuse(value)
            lo, hi = self.lo, self.hi
            if lo is not None and (value < lo or (self.lo_open and value == lo)):
                raise self.refuse(value)
            if hi is not None and (value > hi or (self.hi_open and value == hi)):
                raise self.refuse(value)
        return value

    def parse(self, text: str, check: bool = True) -> Any:
        """A value of this setting from text (a CLI flag, a TUI input, ``--set KEY=VALUE``), checked
        unless ``check`` is false (type only). Empty text is ``None`` for an optional setting."""
        raw = text.strip() if isinstance(text, str) else text
        if not isinstance(raw, str):
            return self.check(raw) if check else raw
        if raw == "" and self.optional:
            return None
        value: Any = raw
        try:
            if self.kind is bool:
                if raw.lower() not in _TRUE + _FALSE:
                    raise ValueError
                value = raw.lower() in _TRUE
            elif self.kind is int:
                value = int(raw)
            elif self.kind is float:
                value = float(raw)
        except ValueError:
            raise self.refuse(raw) from None
        return self.check(value) if check else value


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A dataclass field with its ``Setting`` metadata (name, type and default are filled from the field)."""
    kw: dict[str, Any] = {"metadata": {_KEY: Setting(**meta)}}
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    else:
        kw["default"] = default
    return field(**kw)


def _kind(hint: Any) -> tuple[type, bool]:
    """(the base type, whether None is allowed) of a field's annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _kind(args[0])[0] if len(args) == 1 else object, True
    if hint is Any:
        return object, True
    return (origin or hint), False


@functools.cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    """Every field of a config dataclass as a ``Setting`` (fields declared without ``setting()`` get
    their type and default only)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY) or Setting()
        kind, optional = _kind(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append(dataclasses.replace(meta, name=f.name, kind=kind, default=default,
                                       optional=meta.optional or optional))
    return tuple(out)


def setting_of(cls: type, name: str) -> Setting:
    for s in settings_of(cls):
        if s.name == name:
            return s
    raise KeyError(name)


def check_fields(obj: Any) -> None:
    """Refuse (one-line ConfigError) the first field of ``obj`` outside its setting's type or bounds."""
    for s in settings_of(type(obj)):
        if s.kind is object:
            continue
        s.check(getattr(obj, s.name))


def strict_from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build a config dataclass from untrusted JSON: unknown names and values of the wrong type are
    refused with a one-line ConfigError (the same words as the CLI), never passed on to code that
    would fail later. Bounds are checked by the config's ``validate()``."""
    if not isinstance(data, dict):
        raise ConfigError(f"a {what} block must be a JSON object, got {type(data).__name__}")
    known = {s.name: s for s in settings_of(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {', '.join(map(str, unknown))}; remove them from the config")
    for name, value in data.items():
        s = known[name]
        if s.kind is not object and not s.accepts_type(value):
            raise s.refuse(value)
    return cls(**data)
