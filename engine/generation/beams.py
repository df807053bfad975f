"""Beam search, as Hugging Face ``generate(num_beams=B, do_sample=False)`` does it.

At each step every live hypothesis's next-token log-probabilities ``log softmax(l)`` go through the
history stages of the sampling chain (repetition / presence / frequency penalties, DRY, no-repeat
n-gram, logit bias, bans -- the same ``LogitsPipeline`` sampling uses, with each hypothesis's own
history), are added to its running sum, and the best ``2B`` candidates are kept until ``B`` live ones
remain. A hypothesis finishes at the end token (``eot_id``: the tokenizer's end-of-text, or a seq2seq
model's eos), when its text contains a stop string (cut before it), or at ``max_tokens``; when the
history stages remove every continuation (no-repeat n-gram 1 has used up the vocabulary) the live
hypotheses end as they are. Finished
hypotheses are ranked by ``score = sum log p / len ** length_penalty`` (``len`` counts the generated
tokens including the end token): the length penalty acts on finished hypotheses only, never on the
choice among live ones. Search stops early when no live beam can beat the B-th finished one
(Hugging Face's ``early_stopping=False`` heuristic, using the current length).

``beam_search_steps`` / ``beam_steps`` are the same search as generators that yield after every
search step (the worker runs them a time slice at a time, so training and cancel stay responsive);
``beam_search`` / ``beam_loop`` run them to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import ConfigError
from engine.generation.processors import History, LogitsPipeline, SamplingSettings
from engine.generation.streaming import lm_window, model_device


@dataclass(frozen=True)
class Beam:
    """A finished hypothesis: new token ids (without the end token), summed log-probability, the score
    ``logprob / len ** length_penalty`` that ranks hypotheses, and why it ended."""

    ids: tuple[int, ...]
    logprob: float
    score: float
    reason: str = "max_tokens"  # "eot" | "stop_string" | "max_tokens" | "exhausted" (every continuation banned)
    text: str | None = None  # with stop strings: the text before the stop


def beam_score(logprob: float, length: int, length_penalty: float) -> float:
    return logprob / (max(length, 1) ** length_penalty)


StepFn = Callable[[list[list[int]], torch.Tensor | None], torch.Tensor]


Steps = Generator[int, None, list[Beam]]


def run_steps(steps: Steps) -> list[Beam]:
    """Run a stepped beam search to the end; its hypotheses, best first."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def beam_loop(step: StepFn, width: int, length_penalty: float, max_tokens: int, eot_id: int | None,
              vocab_size: int, **kwargs: Any) -> list[Beam]:
    """``beam_steps`` run to the end."""
    return run_steps(beam_steps(step, width, length_penalty, max_tokens, eot_id, vocab_size, **kwargs))


def beam_steps(step: StepFn, width: int, length_penalty: float, max_tokens: int, eot_id: int | None,
               vocab_size: int, *, pipeline: LogitsPipeline | None = None, history: History | None = None,
               tokenizer: Any = None, stop: Sequence[str] = ()) -> Steps:
    """Generic beam search, yielding the number of tokens searched after each step (the generator's
    value: the hypotheses, best first). ``step(beams, parent_index)`` returns next-token log-probs
    (n_beams, V) for the live hypotheses (``parent_index`` says which previous beam each one extends, for state reuse).
    ``pipeline``/``history`` apply the chain's history stages; ``tokenizer``/``stop`` end a hypothesis at
    a stop string."""
    if width < 1:
        raise ConfigError(f"beam width must be at least 1, got {width}")
    stops = [s for s in stop if s]
    if stops and tokenizer is None:
        raise ConfigError("stop strings in beam search need the tokenizer")
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[Beam] = []
    parents: torch.Tensor | None = None
    for searched in range(1, max_tokens + 1):
        logp = step([ids for ids, _ in live], parents)
        if pipeline is not None and history is not None and pipeline.steps:
            logp = pipeline(logp, history)
        totals = logp + torch.tensor([s for _, s in live], dtype=logp.dtype)[:, None]
        n_cand = min(2 * width, totals.numel())
        values, flat = torch.topk(totals.flatten(), n_cand)
        new_live: list[tuple[list[int], float]] = []
        new_parents: list[int] = []
        for value, index in zip(values.tolist(), flat.tolist()):
            if value == float("-inf"):
                break
            parent, token = divmod(index, vocab_size)
            ids = live[parent][0] + [token]
            if eot_id is not None and token == eot_id:
                finished.append(Beam(tuple(ids[:-1]), value, beam_score(value, len(ids), length_penalty), "eot"))
            elif stops and (cut := _stop_cut(tokenizer.decode(ids), stops)) is not None:
                finished.append(Beam(tuple(ids), value, beam_score(value, len(ids), length_penalty), "stop_string", cut))
            else:
                new_live.append((ids, value))
                new_parents.append(parent)
            if len(new_live) == width:
                break
        if not new_live and not any(v != float("-inf") for v in values.tolist()):
            # the chain removed every continuation (bans / no-repeat n-gram): the live hypotheses end here
            finished.extend(Beam(tuple(ids), s, beam_score(s, len(ids), length_penalty), "exhausted")
                            for ids, s in live if ids)
            live = []
            break
        live = new_live
        parents = torch.tensor(new_parents, dtype=torch.long)
        if history is not None and live:
            history.select(new_parents)
            history.push([ids[-1] for ids, _ in live])
        if not live:
            break
        if len(finished) >= width:
            worst = sorted(b.score for b in finished)[-width]
            best_live = max(beam_score(s, len(ids), length_penalty) for ids, s in live)
            if best_live <= worst:  # no live beam can win now
                break
        yield searched
    finished.extend(Beam(tuple(ids), s, beam_score(s, len(ids), length_penalty)) for ids, s in live)
    if not finished:
        raise ConfigError("every beam was removed by the bans / no-repeat n-gram; relax them")
    return sorted(finished, key=lambda b: b.score, reverse=True)[:width]


