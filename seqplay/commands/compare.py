"""``seqplay compare A [B]``: same-randomness A/B of two sampler settings, two checkpoints or two runs.

Both sides generate from ``--prompt`` with one random stream (``--seed``): at every step they draw with
the same uniform number through the inverse CDF of their own processed distribution, so where the
texts differ it is the knob, not luck. B defaults to A (compare two settings of one run). Settings:
``--set k=v`` for both sides, ``--set-a`` / ``--set-b`` for one (names of ``seqplay generate``'s options,
values as JSON or text), ``--preset-a`` / ``--preset-b`` to start from a preset. Prints both texts with
the first divergence marked, and each side's mean log-prob per token (``--json``: one object).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

_SET_HELP = "Sampling setting name=value (repeatable), e.g. temperature=0.7 or top_k=40."


@click.command("compare", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_a")
@click.argument("run_b", required=False)
@click.option("--prompt", "-p", default="", help="Text both sides continue (- reads stdin).")
@click.option("--set", "set_both", multiple=True, help=_SET_HELP + " Both sides.")
@click.option("--set-a", multiple=True, help=_SET_HELP + " Side A.")
@click.option("--set-b", multiple=True, help=_SET_HELP + " Side B.")
@click.option("--preset-a", default=None, type=click.Path(dir_okay=False), help="Side A starts from this preset.")
@click.option("--preset-b", default=None, type=click.Path(dir_okay=False), help="Side B starts from this preset.")
@click.option("--max-tokens", "-n", default=100, show_default=True, type=click.IntRange(0), help="New tokens at most per side.")
@click.option("--seed", "-s", default=None, type=int, help="Seed of the shared random stream (default: a fresh one, printed).")
@click.option("--window", type=click.Choice(["exact", "slide"]), default="exact", show_default=True,
              help="Transformer past its context: exact, or slide (approximate).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1), help="Torch threads.")
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | mps")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with both sides and the divergence.")
def compare(run_a: str, run_b: str | None, prompt: str, set_both: tuple[str, ...], set_a: tuple[str, ...],
            set_b: tuple[str, ...], preset_a: str | None, preset_b: str | None, max_tokens: int, seed: int | None,
            window: str, threads: int, device: str, as_json: bool) -> None:
    """Generate from RUN_A and RUN_B (default: RUN_A again) with the same random numbers."""
    from engine.generation.settings import SamplingSettings, parse_assignments

    if prompt == "-":
        prompt = sys.stdin.read()

    def side(preset: str | None, own: tuple[str, ...]) -> SamplingSettings:
        base = SamplingSettings.load_preset(preset) if preset else SamplingSettings()
        return parse_assignments([*set_both, *own], base.replace(max_tokens=max_tokens)).validate()

    settings_a, settings_b = side(preset_a, set_a), side(preset_b, set_b)

    import torch

    from engine.generation.compare import compare as run_compare
    from engine.runs.checkpoint import load_model

    torch.set_num_threads(threads)
    loaded_a = load_model(run_a, device=device)
    loaded_b = load_model(run_b, device=device) if run_b and run_b != run_a else loaded_a
    for loaded, name in ((loaded_a, run_a), (loaded_b, run_b or run_a)):
        if loaded.model.task != "lm":
            from engine.errors import ConfigError

            raise ConfigError(f"{name} is a {loaded.model.task} model; compare continues text with language models")
    result = run_compare((loaded_a.model, loaded_a.tokenizer), (loaded_b.model, loaded_b.tokenizer), prompt,
                         settings_a, settings_b, seed=seed, window=window,
                         labels=(run_a, run_b or run_a))
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    _print(result, loaded_a.tokenizer, diff_a=[*set_both, *set_a], diff_b=[*set_both, *set_b])


def _print(result: Any, tok: Any, diff_a: list[str], diff_b: list[str]) -> None:
    d = result.divergence
    tty = sys.stdout.isatty()
    for name, s, sets in (("A", result.a, diff_a), ("B", result.b, diff_b)):
        if d is None:
            body = s.text
        else:
            head = tok.decode(s.tokens[:d])
            rest = s.text[len(head):] if s.text.startswith(head) else tok.decode(s.tokens[d:])
            body = head + (click.style(rest, fg="yellow") if tty else "⟦" + rest + "⟧")
        label = f"{name}: {s.label}" + (f" ({', '.join(sets)})" if sets else "")
        click.echo(click.style(label, bold=True) if tty else label)
        click.echo(result.prompt + body)
        click.echo(f"  mean log-prob per token {s.mean_logprob:.3f} (model {s.mean_raw_logprob:.3f}), "
                   f"{len(s.tokens)} tokens, {s.reason}{', approximate' if s.approximate else ''}")
    if d is None:
        click.echo(f"identical: {len(result.a.tokens)} tokens from seed {result.seed}")
    else:
        u = result.uniforms[d] if d < len(result.uniforms) else float("nan")
        click.echo(f"first divergence at token {d} (u = {u:.4f}), seed {result.seed}")
