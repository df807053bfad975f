"""``seqplay bench [SUITE ...]``: run the benchmark suite, print a table, write JSON.

    seqplay bench                          # train, generate, tokenizers (a few minutes)
    seqplay bench target                   # the tuned Transformer recipe to val loss 1.88 on tinyshakespeare
    seqplay bench target --baseline        # ... and nanoGPT's own recipe, timed in the same run
    seqplay bench wordlm overhead memory   # word LSTM/GRU/RNN vs word_language_model, worker cost, peak RAM
    seqplay bench all --out bench.json

Every JSON file records the machine, CPU, device, torch version, thread count and load average.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from engine.settings import Setting, setting_of
from engine.training.config import TrainConfig
from seqplay.commands.options import option


@click.command("bench")
@click.argument("suites", nargs=-1, metavar="[SUITE]...")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON file to write (default: $SEQPLAY_HOME/bench/bench-<time>.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON instead of a table.")
@click.option("--corpus", default=None, help="Corpus file for train/target/tokenizers (default: tinyshakespeare / WikiText-2, if present).")
@option(setting_of(TrainConfig, "threads"), help="Torch threads (default: the trainer's choice).")
@option(Setting(name="target_loss", kind=float, default=1.88, lo=0.0, lo_open=True, help="Validation loss for `target`."))
@click.option("--baseline", is_flag=True, help="target: also run nanoGPT's recipe (about 2 minutes more).")
@option(setting_of(TrainConfig, "steps"), default=None, help="Timed steps per architecture (train/wordlm).")
@option(Setting(name="tokens", kind=int, default=500, lo=1, hi=1_000_000, help="generate: tokens per measurement."))
@click.option("--sizes", default="1,10,100", show_default=True, help="memory: corpus sizes in MB.")
@click.option("--arch", "archs", multiple=True, help="train: only these architectures (repeatable).")
@option(setting_of(TrainConfig, "device"), help="train: auto | cpu | cuda | cuda:N | mps.")
def bench(suites: tuple[str, ...], out: str | None, as_json: bool, corpus: str | None, threads: int | None,
          target_loss: float, baseline: bool, steps: int | None, tokens: int, sizes: str, archs: tuple[str, ...],
          device: str) -> None:
    """Run benchmark suites: train, target, wordlm, generate, tokenizers, overhead, memory (or all).

    Prints a table and writes every figure with the machine, device, torch version and thread count
    to JSON. Timings on a shared machine move with its load: compare rows of one run.
    """
    from engine.bench import DEFAULT_SUITES, SUITES, format_value, run_suites
    from engine.data.sources import home_dir
    from engine.errors import ConfigError

    chosen = list(SUITES) if "all" in suites else list(suites or DEFAULT_SUITES)
    try:
        size_list = [float(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be numbers of MB separated by commas, got {sizes!r}") from None
    step_opt = {"steps": steps} if steps else {}
    options = {
        "train": {"corpus": corpus, "threads": threads, "archs": list(archs) or None, "device": device, **step_opt},
        "target": {"corpus": corpus, "target": target_loss, "baseline": baseline, "threads": threads},
        "wordlm": {"threads": threads, **step_opt},
        "generate": {"tokens": tokens},
        "tokenizers": {"corpus": corpus},
        "overhead": {},
        "memory": {"sizes_mb": size_list},
    }
    console = None
    if not as_json:
        from rich.console import Console

        console = Console()

    def show(rows) -> None:
        if console is None:
            return
        from rich.table import Table

        table = Table(title=f"seqplay bench: {rows[0].suite}" if rows else None, title_justify="left")
        for col, just in (("figure", "left"), ("value", "right"), ("details", "left")):
            table.add_column(col, justify=just)
        for r in rows:
            table.add_row(r.name, format_value(r.value, r.unit), r.note)
        console.print(table)

    result = run_suites(chosen, options, on_rows=show, threads=threads)
    path = Path(out) if out else home_dir() / "bench" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    env = result["environment"]
    load = env.get("load_average") or [float("nan")]
    click.echo(f"{env['cpu']} ({env['cores']} cores), {env['device']}, torch {env['torch']}, {env['threads']} threads, "
               f"load {load[0]:.1f}; JSON: {path}")
