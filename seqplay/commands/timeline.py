"""``seqplay timeline RUN -p PROMPT``: one sample from every snapshot of a run, with the same seed.

The run's snapshots (``engine.runs.snapshots``: steps 0, 50, 100, 200, ... plus the last and the best)
each continue ``PROMPT`` under the same sampling settings and seed, so the lines show the text going
from noise to words to style as training went on. ``--list`` only lists the snapshots (no torch).
``--json``: one object per snapshot ``{"step", "tags", "val_loss", "text"}``.
"""

from __future__ import annotations

import json

import click


@click.command("timeline", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run")
@click.option("--prompt", "-p", default="", help="Text every snapshot continues.")
@click.option("--max-tokens", "-n", default=80, show_default=True, type=click.IntRange(0), help="New tokens per sample.")
@click.option("--seed", "-s", default=0, show_default=True, type=int, help="The one seed every sample uses.")
@click.option("--temperature", "-t", default=1.0, show_default=True, type=float, help="0 = greedy.")
@click.option("--top-k", default=0, show_default=True, type=int, help="Keep the k most likely tokens (0 = off).")
@click.option("--top-p", default=1.0, show_default=True, type=float, help="Nucleus mass (1 = off).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="Torch threads.")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | mps")
@click.option("--list", "only_list", is_flag=True, help="List the snapshots (step, tags, val loss, size) only.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per snapshot.")
def timeline(run: str, prompt: str, max_tokens: int, seed: int, temperature: float, top_k: int, top_p: float,
             threads: int, device: str, only_list: bool, as_json: bool) -> None:
    """Sample every snapshot of RUN with the same seed (RUN: a run folder or name)."""
    from engine.generation.settings import SamplingSettings
    from engine.runs.folders import find_run
    from engine.runs.snapshots import list_snapshots

    settings = SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, max_tokens=max_tokens).validate()
    if only_list:
        snaps = list_snapshots(find_run(run))
        for s in snaps:
            if as_json:
                click.echo(json.dumps(s.to_dict()))
            else:
                loss = "-" if s.val_loss is None else f"{s.val_loss:.4f}"
                click.echo(f"step {s.step:>7}  val {loss:>8}  {s.tensors_bytes / 1e6:7.2f} MB  {' '.join(s.tags)}")
        if not snaps and not as_json:
            click.echo("no snapshots", err=True)
        return

    import torch

    from engine.runs.snapshots import timeline as samples

    torch.set_num_threads(threads)
    for row in samples(run, prompt, settings, device=device):
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            loss = "" if row["val_loss"] is None else f" val {row['val_loss']:.3f}"
            tags = f" ({', '.join(t for t in row['tags'] if t != 'scheduled')})" if set(row["tags"]) - {"scheduled"} else ""
            click.echo(click.style(f"step {row['step']}{loss}{tags}", bold=True) + f"\n{prompt}{row['text']}\n")
