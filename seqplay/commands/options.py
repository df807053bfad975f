"""Click options derived from the settings' metadata (``engine.settings``): the flag, type, default,
help and choices of an option come from its config field, and a value is parsed and bounds-checked by
the field's ``Setting``, so a bad value on the command line gets the same one-line ``error:`` as in a
config file or from ``validate()`` (a ``ConfigError``, exit code 2)."""

from __future__ import annotations

from typing import Any

import click

from engine.settings import Setting

_UNSET: Any = object()


class SettingType(click.ParamType):
    """Parses a flag's text with its ``Setting`` (``check=False``: type only, ``validate()`` checks
    later; ``raw``: the text is kept for the command to parse, e.g. with the chosen arch's setting)."""

    def __init__(self, setting: Setting, check: bool = True, raw: bool = False):
        self.setting, self.check, self.raw = setting, check, raw
        self.name = setting.type_name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str) or self.raw:
            return value
        return self.setting.parse(value, check=self.check)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        if self.setting.choices:
            return "[" + "|".join(self.setting.choices) + "]"
        return {"int": "INTEGER", "float": "NUMBER"}.get(self.setting.type_name, "TEXT")


def option(s: Setting, *names: str, default: Any = _UNSET, help: str | None = None, dest: str | None = None,
           check: bool = True, raw: bool = False, multiple: bool = False, **extra: Any):
    """A click option for setting ``s``: ``--name-with-dashes`` (or ``s.flag``; extra ``names`` such as
    ``-n`` are added), its default and help; booleans become ``--x/--no-x`` switches."""
    flag = s.cli_flag
    default = s.default if default is _UNSET else default
    text = help if help is not None else s.help
    if s.kind is bool:
        spelling = flag if "/" in flag or default is False else f"{flag}/--no-{flag[2:]}"
        if default is False and "/" not in flag:
            return click.option(spelling, *names, dest or s.name, is_flag=True, default=False, help=text, **extra)
        return click.option(spelling, *names, dest or s.name, default=default, help=text,
                            show_default=default is not None, **extra)
    return click.option(flag, *names, dest or s.name, type=SettingType(s, check, raw), default=default, help=text,
                        show_default=default not in (None, ()) and not multiple, multiple=multiple, **extra)
