"""``seqplay archs``: the architecture table, straight from the registry (imports no torch)."""

from __future__ import annotations

import json
from typing import Any

import click

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


@click.command("archs")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--vocab", default=CHAR_VOCAB, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Tokenizer vocabulary size the parameter counts assume.")
def archs(as_json: bool, vocab: int) -> None:
    """List the model architectures with their default sizes and parameter counts."""
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
