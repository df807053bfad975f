"""``seqplay generate RUN``: stream text from a trained run or checkpoint.

Language models continue ``--prompt`` token by token, printing as they go (``--json``: one JSON object
per token with ``token, text, prob, raw_prob, top, entropy``, then a ``generation_done`` object).
``--beams B`` runs beam search instead and prints the best hypothesis. A seq2seq run maps each line
of the prompt to an output line; a masked LM fills the blanks (``_`` or ``[MASK]``) of the prompt.
``--prompt -`` reads the prompt from standard input. Ctrl-C stops cleanly (exit code 130).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from engine.generation.settings import SamplingSettings
from engine.settings import Setting, settings_of
from engine.training.config import TrainConfig
from seqplay.commands.options import option


def _settings(opts: dict[str, Any]) -> Any:
    s = SamplingSettings(
        temperature=opts["temperature"], top_k=opts["top_k"], top_p=opts["top_p"], min_p=opts["min_p"],
        typical_p=opts["typical_p"], epsilon=opts["epsilon"], eta=opts["eta"],
        repetition_penalty=opts["repetition_penalty"], repetition_window=opts["repetition_window"],
        presence_penalty=opts["presence_penalty"], frequency_penalty=opts["frequency_penalty"],
        no_repeat_ngram=opts["no_repeat_ngram"], banned=list(opts["ban"]), seed=opts["seed"],
        max_tokens=opts["max_tokens"], stop=[s.encode().decode("unicode_escape") for s in opts["stop"]],
        top_alternatives=opts["top_alternatives"],
    )
    return s.validate()


def warn_unknown(tok: Any, text: str, what: str = "the prompt") -> int:
    """Say on stderr how many pieces of ``text`` are outside the vocabulary (they become ``<unk>``)."""
    unk = getattr(tok, "unk_id", None)
    if unk is None or not text:
        return 0
    n = sum(1 for i in tok.encode(text) if int(i) == unk)
    if n:
        piece = {"char": "character", "word": "word"}.get(getattr(tok, "name", ""), "piece")
        click.echo(f"warning: {n} {piece}{'s' if n != 1 else ''} of {what} {'is' if n == 1 else 'are'} not in the "
                   f"model's vocabulary and became <unk>", err=True)
    return n


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _json_line(obj: dict[str, Any]) -> None:
    _out(json.dumps(obj, ensure_ascii=False) + "\n")


_S = {s.name: s for s in settings_of(SamplingSettings)}
_T = {s.name: s for s in settings_of(TrainConfig)}
# Beam search's exponent (as Hugging Face's generate: score = logprob / len**length_penalty); finite.
LENGTH_PENALTY = Setting(name="length_penalty", kind=float, default=1.0,
                         help="Beam score = logprob / len**this (> 0 favours longer, < 0 shorter).")
BEAMS = Setting(name="beams", kind=int, default=1, lo=1, hi=1024, help="Beam width (> 1: beam search).")
_SAMPLING_FLAGS = ("top_k", "top_p", "min_p", "typical_p", "epsilon", "eta", "repetition_penalty", "repetition_window",
                   "presence_penalty", "frequency_penalty", "no_repeat_ngram")


def _s(name: str, *names: str, **kw: Any):
    return option(_S[name], *names, **kw)


def _with(*decorators: Any):
    def wrap(fn: Any) -> Any:
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return wrap


@click.command("generate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run")
@click.option("--prompt", "-p", default="", help="Text to continue (seq2seq: lines to map; mlm: text with _ blanks; - reads stdin).")
@_s("max_tokens", "-n")
@_s("temperature", "-t", default=None, help="0 = greedy. Default: 1 for language models, 0 for seq2seq and mlm.")
@_with(*[_s(name) for name in _SAMPLING_FLAGS])
@click.option("--ban", multiple=True, type=int, help="Token id never to produce (repeatable).")
@click.option("--stop", multiple=True, help="Stop before this text (repeatable; \\n allowed).")
@option(BEAMS, "-b")
@option(LENGTH_PENALTY)
@_s("seed", "-s")
@_s("top_alternatives", help="Top alternatives per token in --json.")
@click.option("--window", type=click.Choice(["slide", "exact"]), default="slide", show_default=True,
              help="Transformer past its context: slide the KV cache (fast) or recompute the last context (exact).")
@option(_T["threads"], default=1, help="Torch threads (1 is fastest for small models; at most the cores).")
@option(_T["device"], default="cpu", help="cpu | cuda | cuda:N | mps")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
@click.pass_context
def generate(ctx: click.Context, run: str, prompt: str, beams: int, length_penalty: float, window: str,
             threads: int, device: str, as_json: bool, **opts: Any) -> None:
    """Generate text from RUN (a run folder, run name or checkpoint file)."""
    if prompt == "-":
        prompt = sys.stdin.read()
    temperature = opts["temperature"]
    _settings({**opts, "temperature": 1.0 if temperature is None else temperature})  # refuse bad flags early
    LENGTH_PENALTY.check(length_penalty)

    import torch

    from engine.device import choose_threads, pick_device
    from engine.runs.checkpoint import load_model

    device = pick_device(device)  # a device that is not there: one line, before loading anything
    torch.set_num_threads(choose_threads(threads))
    loaded = load_model(run, device=device)
    model, tok = loaded.model, loaded.tokenizer
    if temperature is None:
        temperature = 1.0 if model.task == "lm" else 0.0
    settings = _settings({**opts, "temperature": temperature})
    warn_unknown(tok, prompt)
    try:
        if model.task == "seq2seq":
            _seq2seq(model, tok, prompt, settings, beams, length_penalty, as_json)
        elif model.task == "mlm":
            _mlm(model, tok, prompt, settings, as_json)
        elif beams > 1:
            _beams(model, tok, prompt, settings, beams, length_penalty, as_json)
        else:
            _stream(model, tok, prompt, settings, window, as_json)
    except KeyboardInterrupt:
        if not as_json:
            _out("\n")
        click.echo("stopped", err=True)
        ctx.exit(130)


def _stream(model: Any, tok: Any, prompt: str, settings: Any, window: str, as_json: bool) -> None:
    from engine.generation.generate import Generation

    gen = Generation(model, tok, prompt, settings, window=window)
    if not as_json:
        _out(click.style(prompt, bold=True) if sys.stdout.isatty() else prompt)
    try:
        for event in gen:
            if as_json:
                _json_line(event.to_dict())
            elif event.text:
                _out(event.text)
    except KeyboardInterrupt:
        gen.cancel()
        raise
    finally:
        if as_json:
            _json_line(gen.done_event().to_dict())
        else:
            _out("\n")
    click.echo(f"[{gen.reason}: {len(gen.generated)} tokens, {gen.tokens_per_s:,.0f} tokens/s]", err=True)


def _beams(model: Any, tok: Any, prompt: str, settings: Any, width: int, length_penalty: float, as_json: bool) -> None:
    from engine.generation.generate import beam_search, start_ids

    ids = [int(i) for i in tok.encode(prompt)] or start_ids(tok)
    found = beam_search(model, ids, width=width, length_penalty=length_penalty, max_tokens=settings.max_tokens,
                        eot_id=getattr(tok, "eot_id", None))
    if as_json:
        for b in found:
            _json_line({"event": "beam", "text": tok.decode(list(b.ids)), "ids": list(b.ids), "logprob": b.logprob, "score": b.score})
        return
    _out(prompt + tok.decode(list(found[0].ids)) + "\n")
    click.echo(f"[best of {len(found)} beams: score {found[0].score:.3f}, log-prob {found[0].logprob:.2f}]", err=True)


def _seq2seq(model: Any, tok: Any, prompt: str, settings: Any, beams: int, length_penalty: float, as_json: bool) -> None:
    from engine.generation.generate import seq2seq_decode

    for line in prompt.splitlines() or [""]:
        ids = seq2seq_decode(model, tok, line, settings, beams=beams if beams > 1 else None, length_penalty=length_penalty)
        text = tok.decode(ids)
        if as_json:
            _json_line({"event": "seq2seq", "input": line, "output": text, "ids": ids})
        else:
            _out(text + "\n")


def _mlm(model: Any, tok: Any, prompt: str, settings: Any, as_json: bool) -> None:
    import dataclasses

    from engine.generation.generate import fill_blanks

    text, filled = fill_blanks(model, tok, prompt, settings)
    if as_json:
        for f in filled:
            _json_line({"event": "blank", **dataclasses.asdict(f)})
        _json_line({"event": "filled", "text": text})
        return
    _out(text + "\n")
