"""``seqplay generate RUN``: stream text from a trained run or checkpoint.

Language models continue ``--prompt`` token by token, printing as they go (``--json``: one JSON object
per token with ``token, text, prob, raw_prob, top, entropy``, then a ``generation_done`` object with
the per-token time split into model, processors and stream). Decoding is exact by default; ``--window
slide`` is the faster approximation and says so. ``--beams B`` runs beam search instead and prints the
best hypothesis. A seq2seq run maps each line of the prompt to an output line; a masked LM fills the
blanks (``_`` or ``[MASK]``) of the prompt. ``--prompt -`` reads the prompt from standard input.
``--preset FILE`` loads a sampling chain saved with ``--save-preset FILE``. Ctrl-C stops cleanly (exit
code 130).

The sampling options are derived from ``engine.generation.settings.SamplingSettings`` (its fields, their
defaults and help), so the CLI, the app and presets share one description; docs/sampling.md has each
control's reference and formula.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from engine.generation.settings import BEAMS, LENGTH_PENALTY, SamplingSettings, cli_fields, setting_of
from engine.settings import settings_of
from engine.training.config import TrainConfig
from seqplay.commands.options import option


def sampling_options(fn: Callable) -> Callable:
    """Add one ``--name`` option per plain SamplingSettings setting (parsed and bounds-checked by its
    ``Setting``; default None = the preset's / the settings' default), plus --ban, --stop, --seed,
    --max-tokens, --alternatives, --order, --preset."""
    options = [
        click.option("--preset", "preset", default=None, type=click.Path(dir_okay=False),
                     help="Sampling preset (JSON: the ordered chain of stages and their parameters)."),
        click.option("--order", default=None, help="Stage order, comma-separated (e.g. top_k,temperature)."),
        click.option("--ban", multiple=True, type=int, help="Token id never to produce (repeatable)."),
        click.option("--stop", multiple=True, help="Stop before this text (repeatable; \\n allowed)."),
        option(setting_of("seed"), "-s", default=None),
        option(setting_of("top_alternatives"), default=None, help="Top alternatives per token in --json [5]."),
        option(setting_of("max_tokens"), "-n", default=None, help="New tokens at most [200]."),
    ]
    for s in reversed(cli_fields()):
        names = ["-t"] if s.name == "temperature" else []
        extra = " Default: 1 for language models, 0 for seq2seq and mlm." if s.name == "temperature" else f" [{s.default}]"
        options.append(option(s, *names, default=None, help=s.help + extra))
    for opt in options:
        fn = opt(fn)
    return fn


def settings_from_options(opts: dict[str, Any], task: str = "lm") -> SamplingSettings:
    """SamplingSettings from the parsed options: the preset (if any), then every option given."""
    base = SamplingSettings.load_preset(opts["preset"]) if opts.get("preset") else SamplingSettings()
    changes: dict[str, Any] = {f.name: opts[f.name] for f in cli_fields() if opts.get(f.name) is not None}
    if opts.get("temperature") is None and not opts.get("preset"):
        changes["temperature"] = 1.0 if task == "lm" else 0.0
    if opts.get("order"):
        changes["order"] = [name.strip() for name in opts["order"].split(",") if name.strip()]
    if opts.get("ban"):
        changes["banned"] = sorted({*base.banned, *opts["ban"]})
    if opts.get("stop"):
        changes["stop"] = [s.encode().decode("unicode_escape") for s in opts["stop"]]
    for name, key in (("seed", "seed"), ("max_tokens", "max_tokens"), ("alternatives", "top_alternatives")):
        if opts.get(name) is not None:
            changes[key] = opts[name]
    return base.replace(**changes).validate()


def warn_unknown(tok: Any, text: str, what: str = "the prompt", n: int | None = None, kind: str = "") -> int:
    """Say on stderr how many pieces of ``text`` are outside the vocabulary (they become ``<unk>``)."""
    from engine.data.tokenizers import count_unknown

    n = count_unknown(tok, text) if n is None else n
    if n:
        piece = {"char": "character", "word": "word"}.get(kind or getattr(tok, "name", ""), "piece")
        click.echo(f"warning: {n} {piece}{'s' if n != 1 else ''} of {what} {'is' if n == 1 else 'are'} not in the "
                   f"model's vocabulary and became <unk>", err=True)
    return n


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class Chunked:
    """Text written to stdout in chunks (every ``flush_s`` seconds and at the end), not per token."""

    def __init__(self, flush_s: float = 0.04):
        self.parts: list[str] = []
        self.flush_s, self.last = flush_s, time.perf_counter()

    def write(self, text: str) -> None:
        self.parts.append(text)
        if time.perf_counter() - self.last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            _out("".join(self.parts))
            self.parts.clear()
        self.last = time.perf_counter()


class JsonLines(Chunked):
    """One JSON object per line, written in chunks."""

    def add(self, obj: dict[str, Any]) -> None:
        self.write(json.dumps(obj, ensure_ascii=False) + "\n")


_T = {s.name: s for s in settings_of(TrainConfig)}


@click.command("generate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run")
@click.option("--prompt", "-p", default="", help="Text to continue (seq2seq: lines to map; mlm: text with _ blanks; - reads stdin).")
@sampling_options
@option(BEAMS, "-b")
@option(LENGTH_PENALTY)
@click.option("--window", type=click.Choice(["exact", "slide"]), default="exact", show_default=True,
              help="Transformer past its context: exact (recompute the last context; the model's distribution) "
                   "or slide (approximate: re-encode half the KV cache; faster).")
@click.option("--stages", "stages_at", default=None, type=click.IntRange(0),
              help="Sampler lab: print the distribution before and after each stage at generated token N.")
@click.option("--save-preset", default=None, type=click.Path(dir_okay=False), help="Write the sampling settings as a preset.")
@option(_T["threads"], default=None, help="Torch threads, at most the cores (default: 1, which is fastest for a token from "
        "a cache or a recurrent state, and the idle cores for the Transformer's window recomputed past its context).")
@option(_T["device"], default="cpu", help="cpu | cuda | cuda:N | mps")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
@click.pass_context
def generate(ctx: click.Context, run: str, prompt: str, beams: int, length_penalty: float, window: str,
             stages_at: int | None, save_preset: str | None, threads: int | None, device: str, as_json: bool,
             **opts: Any) -> None:
    """Generate text from RUN (a run folder, run name or checkpoint file)."""
    if prompt == "-":
        prompt = sys.stdin.read()
    settings_from_options(opts)  # refuse bad flags before loading anything
    LENGTH_PENALTY.check(length_penalty)

    import torch

    from engine.device import choose_threads, pick_device
    from engine.runs.checkpoint import load_model

    device = pick_device(device)  # a device that is not there: one line, before loading anything
    torch.set_num_threads(choose_threads(threads) if threads is not None else 1)
    loaded = load_model(run, device=device)
    model, tok = loaded.model, loaded.tokenizer
    settings = settings_from_options(opts, model.task)
    warn_unknown(tok, prompt)
    if save_preset:
        settings.save_preset(save_preset)
    if not as_json and opts.get("alternatives") is None:
        settings = settings.replace(top_alternatives=0)  # printed text shows no alternatives: skip them
    try:
        if stages_at is not None:
            _stages(model, tok, prompt, settings, stages_at, as_json)
        elif model.task == "seq2seq":
            _seq2seq(model, tok, prompt, settings, beams, length_penalty, as_json)
        elif model.task == "mlm":
            _mlm(model, tok, prompt, settings, as_json)
        elif beams > 1:
            _beams(model, tok, prompt, settings, beams, length_penalty, as_json)
        else:
            # a Transformer's window recompute on the idle cores (only it gains from a second thread)
            wide = choose_threads(None) if threads is None and getattr(model, "max_context", None) else None
            _stream(model, tok, prompt, settings, window, as_json, wide)
    except KeyboardInterrupt:
        if not as_json:
            _out("\n")
        click.echo("stopped", err=True)
        ctx.exit(130)


def _stream(model: Any, tok: Any, prompt: str, settings: Any, window: str, as_json: bool,
            window_threads: int | None = None) -> None:
    from engine.generation.streaming import APPROXIMATE_NOTE, Generation

    gen = Generation(model, tok, prompt, settings, window=window, window_threads=window_threads)
    if gen.approximate:
        click.echo(f"[{APPROXIMATE_NOTE}]", err=True)
    lines, text = JsonLines(), Chunked()
    if not as_json:
        _out(click.style(prompt, bold=True) if sys.stdout.isatty() else prompt)
    try:
        for event in gen:
            if as_json:
                lines.add(event.to_dict())
            elif event.text:
                text.write(event.text)
    except KeyboardInterrupt:
        gen.cancel()
        raise
    finally:
        if as_json:
            n = max(len(gen.generated), 1)
            per_token = {k.replace("_s", "_ms_per_token"): v * 1e3 / n for k, v in gen.timing.items()}
            lines.add({**gen.done_event().to_dict(), "approximate": gen.approximate, **per_token})
            lines.flush()
        else:
            text.write("\n")
            text.flush()
    note = " (approximate)" if gen.approximate else ""
    n = max(len(gen.generated), 1)
    split = ", ".join(f"{k[:-2]} {v * 1e3 / n:.2f}" for k, v in gen.timing.items())
    click.echo(f"[{gen.reason}: {len(gen.generated)} tokens, {gen.tokens_per_s:,.0f} tokens/s{note}; "
               f"ms per token: {split}]", err=True)


def _stages(model: Any, tok: Any, prompt: str, settings: Any, step: int, as_json: bool) -> None:
    from engine.errors import ConfigError
    from engine.generation.lab import stage_view

    if model.task != "lm":
        raise ConfigError("--stages shows a language model's sampling chain; this is a " + model.task + " run")
    view = stage_view(model, tok, prompt, settings, step)
    if as_json:
        _out(json.dumps({"event": "stages", **view}, ensure_ascii=False) + "\n")
        return

    def bars(rows: list[dict[str, Any]]) -> str:
        return "  ".join(f"{r['text']!r} {r['p']:.3f}" for r in rows[:6])

    _out(f"{prompt}{view['text']} | token {view['position']}\n")
    if not view["stages"]:
        _out("no stage is active: the draw uses the model's distribution\n")
    for s in view["stages"]:
        _out(f"{s['stage']:>20s}: kept {s['kept']}, removed {len(s['removed'])}, boosted {len(s['boosted'])}, "
             f"entropy {s['entropy_after']:.3f}\n{'':22s}{bars(s['after'])}\n")


def _beams(model: Any, tok: Any, prompt: str, settings: Any, width: int, length_penalty: float, as_json: bool) -> None:
    from engine.generation.beams import beam_search, beam_text
    from engine.generation.streaming import start_ids

    ids = [int(i) for i in tok.encode(prompt)] or start_ids(tok)
    found = beam_search(model, ids, width=width, length_penalty=length_penalty, max_tokens=settings.max_tokens,
                        settings=settings, tokenizer=tok)

    def text(b: Any) -> str:
        return beam_text(b, tok)

    if as_json:
        for b in found:
            _out(json.dumps({"event": "beam", "text": text(b), "ids": list(b.ids), "logprob": b.logprob,
                             "score": b.score, "reason": b.reason}, ensure_ascii=False) + "\n")
        return
    _out(prompt + text(found[0]) + "\n")
    click.echo(f"[best of {len(found)} beams ({found[0].reason}): score {found[0].score:.3f}, "
               f"log-prob {found[0].logprob:.2f}]", err=True)


def _seq2seq(model: Any, tok: Any, prompt: str, settings: Any, beams: int, length_penalty: float, as_json: bool) -> None:
    from engine.generation.decoders import seq2seq_decode

    for line in prompt.splitlines() or [""]:
        ids = seq2seq_decode(model, tok, line, settings, beams=beams if beams > 1 else None, length_penalty=length_penalty)
        text = tok.decode(ids)
        if as_json:
            _out(json.dumps({"event": "seq2seq", "input": line, "output": text, "ids": ids}, ensure_ascii=False) + "\n")
        else:
            _out(text + "\n")


def _mlm(model: Any, tok: Any, prompt: str, settings: Any, as_json: bool) -> None:
    import dataclasses

    from engine.generation.decoders import fill_blanks

    text, filled = fill_blanks(model, tok, prompt, settings)
    if as_json:
        for f in filled:
            _out(json.dumps({"event": "blank", **dataclasses.asdict(f)}, ensure_ascii=False) + "\n")
        _out(json.dumps({"event": "filled", "text": text}, ensure_ascii=False) + "\n")
        return
    _out(text + "\n")
