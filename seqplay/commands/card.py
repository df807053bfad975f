"""``seqplay card RUN`` writes a run's experiment card; ``seqplay replay CARD`` retrains from it.

The card (``engine.runs.card``) is one portable folder: data fingerprint, tokenizer and vocabulary,
every setting, seeds, the training machine, library versions, the curves as SVG and as JSON/CSV, the
samples and their sampler settings. ``replay`` trains the same run again and prints, step by step,
whether the loss matches the card (exactly on the same machine kind and thread count; within
``--tolerance`` nats elsewhere). Exit code 0 when every compared point matches, 1 when one does not.
"""

from __future__ import annotations

import json

import click


@click.command("card", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run")
@click.option("--out", default=None, help="Folder to write (default: RUN/card).")
@click.option("--corpus", default=None, help="The run's text, if it is no longer where the run read it.")
@click.option("--prompt", "-p", default="", help="Prompt of the card's fixed-seed samples.")
@click.option("--sample-tokens", default=200, show_default=True, type=click.IntRange(0), help="Tokens per sample.")
@click.option("--json", "as_json", is_flag=True, help="Print card.json.")
def card(run: str, out: str | None, corpus: str | None, prompt: str, sample_tokens: int, as_json: bool) -> None:
    """Write the experiment card of RUN (a run folder or name)."""
    from engine.runs.card import read_card, write_card

    folder = write_card(run, out=out, corpus=corpus, prompt=prompt, sample_tokens=sample_tokens)
    if as_json:
        click.echo(json.dumps(read_card(folder)))
        return
    click.echo(f"wrote {folder}: card.json, curves (loss.svg, lr.svg, curves.json, train.csv, eval.csv), samples.json, "
               f"tokenizer.json, README.md; replay it with `seqplay replay {folder}`")


@click.command("replay", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("card_path", metavar="CARD")
@click.option("--corpus", default=None, help="The card's text, if it is not at the path the card names.")
@click.option("--steps", default=None, type=click.IntRange(1), help="Replay only the first N steps.")
@click.option("--tolerance", default=None, type=click.FloatRange(0), help="Accept |loss difference| up to this (nats) instead of the automatic choice.")
@click.option("--runs-dir", default=None, help="Where the replayed run folder goes.")
@click.option("--all", "show_all", is_flag=True, help="Print every compared step (default: evaluations, mismatches and every 10th step).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per compared point, then a summary.")
@click.pass_context
def replay(ctx: click.Context, card_path: str, corpus: str | None, steps: int | None, tolerance: float | None,
           runs_dir: str | None, show_all: bool, as_json: bool) -> None:
    """Retrain from CARD (a folder written by `seqplay card`) and compare the curves step by step."""
    from engine.runs.card import replay as run_replay

    def show(row) -> None:
        if as_json:
            click.echo(json.dumps({"event": "replay_point", **row.to_dict()}))
        elif show_all or not row.match or row.what == "eval" or row.step % 10 == 0:
            card_v = "-" if row.card is None else f"{row.card:.6f}"
            diff = "-" if row.diff is None else f"{row.diff:.2e}"
            click.echo(f"{row.what:5} step {row.step:>6}  card {card_v:>10}  replay {row.replay:10.6f}  diff {diff:>8}  "
                       + ("ok" if row.match else "MISMATCH"))

    report = run_replay(card_path, corpus=corpus, runs_dir=runs_dir, steps=steps, tolerance=tolerance, on_row=show)
    summary = report.summary()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        verdict = "matches" if report.matched else "does NOT match"
        bad = report.first_mismatch
        click.echo(f"replay {verdict} the card over {len(report.rows)} points ({report.mode}: {report.why}; tolerance "
                   f"{report.tolerance:g}; largest difference {report.max_diff:.2e})"
                   + (f"; first mismatch: {bad.what} step {bad.step}" if bad else "") + f"; run folder {report.run_dir}")
    ctx.exit(0 if report.matched else 1)
