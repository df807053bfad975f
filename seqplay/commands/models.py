"""``seqplay archs``: the architecture table, straight from the registry (imports no torch)."""

from __future__ import annotations

import json
from typing import Any

import click

from engine.settings import Setting
from seqplay.commands.options import option

CHAR_VOCAB = 65  # tinyshakespeare's character vocabulary: the size the table reports params for
SPECIALS = {"mlm": 1, "seq2seq": 3}  # [MASK]; pad, bos, eos: appended to the tokenizer's vocabulary


def arch_rows(vocab_size: int = CHAR_VOCAB) -> list[dict[str, Any]]:
    """One dict per architecture: name, family, task, description, equation, params, lr, defaults."""
    from engine.models.registry import ARCHS

    rows = []
    for info in ARCHS.values():
        vocab = vocab_size + SPECIALS.get(info.task, 0)
        cfg = info.make_config(vocab)
        settings = {k: v for k, v in cfg.to_dict().items() if k != "vocab_size"}
        rows.append({
            "name": info.name,
            "family": info.family,
            "task": info.task,
            "description": info.description,
            "equation": info.equation,
            "params": cfg.num_params(),
            "vocab_size": vocab,
            "default_lr": info.default_lr,
            "defaults": settings,
        })
    return rows


def _short(settings: dict[str, Any]) -> str:
    keys = ("order", "cell", "encoder", "layers", "width", "embed", "heads", "context", "attention")
    return " ".join(f"{k}={settings[k]}" for k in keys if k in settings)


def arch_detail(name: str, vocab_size: int = CHAR_VOCAB) -> dict[str, Any]:
    """``arch_rows``' row for one architecture plus ``settings``: each setting the user may change
    (``registry.model_settings``: name, type, default, bounds, choices, help) with the `seqplay train`
    flag that sets it."""
    from engine.models.registry import get_arch, model_settings
    from seqplay.commands.train import ARCH_FLAGS, SHARED_FLAGS

    info = get_arch(name)
    row = next(r for r in arch_rows(vocab_size) if r["name"] == info.name)
    named = {*SHARED_FLAGS.values(), *ARCH_FLAGS.values(), "context"}
    row["settings"] = [
        {"name": s.name, "type": s.type_name, "default": s.default,
         "flag": s.cli_flag if s.name in named else f"--set {s.name}=...",
         "min": s.lo, "max": s.hi, "choices": list(s.choices), "help": s.help}
        for s in model_settings(info.name)
    ]
    row["fixed"] = {k: v for k, v in info.defaults.items()}  # chosen by the arch itself (e.g. its cell)
    return row


def _allowed(s: dict[str, Any]) -> str:
    if s["choices"]:
        return " | ".join(s["choices"])
    if s["min"] is None and s["max"] is None:
        return ""
    return f"{s['min'] if s['min'] is not None else ''}..{s['max'] if s['max'] is not None else ''}"


def _print_detail(row: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{row['name']}[/bold] ({row['family']}, task {row['task']}): {row['description']}", highlight=False)
    console.print(f"  {row['equation']}", highlight=False, markup=False)
    fixed = "".join(f", {k}={v}" for k, v in row["fixed"].items())
    console.print(f"  {row['params']:,} parameters for a vocabulary of {row['vocab_size']}; default lr "
                  f"{row['default_lr']:g}{fixed}", highlight=False)
    table = Table(title=f"settings of {row['name']} (`seqplay train --arch {row['name']} ...`)")
    for col in ("setting", "type", "default", "allowed", "flag", "what it does"):
        table.add_column(col, no_wrap=col in ("setting", "flag"), overflow="fold")
    for s in row["settings"]:
        table.add_row(s["name"], s["type"], str(s["default"]), _allowed(s), s["flag"], s["help"])
    console.print(table)


@click.command("archs")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@option(Setting(name="vocab", kind=int, default=CHAR_VOCAB, lo=1, hi=10_000_000,
               help="Tokenizer vocabulary size the parameter counts assume."))
def archs(name: str | None, as_json: bool, vocab: int) -> None:
    """List the model architectures with their default sizes and parameter counts, or with NAME show
    one architecture: its equation and every setting (type, default, the `seqplay train` flag)."""
    if name:
        row = arch_detail(name, vocab)
        if as_json:
            click.echo(json.dumps(row, indent=2))
        else:
            _print_detail(row)
        return
    rows = arch_rows(vocab)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"seqplay architectures (params for a vocabulary of {vocab})")
    for col, justify in (("name", "left"), ("family", "left"), ("params", "right"), ("lr", "right"),
                         ("default size", "left"), ("description", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['params']:,}", f"{r['default_lr']:g}",
                      _short(r["defaults"]), r["description"])
    Console().print(table)
