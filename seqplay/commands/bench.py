"""``seqplay bench [SUITE ...]``: run the benchmark suite, print a table, write JSON.

    seqplay bench                          # ceiling, train, generate, tokenizers (a few minutes)
    seqplay bench target                   # the fast defaults to a whole-split val loss 1.88 on tinyshakespeare
    seqplay bench target --baseline        # ... and nanoGPT's recipe re-implemented in the Trainer, same run
    seqplay bench wordlm overhead memory   # word LSTM/GRU/RNN vs word_language_model's loop, worker cost, peak RAM
    seqplay bench all --out bench.json

A thin command over ``benchmarks/suite.py`` (a source checkout: the suite is not installed with the
package). Every JSON file records the machine, CPU, device, torch version, thread count, load
average and the matmul ceilings measured in the run.
"""

from __future__ import annotations

import json
import sys
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
@click.option("--corpus", default=None,
              help="Text corpus for train/target/tokenizers/overhead/memory (default: $SEQPLAY_SHARED/corpora/tinyshakespeare.txt).")
@click.option("--word-corpus", default=None,
              help="Split folder (train/valid/test.txt) for wordlm (default: $SEQPLAY_SHARED/corpora/wikitext-2).")
@option(setting_of(TrainConfig, "threads"), help="Torch threads (default: the trainer's choice).")
@option(Setting(name="target_loss", kind=float, default=1.88, lo=0.0, lo_open=True, help="Validation loss for `target`."))
@click.option("--baseline", is_flag=True, help="target: also run nanoGPT's recipe (about 2 minutes more).")
@option(setting_of(TrainConfig, "steps"), default=None, help="Timed steps per architecture (train/wordlm).")
@option(Setting(name="seconds", kind=float, default=60.0, lo=0.0,
                help="wordlm: training time of the full- vs adaptive-softmax comparison (0: skip it)."))
@option(Setting(name="tokens", kind=int, default=500, lo=1, hi=1_000_000, help="generate: tokens per measurement."))
@click.option("--sizes", default="1,10,100", show_default=True, help="memory: corpus sizes in MB.")
@click.option("--arch", "archs", multiple=True, help="train: only these architectures (repeatable).")
@option(setting_of(TrainConfig, "device"), help="train: auto | cpu | cuda | cuda:N | mps.")
def bench(suites: tuple[str, ...], out: str | None, as_json: bool, corpus: str | None, word_corpus: str | None,
          threads: int | None,
          target_loss: float, baseline: bool, steps: int | None, seconds: float, tokens: int, sizes: str, archs: tuple[str, ...],
          device: str) -> None:
    """Run benchmark suites: ceiling, train, target, wordlm, generate, tokenizers, overhead, memory (or all).

    Prints a table and writes every figure with the machine, device, torch version and thread count
    to JSON. Timings on a shared machine move with its load: compare rows of one run.
    """
    from engine.data.sources import home_dir
    from engine.errors import ConfigError

    repo = Path(__file__).resolve().parents[2]  # a source checkout holds benchmarks/ beside seqplay/
    if (repo / "benchmarks" / "suite.py").exists() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        from benchmarks.suite import DEFAULT_SUITES, SUITES, format_value, run_suites
    except ImportError:
        raise ConfigError("seqplay bench needs a source checkout (benchmarks/suite.py is not installed); "
                          "run it from the repository root") from None

    chosen = list(SUITES) if "all" in suites else list(suites or DEFAULT_SUITES)
    try:
        size_list = [float(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be numbers of MB separated by commas, got {sizes!r}") from None
    step_opt = {"steps": steps} if steps else {}
    options = {
        "ceiling": {"device": device, "threads": threads},
        "train": {"corpus": corpus, "threads": threads, "archs": list(archs) or None, "device": device, **step_opt},
        "target": {"corpus": corpus, "target": target_loss, "baseline": baseline, "threads": threads},
        "wordlm": {"corpus": word_corpus, "threads": threads, "seconds": seconds, **step_opt},
        "generate": {"tokens": tokens},
        "tokenizers": {"corpus": corpus},
        "overhead": {"corpus": corpus},
        "memory": {"sizes_mb": size_list, "corpus": corpus},
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
