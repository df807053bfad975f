"""Decoders for the non-LM tasks: sequence-to-sequence (greedy, sampled, beam) and masked-LM fill-in.

* ``greedy_decode(model, src, max_len)``: the one greedy seq2seq decoder, batched: the most likely
  output per source, pad and bos never chosen, stopped at eos (kept, padded after). The trainer's
  evaluation, ``seq2seq_decode`` and the stepped ``Seq2SeqGeneration`` at temperature 0 give its tokens.
* ``greedy_outputs(model, sources, limits)``: many sources' greedy output ids (no specials), decoded
  in padded batches by ``greedy_decode`` (the trainer's exact-match accuracy).
* ``seq2seq_decode``: one source text -> output ids, greedy / sampled (the sampling chain) / beam.
* ``Seq2SeqGeneration`` / ``BlankFilling``: stepped generations (one ``GeneratedToken`` per ``next()``)
  for the worker and the app, with ``Generation``'s interface.
* ``fill_blanks``: every blank (``_`` / ``[MASK]``) of a masked LM's text, left to right.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import ConfigError
from engine.generation.beams import beam_loop
from engine.generation.processors import Choice, SamplingSettings, TokenChooser
from engine.generation.streaming import Stepped, TextStream, alternatives, model_device
from engine.worker.protocol import GeneratedToken, TokenAlternative


def _require(model: Any, task: str, what: str) -> None:
    if getattr(model, "task", "") != task:
        raise ConfigError(f"{getattr(model, 'arch', 'this model')} is not {what}")


def seq2seq_source(model: Any, tokenizer: Any, text: str) -> torch.Tensor:
    """One source text as a (1, S) id tensor, cut to the model's context (an empty text is one pad)."""
    ids = [int(i) for i in tokenizer.encode(text)][: int(model.config.context)]
    pad = model.special_ids(int(model.config.vocab_size))[0]
    return torch.tensor([ids or [pad]], dtype=torch.long, device=model_device(model))


