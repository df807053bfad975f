"""``seqplay corpora`` and ``seqplay inspect``: see the data before training on it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import click

from engine.data.tokenizers import KINDS
from engine.settings import Setting, setting_of
from engine.training.config import TrainConfig
from seqplay.commands.options import option


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


@click.command("corpora")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def corpora(as_json: bool) -> None:
    """List the built-in corpora (usable wherever a file path is, e.g. `copy:distance=40`)."""
    from corpora import DEFAULT_CORPUS, list_corpora

    rows = [
        {
            "name": c.name,
            "chars": c.approx_chars(),
            "paired": c.paired,
            "options": c.defaults,
            "description": c.description,
            "default": c.name == DEFAULT_CORPUS,
        }
        for c in list_corpora()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Built-in corpora (spec: name[:key=value,...])", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("chars", justify="right", no_wrap=True)
    table.add_column("seq2seq", no_wrap=True)
    table.add_column("description and options (defaults)")
    for r in rows:
        name = r["name"] + ("*" if r["default"] else "")
        opts = ",".join(f"{k}={v}" for k, v in r["options"].items())
        table.add_row(name, f"~{_human(r['chars'])}", "yes" if r["paired"] else "", f"{r['description']}\n[dim]{opts}[/dim]")
    table.caption = "* the default corpus"
    Console().print(table)


def inspect_source(spec: str, tokenizers: tuple[str, ...] = KINDS, vocab_size: int | None = None, preview: int = 400) -> dict[str, Any]:
    """Statistics of a file or corpus: characters, lines, distinct characters, tokens per tokenizer."""
    import numpy as np

    from engine.data.sources import check_learnable, prepare, resolve_source
    from engine.data.textio import detect_encoding

    source = resolve_source(spec)
    encoding = detect_encoding(source.path) if source.path is not None else None
    n_chars = n_lines = 0
    distinct: set[str] = set()
    head = ""
    last = ""
    for chunk in source.chunks():
        n_chars += len(chunk)
        n_lines += chunk.count("\n")
        distinct.update(map(chr, np.unique(np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)).tolist()))
        if len(head) < preview:
            head += chunk[: preview - len(head)]
        last = chunk[-1:] or last
    if last and last != "\n":
        n_lines += 1
    check_learnable(distinct, source.name)
    toks = []
    for kind in tokenizers:
        t0 = time.perf_counter()
        prep = prepare(source, kind, vocab_size if kind in ("word", "bpe") else None, val_fraction=0.0)
        toks.append(
            {
                "tokenizer": kind,
                "vocab_size": prep.tokenizer.vocab_size,
                "tokens": prep.n_tokens,
                "chars_per_token": round(n_chars / max(1, prep.n_tokens), 3),
                "dtype": prep.tokenizer.dtype.name,
                "seconds": round(time.perf_counter() - t0, 3),
                "cached": prep.cached,
            }
        )
    info: dict[str, Any] = {
        "source": source.spec,
        "encoding": encoding.codec if encoding else "built-in",
        "warning": encoding.note if encoding else None,
        "characters": n_chars,
        "lines": n_lines,
        "distinct_characters": len(distinct),
        "tokenizers": toks,
        "paired": source.paired,
        "preview": head,
    }
    if info["paired"]:
        info["pairs"] = len(source.pairs())
    return info


@click.command("inspect")
@click.argument("source", default="grammar")
@click.option(
    "--tokenizer", "-t", "tokenizers", multiple=True, type=click.Choice(KINDS),
    help="Tokenizer(s) to count tokens with (default: all four).",
)
@option(setting_of(TrainConfig, "vocab_size"), help="Vocabulary size for word/bpe (default 10000/1024).")
@option(Setting(name="preview", kind=int, default=400, lo=0, hi=1_000_000, help="Characters of text to preview."))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_cmd(source: str, tokenizers: tuple[str, ...], vocab_size: int | None, preview: int, as_json: bool) -> None:
    """Show statistics and a preview of SOURCE: a text file or a built-in corpus spec."""
    logger = logging.getLogger("seqplay.data")
    was_disabled, logger.disabled = logger.disabled, True  # the encoding warning is reported below
    try:
        info = inspect_source(source, tokenizers or KINDS, vocab_size, preview)
    finally:
        logger.disabled = was_disabled
    if info["warning"] and not as_json:
        click.echo(f"warning: {info['warning']}", err=True)
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("source", info["source"])
    summary.add_row("encoding", info["encoding"])
    summary.add_row("characters", f"{info['characters']:,}")
    summary.add_row("lines", f"{info['lines']:,}")
    summary.add_row("distinct characters", f"{info['distinct_characters']:,}")
    if info["paired"]:
        summary.add_row("source->target pairs", f"{info['pairs']:,} (usable for seq2seq)")
    console.print(summary)
    table = Table(title="Tokenizers", title_justify="left")
    for col, justify in (("tokenizer", "left"), ("vocab size", "right"), ("tokens", "right"), ("chars/token", "right"), ("ids", "left"), ("time", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for t in info["tokenizers"]:
        took = "cached" if t["cached"] else f"{t['seconds']:.2f}s"
        table.add_row(t["tokenizer"], f"{t['vocab_size']:,}", f"{t['tokens']:,}", f"{t['chars_per_token']:.2f}", t["dtype"], took)
    console.print(table)
    if preview:
        console.print(Panel(Text(info["preview"]), title="preview", title_align="left"))
