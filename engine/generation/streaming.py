"""Streaming generation for language models: one token at a time, from the model's exact distribution.

    x_{t+1} = F_t^{-1}(u_t),  F_t the CDF of q_t = chain(softmax(f_theta(x_{t-c+1..t})))   (processors.py)

Recurrent models carry their state between tokens and the MLP / n-gram read their window, so each new
token costs one incremental ``forward``. The Transformer carries a KV cache while the text fits its
context of ``c`` tokens; past it, the default ``window="exact"`` recomputes the last ``c`` tokens at
every step -- the model's exact distribution, the same tokens as recomputing the window from scratch
at the same seed. ``window="slide"`` is an approximation, explicitly asked for: when the cache fills it
re-encodes the last half of the window and goes on, so later tokens see a shorter, re-positioned
context (faster, not the model's distribution).

* ``Generation``: one generation in progress; ``.next(choose=None)`` yields one ``GeneratedToken`` (the
  TUI's step mode: ``choose`` forces a token id), ``.back()`` undoes tokens, ``.peek()`` shows the
  alternatives for the next token; ``.timing`` splits the time per token into model, processors, stream.
* ``stream(...)`` iterates it (its return value is ``GenerationDone``); ``generate_text`` returns the text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from engine.device import torch_threads
from engine.errors import ConfigError
from engine.generation.processors import SamplingSettings, TokenChooser
from engine.worker.protocol import GeneratedToken, GenerationDone, TokenAlternative

WINDOWS = ("exact", "slide")
APPROXIMATE_NOTE = ("approximate: --window slide re-encodes half the KV cache when the context fills, "
                    "so tokens past the context are not from the model's exact distribution")


def alternatives(top: Sequence[tuple[int, float, float]], token_text: Any) -> tuple[TokenAlternative, ...]:
    """A ``Choice.top`` (or ``TokenChooser.alternatives``) as the protocol's alternatives."""
    return tuple(TokenAlternative(t, token_text(t), p, raw) for t, p, raw in top)