def _stop_cut(text: str, stops: Sequence[str]) -> str | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(hits)] if hits else None


def beam_search(model: Any, prompt_ids: Sequence[int], width: int = 4, length_penalty: float = 1.0,
                max_tokens: int = 50, eot_id: int | None = None, *, settings: SamplingSettings | None = None,
                tokenizer: Any = None) -> list[Beam]:
    """Beam search for a language model; returns up to ``width`` hypotheses, best first
    (``beam_search_steps`` run to the end)."""
    return run_steps(beam_search_steps(model, prompt_ids, width, length_penalty, max_tokens, eot_id,
                                       settings=settings, tokenizer=tokenizer))


def beam_text(beam: Beam, tokenizer: Any) -> str:
    """The text a hypothesis adds to the prompt (cut before its stop string, if it hit one)."""
    return beam.text if beam.text is not None else tokenizer.decode(list(beam.ids))


def beam_search_steps(model: Any, prompt_ids: Sequence[int], width: int = 4, length_penalty: float = 1.0,
                      max_tokens: int = 50, eot_id: int | None = None, *, settings: SamplingSettings | None = None,
                      tokenizer: Any = None) -> Steps:
    """Beam search for a language model, one search step per ``next()``; returns (as the generator's
    value) up to ``width`` hypotheses, best first.

    ``settings`` contributes its history stages (penalties, DRY, no-repeat n-gram, bias, bans) and its
    stop strings; ``eot_id`` defaults to the tokenizer's end-of-text. Recurrent models carry their
    state (reordered along the batch, dimension 1 of their (layers, B, H) state); the others recompute
    their window (MLP/n-gram order, Transformer context) each step, which is exact."""
    if not prompt_ids:
        raise ConfigError("beam search needs a prompt of at least one token")
    device = model_device(model)
    vocab = int(model.config.vocab_size)
    window = lm_window(model)
    prompt = [int(i) for i in prompt_ids]
    if eot_id is None and tokenizer is not None:
        eot_id = getattr(tokenizer, "eot_id", None)
    settings = settings or SamplingSettings()
    pipeline = LogitsPipeline(settings, vocab, tokenizer=tokenizer, kinds=("history",))  # on the CPU log-probs
    history = pipeline.start(prompt)
    carry: dict[str, Any] = {}

    def step(beams: list[list[int]], parents: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode():
            if getattr(model, "recurrent", False):
                if parents is None:
                    logits, _, state = model(torch.tensor([prompt], device=device))
                else:
                    from engine.models.base import map_state

                    state = map_state(carry["state"], lambda t: t.index_select(1, parents.to(t.device)))
                    last = torch.tensor([[b[-1]] for b in beams], device=device)
                    logits, _, state = model(last, state=state)
                carry["state"] = state
            else:
                seqs = [prompt + b for b in beams]
                if window is not None:
                    seqs = [s[-window:] for s in seqs]
                logits, _, _ = model(torch.tensor(seqs, device=device))
            return logits[:, -1].float().log_softmax(-1).cpu()

    return (yield from beam_steps(step, width, length_penalty, max_tokens, eot_id, vocab, pipeline=pipeline,
                                  history=history, tokenizer=tokenizer, stop=settings.stop))
