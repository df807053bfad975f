"""Looking inside models: ``seqplay gradients | attention | gates | surprisal | table | memorization``.

Each command computes one analysis (``engine.insight``) and prints it rendered with Rich, or as one
JSON object with ``--json``. The computing is ``engine.insight.analyses.run_analysis``, which the
app's Insight pane reaches through the worker protocol (``Analyze``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import click

from engine.errors import ConfigError, DataError
from seqplay.commands.generate import warn_unknown

json_option = click.option("--json", "as_json", is_flag=True, help="Print the analysis as one JSON object.")


def _emit(data: dict[str, Any], as_json: bool, **render_kw: Any) -> None:
    if as_json:
        click.echo(json.dumps(_finite(data)))
        return
    from rich.console import Console

    from engine.insight import render

    renderer = render.RENDERERS[data["analysis"]]
    Console().print(renderer(data, **render_kw))


def _finite(obj: Any) -> Any:
    """JSON without NaN/inf (they become null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _text(text: str | None, file: str | None, default: str | None = None) -> str:
    if text is not None and file is not None:
        raise ConfigError("give either --text or --file, not both")
    if file is not None:
        from engine.data.textio import read_text

        return read_text(file)
    if text is not None:
        return text
    if default is not None:
        return default
    raise DataError("no text given; pass --text 'some text' or --file PATH")


def _run(params: Any, run: str | None, quiet: bool) -> dict[str, Any]:
    """Run one analysis through the engine's single entry point (progress lines go to stderr)."""
    from engine.insight.analyses import run_analysis

    seen: set[int] = set()

    def progress(done: int, total: int, message: str) -> None:
        if not quiet and total > 1 and done not in seen:
            seen.add(done)
            click.echo(f"[{done}/{total}] {message}", err=True)

    data = run_analysis(params, run, progress=progress)
    unknown = data.get("unknown") if isinstance(data, dict) else None
    if unknown and unknown.get("count"):
        warn_unknown(None, "", unknown["what"], n=int(unknown["count"]), kind=unknown.get("tokenizer", ""))
    return data


text_options = [
    click.option("--text", default=None, help="The text to analyse."),
    click.option("--file", "file", type=click.Path(dir_okay=False), default=None, help="Read the text from a file."),
]


def _with(options: list) -> Any:
    def wrap(fn: Any) -> Any:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return wrap


@click.command()
@click.argument("run", required=False)
@click.option("--arch", default="rnn,rnn-relu,ugrnn,gru,lstm,transformer", show_default=True,
              help="Fresh architectures to compare (also rnn-tanh, irnn = ReLU RNN with W_h = I).")
@click.option("--distance", default=100, show_default=True, help="Longest distance T - t measured.")
@click.option("--windows", default=8, show_default=True, help="Text windows averaged per model.")
@click.option("--seeds", default=3, show_default=True, help="Initialisations averaged per fresh model.")
@click.option("--source", default="grammar", show_default=True, help="Corpus for fresh models' windows.")
@click.option("--width", type=int, default=64, show_default=True, help="Fresh models' width.")
@click.option("--layers", type=int, default=1, show_default=True, help="Fresh models' layers.")
@click.option("--clip", type=float, default=None, help="Also show the curve after clipping the gradient norm to this.")
@click.option("--identity-init", is_flag=True, help="Initialise RNNs with W_h = I (Le et al. 2015).")
@json_option
def gradients(run: str | None, arch: str, distance: int, windows: int, seeds: int, source: str, width: int,
              layers: int, clip: float | None, identity_init: bool, as_json: bool) -> None:
    """Gradient norm ||dL_T/dh_t|| against the distance T - t.

    Without RUN: fresh models of each --arch at initialisation. With RUN: the trained model and the
    same model at initialisation, on its validation text.
    """
    from engine.insight import params as IP

    p = IP.GradientsParams(fresh=run is None, archs=arch, distance=distance, windows=windows, seeds=seeds,
                           source=source, width=width, layers=layers, clip=clip, identity_init=identity_init)
    _emit(_run(p, run, as_json), as_json)


@click.command()
@click.argument("run")
@click.option("--prompt", default=None, help="Text to attend over (default: the start of the run's validation text).")
@click.option("--target", default=None, help="seq2seq: the target text aligned with --prompt as source.")
@click.option("--layer", type=int, default=None, help="Only this layer (negative counts from the end).")
@click.option("--head", type=int, default=None, help="Only this head.")
@json_option
def attention(run: str, prompt: str | None, target: str | None, layer: int | None, head: int | None,
              as_json: bool) -> None:
    """Attention weights as a token x token heatmap (seq2seq: cross-attention alignment)."""
    from engine.insight import params as IP

    data = _run(IP.AttentionParams(prompt=prompt, target=target, layer=layer, head=head), run, as_json)
    if as_json:
        _emit(data, True)
    else:
        _emit(data, False, layer=layer, head=head)


@click.command()
@click.argument("run")
@_with(text_options)
@click.option("--layer", type=int, default=-1, show_default=True, help="Which layer (negative counts from the end).")
@click.option("--unit", "units", multiple=True, help="Units to show, e.g. h12 or c3 (LSTM cell); repeatable.")
@click.option("--pattern", default=None,
              help="Find the units most correlated with this: a regex or quotes, parens, words, line-position, bracket-depth.")
@click.option("--top", default=5, show_default=True, help="How many units the pattern search returns.")
@json_option
def gates(run: str, text: str | None, file: str | None, layer: int, units: tuple[str, ...], pattern: str | None,
          top: int, as_json: bool) -> None:
    """Gate activations and hidden units over a text, as coloured character strips."""
    from engine.insight import params as IP

    p = IP.GatesParams(text=_text(text, file, default=""), layer=layer, units=",".join(units), pattern=pattern, top=top)
    _emit(_run(p, run, as_json), as_json)


@click.command()
@click.argument("run")
@click.argument("other", required=False)
@_with(text_options)
@click.option("--chars", default=600, show_default=True, help="Characters of validation text when no text is given.")
@json_option
def surprisal(run: str, other: str | None, text: str | None, file: str | None, chars: int, as_json: bool) -> None:
    """Per-token loss over a text; with OTHER, the per-character difference RUN - OTHER."""
    from engine.insight import params as IP

    p = IP.SurprisalParams(other=other, text=_text(text, file, default=""), chars=chars)
    _emit(_run(p, run, as_json), as_json)


@click.command()
@click.argument("corpus", required=False)
@click.option("--train", "train_archs", default=None, help="Train these architectures first, e.g. rnn,lstm,transformer.")
@click.option("--time", "time_budget", type=float, default=None, help="Seconds of training per architecture.")
@click.option("--steps", type=int, default=None, help="Steps per architecture (instead of / besides --time).")
@click.option("--params", type=int, default=None, help="Match every model to about this many parameters (sets width).")
@click.option("--tokenizer", default="char", show_default=True, help="char | byte | word | bpe for the trained runs.")
@click.option("--runs-dir", default=None, help="Where the runs live (default: $SEQPLAY_HOME/runs).")
@json_option
def table(corpus: str | None, train_archs: str | None, time_budget: float | None, steps: int | None,
          params: int | None, tokenizer: str, runs_dir: str | None, as_json: bool) -> None:
    """The perplexity table: every run on CORPUS (all corpora without it) with the n-gram baseline."""
    from engine.insight.table import perplexity_table, train_table

    if train_archs:
        if corpus is None:
            raise ConfigError("--train needs a CORPUS to train on, e.g. `seqplay table grammar --train rnn,lstm --time 60`")
        archs = [a.strip() for a in train_archs.split(",") if a.strip()]
        data = train_table(corpus, archs, time_budget=time_budget, params=params, steps=steps, tokenizer=tokenizer,
                           runs_dir=runs_dir, progress=None if as_json else (lambda _d, _t, m: None if ": step " in m else click.echo(m, err=True)))
    else:
        data = perplexity_table(corpus, runs_dir)
    _emit(data, as_json)


@click.command()
@click.argument("run", required=False)
@click.option("--corpus", default=None, help="Training text to compare against (default: RUN's corpus).")
@click.option("--text", "texts", multiple=True, help="A sample to check (repeatable); default: generate from RUN.")
@click.option("--file", "file", type=click.Path(dir_okay=False), default=None, help="Check the text of this file.")
@click.option("--samples", default=3, show_default=True, help="Samples to generate from RUN when no text is given.")
@click.option("--tokens", default=300, show_default=True, help="Tokens per generated sample.")
@click.option("--temperature", default=1.0, show_default=True)
@click.option("-n", "--ngram", "n", default=8, show_default=True, help="n of the character n-gram overlap.")
@click.option("--seed", default=0, show_default=True)
@json_option
def memorization(run: str | None, corpus: str | None, texts: tuple[str, ...], file: str | None, samples: int,
                 tokens: int, temperature: float, n: int, seed: int, as_json: bool) -> None:
    """For each sample: the longest span copied from the training text and its n-gram overlap share."""
    from engine.data.sources import resolve_source
    from engine.insight.memorization import memorization_report

    loaded = None
    if run is not None:
        from engine.runs.checkpoint import load_model

        loaded = load_model(run)
    spec = corpus or (loaded.config.source if loaded is not None else None)
    if spec is None:
        raise ConfigError("give a RUN or --corpus to compare against")
    full = resolve_source(spec).text()
    val_fraction = loaded.config.val_fraction if loaded is not None else 0.1
    training = full[: int(len(full) * (1.0 - val_fraction))]  # the training split (exact for char tokens)
    sample_texts = list(texts)
    if file is not None:
        from engine.data.textio import read_text

        sample_texts.append(read_text(file))
    if not sample_texts:
        if loaded is None:
            raise ConfigError("nothing to check: pass --text/--file, or a RUN to generate samples from")
        from engine.insight.analyses import generate_samples

        sample_texts = generate_samples(loaded, samples, tokens, temperature, seed)
    _emit(memorization_report(sample_texts, training, n=n, source=spec), as_json)