def model_device(model: torch.nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def lm_window(model: Any) -> int | None:
    """How many trailing tokens decide an LM's next-token distribution (None: all of them)."""
    if getattr(model, "max_context", None):
        return int(model.max_context)
    arch = getattr(model, "arch", "")
    if arch == "mlp":
        return int(model.config.context)
    if arch == "ngram":
        return int(model.config.order)
    return None


def start_ids(tokenizer: Any) -> list[int]:
    """What an empty prompt starts from: end-of-text if the tokenizer has one, else a newline."""
    if getattr(tokenizer, "eot_id", None) is not None:
        return [int(tokenizer.eot_id)]
    newline = [int(i) for i in tokenizer.encode("\n")]
    return newline[:1] or [0]


# --------------------------------------------------------------------------------------------------
# Incremental text: partial UTF-8 and stop strings
# --------------------------------------------------------------------------------------------------


class TextStream:
    """Turns a growing list of token ids into text deltas.

    Decodes a short tail (from the last clean boundary) rather than everything at each token, holds
    back an incomplete UTF-8 character (a trailing U+FFFD) and any suffix that could begin a stop
    string. ``push(id) -> delta``; ``finish() -> rest``. Without a stop string the deltas add up to
    ``tokenizer.decode(ids)``; with one, to the text before it.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str] = ()):
        self.tokenizer = tokenizer
        # one id, one whole character, no context: a token's text is its own decode (cached per id)
        self.pieces: dict[int, str] | None = {} if getattr(tokenizer, "name", "") == "char" else None
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.prefix = 0  # decode from here (one clean boundary back, for context-dependent decoders)
        self.read = 0  # ids up to here are emitted (or held in ``pending``)
        self.pending = ""
        self.emitted: list[str] = []
        self.stopped = False

    @property
    def text(self) -> str:
        return "".join(self.emitted)

    def push(self, token: int) -> str:
        if self.stopped:
            return ""
        token = int(token)
        self.ids.append(token)
        if self.pieces is not None:
            piece = self.pieces.get(token)
            if piece is None:
                piece = self.pieces[token] = self.tokenizer.decode([token])
            self.prefix = self.read = len(self.ids)
            return self._release(piece)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read]) if self.read > self.prefix else ""
        after = decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd") and after.startswith(before):
            delta = after[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)
            return self._release(delta)
        return ""

    def _release(self, delta: str) -> str:
        text = self.pending + delta
        if not self.stops:
            self.pending = ""
            return self._emit(text)
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self.pending = True, ""
            return self._emit(text[: min(hits)])
        hold = 0
        for s in self.stops:  # the longest suffix of text that is a proper prefix of a stop string
            for k in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:k]):
                    hold = k
                    break
        self.pending = text[len(text) - hold :] if hold else ""
        return self._emit(text[: len(text) - hold])

    def _emit(self, text: str) -> str:
        if text:
            self.emitted.append(text)
        return text

    def finish(self) -> str:
        """Everything not yet emitted (an incomplete character, held-back text)."""
        if self.stopped:
            return ""
        tail = self.tokenizer.decode(self.ids[self.read :]) if self.read < len(self.ids) else ""
        if tail:
            head = self.tokenizer.decode(self.ids[self.prefix : self.read]) if self.read > self.prefix else ""
            whole = self.tokenizer.decode(self.ids[self.prefix :])
            tail = whole[len(head) :] if whole.startswith(head) else tail
        out = self._release(tail) if tail else ""
        if not self.stopped and self.pending:
            out += self._emit(self.pending)
            self.pending = ""
        self.read = len(self.ids)
        return out


# --------------------------------------------------------------------------------------------------
# The streaming generator
# --------------------------------------------------------------------------------------------------


class Stepped:
    """What every stepped generation shares: ``reason`` ends it, ``next()`` makes one token."""

    gen_id: str
    reason: str | None
    text: str
    tokens_per_s: float

    @property
    def done(self) -> bool:
        return self.reason is not None

    def cancel(self) -> None:
        if not self.done:
            self.reason = "cancelled"

    def done_event(self) -> GenerationDone:
        return GenerationDone(job=self.gen_id, reason=self.reason or "cancelled", text=self.text,
                              tokens_per_s=self.tokens_per_s)

    def next(self, choose: int | None = None) -> GeneratedToken:
        raise NotImplementedError

    def __iter__(self) -> Iterator[GeneratedToken]:
        while not self.done:
            yield self.next()


class Generation(Stepped):
    """One language-model generation in progress, stepped one token at a time.

    ``prompt`` is text or token ids. ``history`` holds every id the model has seen (prompt included);
    ``generated`` the new ones (an end-of-text token ends generation and is not part of the text).
    ``window``: "exact" (default) or "slide" (approximate, see the module docstring). ``window_threads``:
    torch threads while the exact window is recomputed past the context (None: the current count). A
    token from the cache is a chain of tiny operations, fastest on one thread; the recompute is 64-row
    matrix products, faster on two (0.8M Transformer, 2 idle cores: 955 against 664 tok/s).
    """

    def __init__(self, model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings | None = None,
                 *, gen_id: str = "", window: str = "exact", window_threads: int | None = None):
        if getattr(model, "task", "lm") != "lm":
            raise ConfigError(f"a {model.task} model does not continue text; use seq2seq_decode or fill_blanks")
        if window not in WINDOWS:
            raise ConfigError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or SamplingSettings()
        self.vocab_size = int(model.config.vocab_size)
        self.device = model_device(model)
        self.chooser = TokenChooser(self.settings, self.vocab_size, tokenizer=tokenizer, device=self.device)
        self.gen_id, self.window, self.window_threads = gen_id, window, window_threads
        self.eot_id = getattr(tokenizer, "eot_id", None)
        ids = [int(i) for i in (tokenizer.encode(prompt) if isinstance(prompt, str) else prompt)]
        self.prompt_ids = ids or start_ids(tokenizer)
        bad = [i for i in self.prompt_ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ConfigError(f"prompt token id {bad[0]} is outside the model's vocabulary of {self.vocab_size}")
        self.context = lm_window(model) if getattr(model, "max_context", None) else None
        self.reason: str | None = None
        self.timing = {"model_s": 0.0, "processors_s": 0.0, "stream_s": 0.0}
        self._token_texts: dict[int, str] = {}
        self._prime()

    @property
    def approximate(self) -> bool:
        """True when this generation's tokens past the context are not from the model's distribution."""
        return self.window == "slide" and self.context is not None

    # -- model plumbing ------------------------------------------------------------------------------
    def _prime(self) -> None:
        self.history: list[int] = list(self.prompt_ids)
        self.generated: list[int] = []
        self.text_stream = TextStream(self.tokenizer, self.settings.stop)
        self.chooser.start(self.history)
        self.state: Any = None
        self._pending: int | None = None
        self._token_buf = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._logits = self._forward(self.history)

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Feed ``ids`` (continuing ``self.state``); the logits (V,) for the token after them."""
        model, ctx = self.model, self.context
        t0 = time.perf_counter()
        with torch.inference_mode():
            if ctx is not None and self.window == "exact" and len(self.history) > ctx:
                self.state = None  # the cache cannot shift positions: recompute the last window
                x = torch.tensor([self.history[-ctx:]], dtype=torch.long, device=self.device)
                last = getattr(model, "next_logits", None)
                with torch_threads(self.window_threads):
                    if last is not None:  # the window's last position only (the same logits)
                        out = last(x)[0]
                        self.timing["model_s"] += time.perf_counter() - t0
                        return out
                    logits, _, _ = model(x)
            else:
                if len(ids) == 1:
                    self._token_buf[0, 0] = ids[0]
                    x = self._token_buf
                else:
                    x = torch.tensor([ids], dtype=torch.long, device=self.device)
                if ctx is not None:
                    logits, _, self.state = model(x, state=self.state, use_cache=True)
                else:
                    logits, _, self.state = model(x, state=self.state)
            out = logits[0, -1]
        self.timing["model_s"] += time.perf_counter() - t0
        return out

    # -- stepping ------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.text_stream.text

    @property
    def elapsed(self) -> float:
        return sum(self.timing.values())

    @property
    def tokens_per_s(self) -> float:
        return len(self.generated) / self.elapsed if self.elapsed > 0 else 0.0

    def _ready_logits(self) -> torch.Tensor:
        if self._pending is not None:
            token, self._pending = self._pending, None
            self._logits = self._forward([token])
        return self._logits

    def next(self, choose: int | None = None) -> GeneratedToken:
        """Produce one token (drawn, or ``choose`` if given). Raises StopIteration once done."""
        if self.done:
            raise StopIteration
        logits = self._ready_logits()
        t1 = time.perf_counter()
        with torch.inference_mode():
            c = self.chooser.choose(logits, force=choose)
        t2 = time.perf_counter()
        index = len(self.generated)
        self.history.append(c.token)
        if self.eot_id is not None and c.token == self.eot_id:
            text = self.text_stream.finish()
            self.reason = "eot"
        else:
            self.generated.append(c.token)
            text = self.text_stream.push(c.token)
            if self.text_stream.stopped:
                self.reason = "stop_string"
            elif len(self.generated) >= self.settings.max_tokens:
                text += self.text_stream.finish()
                self.reason = "stop_string" if self.text_stream.stopped else "max_tokens"
            else:
                self._pending = c.token
        event = GeneratedToken(job=self.gen_id, index=index, token=c.token, text=text, prob=c.prob,
                               raw_prob=c.raw_prob, entropy=c.entropy, top=alternatives(c.top, self.token_text))
        self.timing["processors_s"] += t2 - t1
        self.timing["stream_s"] += time.perf_counter() - t2
        return event

    def token_text(self, token: int) -> str:
        """Display text of one token (cached: tokenizers decode slowly one id at a time)."""
        text = self._token_texts.get(token)
        if text is None:
            text = self._token_texts[token] = self.tokenizer.token_text(token)
        return text

    def peek(self) -> tuple[TokenAlternative, ...]:
        """The alternatives for the next token, as ``next()`` reports them (nothing is consumed)."""
        if self.done:
            return ()
        with torch.inference_mode():
            return alternatives(self.chooser.alternatives(self._ready_logits()), self.token_text)

    def processed_distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw, processed) probabilities (V,) for the next token at the current history."""
        with torch.inference_mode():
            raw, logp = self.chooser.processed_logprobs(self._ready_logits())
        return raw.exp(), logp.exp()

    def back(self, n: int = 1) -> None:
        """Undo the last ``n`` generated tokens (re-encodes the kept text: states are not snapshotted).
        The random stream is not rewound: the next token draws a fresh uniform."""
        keep = self.generated[: max(0, len(self.generated) - n)]
        stream = self.chooser.stream
        self._prime()
        self.chooser.stream = stream
        self.reason = None
        if keep:
            for t in keep:
                self.history.append(t)
                self.chooser.push(t)
                self.text_stream.push(t)
            self.generated = list(keep)
            self._logits = self._forward(keep)


def stream(model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings | None = None,
           cancel: threading.Event | None = None, *, gen_id: str = "", window: str = "exact"
           ) -> Iterator[GeneratedToken]:
    """Yield ``GeneratedToken``s until max tokens, a stop string, end-of-text or ``cancel`` is set
    (checked between tokens). The generator's return value is the ``GenerationDone`` event."""
    gen = Generation(model, tokenizer, prompt, settings, gen_id=gen_id, window=window)
    while not gen.done:
        if cancel is not None and cancel.is_set():
            gen.cancel()
            break
        yield gen.next()
    return gen.done_event()


class eval_mode:
    """Generate in eval mode (no dropout) and give a training model back in training mode."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        if self.was_training:
            self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        if self.was_training:
            self.model.train()


def generate_text(model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings | None = None,
                  **kw: Any) -> str:
    """The whole continuation as one string, in eval mode (a training model is handed back in training
    mode; the global RNG is untouched): what in-training samples, scripts and tests call."""
    with eval_mode(model):
        gen = Generation(model, tokenizer, prompt, settings, **kw)
        for _ in gen:
            pass
    return gen.text
