"""Run one analysis from its typed settings (``engine.insight.params``) on a model: the one place that
knows how each analysis picks its text, loads its runs and reports progress.

``run_analysis(params, subject, progress=, cancel=)`` returns the analysis dict (JSON-ready, the input
of ``engine.insight.render``). ``subject`` is the model to look at: anything with ``model``,
``tokenizer`` and ``config`` (a ``Loaded`` run, or the worker's live trainer), or a run path, or None
for the analyses that need none. ``progress(done, total, message)`` is called as work advances;
``cancel`` (a ``threading.Event``) is checked between units of work and ends the analysis with
``AnalysisCancelled``. The CLI (``seqplay gradients`` ...) and the worker's ``Analyze`` job both call it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from engine.errors import ConfigError, SeqplayError
from engine.insight import params as IP

Progress = Callable[[int, int, str], None]


class AnalysisCancelled(SeqplayError):
    """The caller cancelled the analysis."""


def check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise AnalysisCancelled("analysis cancelled")


def val_text(subject: Any, chars: int = 1000) -> str:
    """The first ``chars`` characters of a run's validation text (the tail of its corpus)."""
    from engine.data.sources import resolve_source

    cfg = subject.config
    text = resolve_source(cfg.source).text()
    start = int(len(text) * (1.0 - cfg.val_fraction))
    return text[start : start + chars] or text[:chars]


def _loaded(subject: Any) -> Any:
    if subject is None:
        raise ConfigError("this analysis looks at a model: pick a run (or train one first)")
    if isinstance(subject, str):
        from engine.runs.checkpoint import load_model

        return load_model(subject)
    return subject


def _label(subject: Any) -> str:
    path = getattr(subject, "path", None) or getattr(subject, "run_dir", None)
    if path is not None:
        from pathlib import Path

        p = Path(path)
        return p.parent.parent.name if p.parent.name == "checkpoints" else p.name
    return "live model"


def run_analysis(params: IP.AnalysisParams, subject: Any = None, progress: Progress | None = None,
                 cancel: threading.Event | None = None, other: Any = None) -> dict[str, Any]:
    """The analysis dict for ``params`` on ``subject`` (see the module docstring). ``other`` is the
    second model of a surprisal difference (default: ``params.other`` loaded as a run)."""
    params.validate()
    report = progress or (lambda _d, _t, _m: None)
    check(cancel)
    kind = params.analysis
    if kind == "gradients":
        return _gradients(params, subject, report, cancel)
    if kind == "table":
        return _table(params, subject, report, cancel)
    loaded = _loaded(subject)
    report(0, 1, f"{kind} on {_label(loaded)}")
    if kind == "attention":
        data = _attention(params, loaded)
    elif kind == "gates":
        data = _gates(params, loaded)
    elif kind == "surprisal":
        data = _surprisal(params, loaded, other, report, cancel)
    elif kind == "memorization":
        data = _memorization(params, loaded, report, cancel)
    else:
        raise ConfigError(f"unknown analysis {kind!r}; choose from {', '.join(IP.PARAMS)}")
    report(1, 1, "done")
    return data


def _gradients(p: IP.GradientsParams, subject: Any, report: Progress, cancel: threading.Event | None) -> dict[str, Any]:
    from engine.insight.gradients import gradients_report

    archs = [a.strip() for a in p.archs.split(",") if a.strip()]
    overrides: dict[str, Any] = {"width": p.width, "layers": p.layers, "context": max(p.distance + 1, 8)}
    if "transformer" in archs:
        overrides["heads"] = next(h for h in (4, 2, 1) if p.width % h == 0)
    run = None
    if not p.fresh:
        loaded = _loaded(subject)
        # the analysis converts the model to float64 and fills its gradients: work on a copy
        run = copy.copy(loaded)
        run.model = copy.deepcopy(loaded.model)
    return gradients_report(archs, run=run, source=p.source, distance=p.distance, windows=p.windows, seeds=p.seeds,
                            clip=p.clip, identity_init=p.identity_init, progress=report, cancel=cancel, **overrides)


def _attention(p: IP.AttentionParams, loaded: Any) -> dict[str, Any]:
    from engine.data.tokenizers import count_unknown
    from engine.insight.attention import attention_maps, check_layer_head, cross_attention

    if getattr(loaded.model, "task", "") == "seq2seq":
        prompt, target = p.prompt, p.target
        if prompt is None or target is None:
            from engine.data.sources import resolve_source

            prompt, target = resolve_source(loaded.config.source).pairs()[0]
        data = cross_attention(loaded.model, loaded.tokenizer, prompt, target)
    else:
        data = attention_maps(loaded.model, loaded.tokenizer, p.prompt or val_text(loaded, 32))
    check_layer_head(data, p.layer, p.head)
    data["unknown"] = {"what": "the prompt", "count": count_unknown(loaded.tokenizer, p.prompt or ""), "tokenizer": loaded.tokenizer.name}
    data["prompt"] = p.prompt or "".join(data["tokens"])
    if p.layer is not None or p.head is not None:
        data["layer"], data["head"] = p.layer, p.head
    return data