@torch.no_grad()
def greedy_decode(model: Any, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """The most likely output per source (B, S) -> (B, L): arg-max at each step with pad and bos
    excluded, stopped at eos (kept; pad after it). The single greedy seq2seq decoder."""
    _require(model, "seq2seq", "an encoder-decoder; use a seq2seq run")
    pad, bos, eos = model.special_ids(int(model.config.vocab_size))
    max_len = max_len or int(model.config.context)
    memory, state = model.encode(src)
    prev = torch.full((src.size(0),), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    out = []
    for _ in range(max_len):
        logits, state, _ = model.decode_step(prev, state, memory)
        logits[:, [pad, bos]] = float("-inf")
        prev = torch.where(done, torch.full_like(prev, pad), logits.argmax(-1))
        out.append(prev)
        done |= prev == eos
        if bool(done.all()):
            break
    return torch.stack(out, 1)


def _output_ids(row: list[int], pad: int, bos: int, eos: int) -> list[int]:
    """A decoded row's output: the tokens before eos (pad and bos dropped), or the whole row without eos."""
    return [t for t in row[: row.index(eos)] if t not in (pad, bos)] if eos in row else row


def greedy_outputs(model: Any, sources: Sequence[Sequence[int]], limits: Sequence[int], batch_size: int = 64
                   ) -> list[list[int]]:
    """Greedy output ids (without specials) of each source id sequence, at most ``limits[i]`` tokens:
    ``greedy_decode`` over padded batches of ``batch_size`` sources, the same tokens as decoding each
    source alone (the encoder packs each source to its own length; an empty source is one pad)."""
    pad, bos, eos = model.special_ids(int(model.config.vocab_size))
    device = model_device(model)
    out: list[list[int]] = []
    for i in range(0, len(sources), batch_size):
        chunk = [[int(t) for t in s] or [pad] for s in sources[i : i + batch_size]]
        caps = [min(int(c), int(model.config.context)) for c in limits[i : i + batch_size]]
        if max(caps) <= 0:
            out.extend([] for _ in chunk)
            continue
        width = max(map(len, chunk))
        src = torch.tensor([s + [pad] * (width - len(s)) for s in chunk], dtype=torch.long, device=device)
        rows = greedy_decode(model, src, max(caps)).tolist()
        out.extend(_output_ids(row[:cap], pad, bos, eos) for row, cap in zip(rows, caps))
    return out


def _greedy(settings: SamplingSettings) -> SamplingSettings:
    """The same settings at temperature 0 (seq2seq and MLM decode greedily in the worker)."""
    return settings.replace(temperature=0.0)


class TaskGeneration(Stepped):
    """A seq2seq or MLM generation stepped one token at a time, with ``Generation``'s interface as
    ``GenerationJobs`` uses it (``next(choose)``, ``done``, ``reason``, ``text``, ``done_event()``).
    Subclasses implement ``_step(choose) -> (Choice, text delta)`` and set ``reason`` when done."""

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings, gen_id: str, banned: Sequence[int]):
        self.model, self.tokenizer, self.gen_id = model, tokenizer, gen_id
        self.settings = settings
        self.vocab_size = int(model.config.vocab_size)
        self.device = model_device(model)
        merged = settings.replace(banned=sorted({*settings.banned, *banned}))
        self.chooser = TokenChooser(merged, self.vocab_size, tokenizer=tokenizer, device=self.device)
        self.reason: str | None = None
        self.elapsed = 0.0
        self.pieces: list[str] = []
        self.count = 0
        self._names: dict[int, str] = {}  # display text of ids the tokenizer does not know (specials)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens_per_s(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def token_text(self, token: int) -> str:
        return self._names.get(token) or self.tokenizer.token_text(token)

    def _step(self, choose: int | None) -> tuple[Choice, str]:
        raise NotImplementedError

    def next(self, choose: int | None = None) -> GeneratedToken:
        if self.done:
            raise StopIteration
        t0 = time.perf_counter()
        with torch.inference_mode():
            c, text = self._step(choose)
        self.pieces.append(text)
        event = GeneratedToken(job=self.gen_id, index=self.count, token=c.token, text=text, prob=c.prob,
                               raw_prob=c.raw_prob, entropy=c.entropy, top=alternatives(c.top, self.token_text))
        self.count += 1
        self.elapsed += time.perf_counter() - t0
        return event


class Seq2SeqGeneration(TaskGeneration):
    """Maps each line of the prompt to an output line, one decoder step per ``next()``: the output
    tokens, then the line's eos, whose text is the line break when another line follows. At most
    ``settings.max_tokens`` (capped by the model's context) tokens per line; the events' texts add up to
    the output lines joined by newlines (``greedy_decode``'s outputs at temperature 0)."""

    def __init__(self, model: Any, tokenizer: Any, prompt: str, settings: SamplingSettings | None = None,
                 *, gen_id: str = ""):
        _require(model, "seq2seq", "an encoder-decoder; use a seq2seq run")
        settings = settings or SamplingSettings(temperature=0.0)
        self.pad, self.bos, self.eos = model.special_ids(int(model.config.vocab_size))
        super().__init__(model, tokenizer, settings, gen_id, banned=(self.pad, self.bos))
        self._names = {self.pad: "<pad>", self.bos: "<bos>", self.eos: "<eos>"}
        self.lines = prompt.splitlines() or [""]
        self.limit = min(settings.max_tokens, int(model.config.context))
        self.line = -1
        self.outputs: list[list[int]] = []
        self._open_line()

    def _open_line(self) -> None:
        self.line += 1
        with torch.inference_mode():
            self.memory, self.state = self.model.encode(seq2seq_source(self.model, self.tokenizer, self.lines[self.line]))
        self.out: list[int] = []
        self.outputs.append(self.out)
        self.prev = self.bos
        self.stream = TextStream(self.tokenizer)
        self.chooser.start([])  # the penalties see the output so far (the decoder's input)

    def _step(self, choose: int | None) -> tuple[Choice, str]:
        prev = torch.tensor([self.prev], device=self.device)
        logits, self.state, _ = self.model.decode_step(prev, self.state, self.memory)
        c = self.chooser.choose(logits[0], force=choose)
        if c.token == self.eos:
            text, ended = self.stream.finish(), "eot"
        else:
            self.out.append(c.token)
            self.prev = c.token
            text = self.stream.push(c.token)
            ended = "max_tokens" if len(self.out) >= self.limit else None
            if ended:
                text += self.stream.finish()
        if ended is not None:
            if self.line + 1 < len(self.lines):
                text += "\n"
                self._open_line()
            else:
                self.reason = ended
        return c, text


def seq2seq_decode(model: Any, tokenizer: Any, text: str, settings: SamplingSettings | None = None,
                   beams: int | None = None, length_penalty: float = 1.0) -> list[int]:
    """Map one source text to output token ids (without specials): greedy (``greedy_decode``) when the
    settings are temperature 0 with nothing else active, else through the sampling chain, or by beam
    search of width ``beams`` when given. At most ``settings.max_tokens`` (capped by the model's context)
    output tokens."""
    _require(model, "seq2seq", "an encoder-decoder; use a seq2seq run")
    settings = settings or SamplingSettings()
    vocab = int(model.config.vocab_size)
    pad, bos, eos = model.special_ids(vocab)
    limit = min(settings.max_tokens, int(model.config.context))
    if limit == 0:
        return []
    with torch.inference_mode():
        src = seq2seq_source(model, tokenizer, text)
        if beams is not None:
            return _seq2seq_beams(model, tokenizer, src, settings, beams, length_penalty, limit)
        if settings.greedy and settings.active_stages() == ["temperature"]:
            return _output_ids(greedy_decode(model, src, limit)[0].tolist(), pad, bos, eos)
    gen = Seq2SeqGeneration(model, tokenizer, text, settings.replace(max_tokens=limit))
    for _ in gen:
        pass
    return list(gen.outputs[0])


def _seq2seq_beams(model: Any, tokenizer: Any, src: torch.Tensor, settings: SamplingSettings, beams: int,
                   length_penalty: float, limit: int) -> list[int]:
    from engine.generation.processors import LogitsPipeline
    from engine.models.base import map_state

    vocab = int(model.config.vocab_size)
    pad, bos, eos = model.special_ids(vocab)
    device = src.device
    memory, state = model.encode(src)
    carry: dict[str, Any] = {"state": state, "memory": memory}
    pipeline = LogitsPipeline(settings.replace(banned=sorted({*settings.banned, pad, bos})), vocab,
                              tokenizer=tokenizer, kinds=("history",))
    history = pipeline.start([])

    def step(hyps: list[list[int]], parents: torch.Tensor | None) -> torch.Tensor:
        if parents is None:
            prev = torch.tensor([bos], device=device)
        else:
            idx = parents.to(device)
            carry["state"] = map_state(carry["state"], lambda t: t.index_select(1, idx))
            fields = map_state(vars(carry["memory"]).copy(), lambda t: t.index_select(0, idx))
            carry["memory"] = type(memory)(**fields)
            prev = torch.tensor([h[-1] for h in hyps], device=device)
        logits, carry["state"], _ = model.decode_step(prev, carry["state"], carry["memory"])
        return logits.float().log_softmax(-1).cpu()

    best = beam_loop(step, beams, length_penalty, limit, eos, vocab, pipeline=pipeline, history=history)
    return list(best[0].ids) if best else []


# --------------------------------------------------------------------------------------------------
# Masked LM: fill in the blanks
# --------------------------------------------------------------------------------------------------

BLANKS = ("[MASK]", "_")


def split_blanks(text: str) -> list[str | None]:
    """``"a _ c [MASK]"`` -> ``["a ", None, " c ", None]``: text pieces and blanks (None)."""
    pieces: list[str | None] = []
    buf, i = "", 0
    while i < len(text):
        marker = next((m for m in BLANKS if text.startswith(m, i)), None)
        if marker is None:
            buf += text[i]
            i += 1
            continue
        if buf:
            pieces.append(buf)
        pieces.append(None)
        buf, i = "", i + len(marker)
    if buf:
        pieces.append(buf)
    return pieces


@dataclass(frozen=True)
class FilledBlank:
    """One filled blank: its position in the token sequence, the chosen token and its probability."""

    position: int
    token: int
    text: str
    prob: float
    raw_prob: float
    entropy: float
    top: tuple[TokenAlternative, ...]


class BlankFilling(TaskGeneration):
    """Fills the blanks (``_`` or ``[MASK]``) of a masked LM's prompt left to right, one blank per
    ``next()``, each chosen given the text and the blanks filled so far. Event texts add up to the
    filled text: each carries the text since the previous blank up to its own token (the last one also
    the rest of the prompt)."""

    def __init__(self, model: Any, tokenizer: Any, prompt: str, settings: SamplingSettings | None = None,
                 *, gen_id: str = ""):
        _require(model, "mlm", "a masked LM; use an mlm run to fill blanks")
        settings = settings or SamplingSettings(temperature=0.0)
        self.mask_id = int(model.mask_token_id)
        super().__init__(model, tokenizer, settings, gen_id, banned=(self.mask_id,))
        self._names = {self.mask_id: "[MASK]"}
        self.ids: list[int] = []
        self.blanks: list[int] = []
        for piece in split_blanks(prompt):
            if piece is None:
                self.blanks.append(len(self.ids))
                self.ids.append(self.mask_id)
            else:
                self.ids.extend(int(i) for i in tokenizer.encode(piece))
        if not self.blanks:
            raise ConfigError("the prompt has no blank to fill; mark blanks with _ or [MASK]")
        if model.max_context and len(self.ids) > model.max_context:
            raise ConfigError(f"the prompt is {len(self.ids)} tokens, over the model's context of {model.max_context}; shorten it")
        self.filled: list[FilledBlank] = []

    def _step(self, choose: int | None) -> tuple[Choice, str]:
        k = len(self.filled)
        pos = self.blanks[k]
        logits, _, _ = self.model(torch.tensor([self.ids], device=self.device))
        self.chooser.start([t for t in self.ids if t != self.mask_id])  # the penalties see the text around
        c = self.chooser.choose(logits[0, pos], force=choose)
        self.ids[pos] = c.token
        alts = alternatives(c.top, self.token_text)
        self.filled.append(FilledBlank(pos, c.token, self.token_text(c.token), c.prob, c.raw_prob, c.entropy, alts))
        start = self.blanks[k - 1] + 1 if k else 0
        last = k + 1 == len(self.blanks)
        if last:
            self.reason = "eot"
        return c, self.tokenizer.decode(self.ids[start : len(self.ids) if last else pos + 1])


def fill_blanks(model: Any, tokenizer: Any, text: str, settings: SamplingSettings | None = None
                ) -> tuple[str, list[FilledBlank]]:
    """Fill each blank (``_`` or ``[MASK]``, one token each) left to right: every blank is chosen from
    the model's distribution given the text and the blanks already filled (greedy at temperature 0)."""
    filling = BlankFilling(model, tokenizer, text, settings or SamplingSettings(temperature=0.0))
    for _ in filling:
        pass
    return tokenizer.decode(filling.ids), filling.filled