def _gates(p: IP.GatesParams, loaded: Any) -> dict[str, Any]:
    from engine.data.tokenizers import count_unknown
    from engine.insight.gates import gate_report, suggest_pattern

    body = p.text or val_text(loaded, 400)
    pattern = p.pattern if p.pattern is not None else suggest_pattern(body)
    units = [u.strip() for u in p.units.split(",") if u.strip()]
    data = gate_report(loaded.model, loaded.tokenizer, body, layer=p.layer, units=units, pattern=pattern, top=p.top)
    data["unknown"] = {"what": "the text", "count": count_unknown(loaded.tokenizer, body), "tokenizer": loaded.tokenizer.name}
    data["pattern_chosen"] = p.pattern is None
    return data


def _surprisal(p: IP.SurprisalParams, loaded: Any, other: Any, report: Progress,
               cancel: threading.Event | None) -> dict[str, Any]:
    from engine.insight.surprisal import surprisal, surprisal_diff

    body = p.text or val_text(loaded, p.chars)
    data = surprisal(loaded.model, loaded.tokenizer, body, label=_label(loaded))
    if other is None and p.other:
        check(cancel)
        report(1, 2, f"loading {p.other}")
        other = _loaded(p.other)
    if other is not None:
        second = surprisal(other.model, other.tokenizer, body, label=_label(other) if p.other is None else p.other)
        data = surprisal_diff(data, second)
    from engine.data.tokenizers import count_unknown

    data["unknown"] = {"what": "the text", "count": count_unknown(loaded.tokenizer, body), "tokenizer": loaded.tokenizer.name}
    return data


def generate_samples(loaded: Any, count: int, tokens: int, temperature: float, seed: int,
                     report: Progress | None = None, cancel: threading.Event | None = None) -> list[str]:
    """``count`` samples of ``tokens`` tokens from an empty prompt, seeds ``seed``, ``seed + 1``, ..."""
    from engine.generation.generate import Generation
    from engine.generation.processors import SamplingSettings

    out = []
    for i in range(count):
        if report:
            report(i, count + 1, f"sample {i + 1} of {count}")
        settings = SamplingSettings(temperature=temperature, seed=seed + i, max_tokens=tokens)
        gen = Generation(loaded.model, loaded.tokenizer, "", settings)
        while not gen.done:
            check(cancel)
            gen.next()
        out.append(gen.text)
    return out


def _memorization(p: IP.MemorizationParams, loaded: Any, report: Progress,
                  cancel: threading.Event | None) -> dict[str, Any]:
    from engine.data.sources import resolve_source
    from engine.insight.memorization import memorization_report

    spec = loaded.config.source
    full = resolve_source(spec).text()
    training = full[: int(len(full) * (1.0 - loaded.config.val_fraction))]
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        samples = generate_samples(loaded, p.samples, p.tokens, p.temperature, p.seed, report, cancel)
    finally:
        loaded.model.train(was_training)
    report(p.samples, p.samples + 1, "measuring copied spans")
    return memorization_report(samples, training, n=p.n, source=spec)


def _table(p: IP.TableParams, subject: Any, report: Progress, cancel: threading.Event | None) -> dict[str, Any]:
    from engine.insight.table import perplexity_table, train_table

    corpus = p.corpus
    if corpus is None and subject is not None and not isinstance(subject, str):
        corpus = subject.config.source
    elif corpus is None and isinstance(subject, str):
        corpus = _loaded(subject).config.source
    archs = [a.strip() for a in p.train.split(",") if a.strip()]
    if archs:
        if corpus is None:
            raise ConfigError("training for the table needs a corpus; pick a run or type a corpus")
        budget = {"time_budget": p.time_budget, "steps": p.steps}
        if archs == ["ngram"] and not p.time_budget and not p.steps:
            budget["steps"] = 1  # the count model is fitted in one pass
        return train_table(corpus, archs, params=p.params, tokenizer=p.tokenizer, baseline=False,
                           progress=report, cancel=cancel, **budget)
    report(0, 1, "reading runs")
    return perplexity_table(corpus)
