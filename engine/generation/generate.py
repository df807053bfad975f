"""Generation: a streaming token-by-token generator, beam search, seq2seq decoding and MLM fill-in.

    x_{t+1} ~ q(. | x_{<=t}),  q = processors(softmax(f_theta(x_{<=t})))   (engine.generation.processors)

Language models carry their state between tokens (RNN hidden/cell state, the MLP/n-gram window, the
Transformer's KV cache), so each new token costs one incremental ``forward(last_token, state=...)``.
When the Transformer's window is full its cache re-encodes the last half of the window and goes on
(``window="slide"``, the default); ``window="exact"`` instead recomputes the last ``context`` tokens at
every step once the window is full (nanoGPT's behaviour: exact, but no faster than recomputation).

* ``Generation``: one generation in progress; ``.next(choose=None)`` yields one ``GeneratedToken`` (the
  TUI's step mode: ``choose`` forces a token id), ``.back()`` undoes tokens, ``.peek()`` shows the
  alternatives for the next token. ``stream(...)`` iterates it; its return value is ``GenerationDone``.
* ``GenerationJobs``: the worker's side of ``Generate``/``GenerateStep``/``CancelGeneration``.
* ``beam_search`` (LMs), ``seq2seq_decode`` (greedy, sampled or beam) and ``fill_blanks`` (MLM).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import ConfigError, SeqplayError
from engine.worker.protocol import (
    CancelGeneration,
    ErrorEvent,
    Event,
    Generate,
    GeneratedToken,
    GenerateStep,
    GenerationDone,
    TokenAlternative,
)
from engine.generation.processors import SamplingSettings, TokenChooser

WINDOWS = ("slide", "exact")


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
        self.ids.append(int(token))
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
# The streaming generator (language models)
# --------------------------------------------------------------------------------------------------


class _Stepped:
    """What every stepped generation shares: ``reason`` ends it, ``next()`` makes one token."""

    gen_id: str
    reason: str | None

    @property
    def done(self) -> bool:
        return self.reason is not None

    def cancel(self) -> None:
        if not self.done:
            self.reason = "cancelled"

    def done_event(self) -> GenerationDone:
        return GenerationDone(job=self.gen_id, reason=self.reason or "cancelled", text=self.text,
                              tokens_per_s=self.tokens_per_s)

    def __iter__(self) -> Iterator[GeneratedToken]:
        while not self.done:
            yield self.next()


class Generation(_Stepped):
    """One language-model generation in progress, stepped one token at a time.

    ``prompt`` is text or token ids. ``history`` holds every id the model has seen (prompt included);
    ``generated`` the new ones (an end-of-text token ends generation and is not part of the text).
    """

    def __init__(self, model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings | None = None,
                 *, gen_id: str = "", window: str = "slide"):
        if getattr(model, "task", "lm") != "lm":
            raise ConfigError(f"a {model.task} model does not continue text; use seq2seq_decode or fill_blanks")
        if window not in WINDOWS:
            raise ConfigError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or SamplingSettings()
        self.vocab_size = int(model.config.vocab_size)
        self.chooser = TokenChooser(self.settings, self.vocab_size)
        self.gen_id, self.window = gen_id, window
        self.device = model_device(model)
        self.eot_id = getattr(tokenizer, "eot_id", None)
        ids = [int(i) for i in (tokenizer.encode(prompt) if isinstance(prompt, str) else prompt)]
        self.prompt_ids = ids or start_ids(tokenizer)
        bad = [i for i in self.prompt_ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ConfigError(f"prompt token id {bad[0]} is outside the model's vocabulary of {self.vocab_size}")
        self.context = lm_window(model) if getattr(model, "max_context", None) else None
        self.reason: str | None = None
        self.elapsed = 0.0
        self._token_texts: dict[int, str] = {}
        self._prime()

    # -- model plumbing ------------------------------------------------------------------------------
    def _prime(self) -> None:
        self.history: list[int] = list(self.prompt_ids)
        self.generated: list[int] = []
        self.text_stream = TextStream(self.tokenizer, self.settings.stop)
        self.chooser.pipeline.reset()
        self.state: Any = None
        self._pending: int | None = None
        self._logits = self._forward(self.history)

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Feed ``ids`` (continuing ``self.state``); the logits (V,) for the token after them."""
        model, ctx = self.model, self.context
        with torch.inference_mode():
            if ctx is not None and self.window == "exact" and len(self.history) > ctx:
                self.state = None  # the cache cannot shift positions: recompute the last window
                x = torch.tensor([self.history[-ctx:]], dtype=torch.long, device=self.device)
                logits, _, _ = model(x)
            else:
                x = torch.tensor([ids], dtype=torch.long, device=self.device)
                if ctx is not None:
                    logits, _, self.state = model(x, state=self.state, use_cache=True)
                else:
                    logits, _, self.state = model(x, state=self.state)
            return logits[0, -1]

    # -- stepping ------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.text_stream.text

    @property
    def tokens_per_s(self) -> float:
        return len(self.generated) / self.elapsed if self.elapsed > 0 else 0.0

    def _ready_logits(self) -> torch.Tensor:
        if self._pending is not None:
            token, self._pending = self._pending, None
            self._logits = self._forward([token])
        return self._logits

    def next(self, choose: int | None = None) -> GeneratedToken:
        """Produce one token (sampled, or ``choose`` if given). Raises StopIteration once done."""
        if self.done:
            raise StopIteration
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = self._ready_logits()
            c = self.chooser.choose(logits, self.history, force=choose)
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
        token_text = self.token_text
        top = tuple(TokenAlternative(t, token_text(t), p) for t, p in c.top)
        self.elapsed += time.perf_counter() - t0
        return GeneratedToken(job=self.gen_id, index=index, token=c.token, text=text, prob=c.prob,
                              raw_prob=c.raw_prob, entropy=c.entropy, top=top)

    def token_text(self, token: int) -> str:
        """Display text of one token (cached: tokenizers decode slowly one id at a time)."""
        text = self._token_texts.get(token)
        if text is None:
            text = self._token_texts[token] = self.tokenizer.token_text(token)
        return text

    def peek(self) -> tuple[TokenAlternative, ...]:
        """The processed top alternatives for the next token (nothing is consumed)."""
        if self.done:
            return ()
        with torch.inference_mode():
            _, logp = self.chooser.processed_logprobs(self._ready_logits(), self.history)
            values, ids = torch.topk(logp.exp(), min(max(self.settings.top_alternatives, 1), self.vocab_size))
        return tuple(TokenAlternative(t, self.token_text(t), p)
                     for t, p in zip(ids.tolist(), values.tolist()) if p > 0)

    def back(self, n: int = 1) -> None:
        """Undo the last ``n`` generated tokens (re-encodes the kept text: states are not snapshotted)."""
        keep = self.generated[: max(0, len(self.generated) - n)]
        self._prime()
        self.reason = None
        if keep:
            self.history.extend(keep)
            self.generated = list(keep)
            for t in keep:
                self.text_stream.push(t)
            self._logits = self._forward(keep)



def stream(model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings | None = None,
           cancel: threading.Event | None = None, *, gen_id: str = "", window: str = "slide"
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


def generate_text(model: Any, tokenizer: Any, prompt: str, settings: SamplingSettings | None = None, **kw: Any) -> str:
    """The whole continuation as one string (a convenience for samples and tests)."""
    gen = Generation(model, tokenizer, prompt, settings, **kw)
    for _ in gen:
        pass
    return gen.text


# --------------------------------------------------------------------------------------------------
# Beam search (language models)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Beam:
    """A finished hypothesis: new token ids, summed log-probability, and the length-normalised score
    ``logprob / len ** length_penalty`` (Hugging Face's rule) that ranks hypotheses."""

    ids: tuple[int, ...]
    logprob: float
    score: float


def _beam_score(logprob: float, length: int, length_penalty: float) -> float:
    return logprob / (max(length, 1) ** length_penalty)


def _beam_loop(step: Callable[[list[list[int]], torch.Tensor | None], torch.Tensor], width: int, length_penalty: float,
               max_tokens: int, eot_id: int | None, vocab_size: int) -> list[Beam]:
    """Generic beam search. ``step(beams, parent_index)`` returns next-token log-probs (n_beams, V) for
    the live hypotheses (``parent_index`` says which previous beam each one extends, for state reuse)."""
    if width < 1:
        raise ConfigError(f"beam width must be at least 1, got {width}")
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[Beam] = []
    parents: torch.Tensor | None = None
    for _ in range(max_tokens):
        logp = step([ids for ids, _ in live], parents)
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
                finished.append(Beam(tuple(ids[:-1]), value, _beam_score(value, len(ids), length_penalty)))
            else:
                new_live.append((ids, value))
                new_parents.append(parent)
            if len(new_live) == width:
                break
        live = new_live
        parents = torch.tensor(new_parents, dtype=torch.long)
        if not live:
            break
        if len(finished) >= width:
            worst = sorted(b.score for b in finished)[-width]
            best_live = max(_beam_score(s, len(ids), length_penalty) for ids, s in live)
            if best_live <= worst:  # Hugging Face's early-stop heuristic: no live beam can win now
                break
    finished.extend(Beam(tuple(ids), s, _beam_score(s, len(ids), length_penalty)) for ids, s in live)
    return sorted(finished, key=lambda b: b.score, reverse=True)[:width]


def beam_search(model: Any, prompt_ids: Sequence[int], width: int = 4, length_penalty: float = 1.0,
                max_tokens: int = 50, eot_id: int | None = None) -> list[Beam]:
    """Beam search for a language model; returns up to ``width`` hypotheses, best first.

    Recurrent models carry their state (reordered along the batch, dimension 1 of their (layers, B,
    H) state); the others recompute their window (MLP/n-gram order, Transformer context) each step."""
    if not prompt_ids:
        raise ConfigError("beam search needs a prompt of at least one token")
    device = model_device(model)
    vocab = int(model.config.vocab_size)
    window = lm_window(model)
    prompt = [int(i) for i in prompt_ids]
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

    return _beam_loop(step, width, length_penalty, max_tokens, eot_id, vocab)


# --------------------------------------------------------------------------------------------------
# The worker's side: Generate / GenerateStep / CancelGeneration
# --------------------------------------------------------------------------------------------------


class GenerationJobs:
    """Runs generations inside the worker process, a time slice at a time.

    Language models continue the prompt (``Generation``); seq2seq models map each prompt line to an
    output line (``Seq2SeqGeneration``) and masked LMs fill its blanks (``BlankFilling``), both greedily
    (the sampling settings' temperature is for LMs), one token per ``GeneratedToken``.

    ``handle(cmd, live=None)`` takes a generation command; ``live`` is the model being trained (an
    object with ``model`` and ``tokenizer``, or a ``(model, tokenizer)`` pair), used when
    ``Generate.source`` is None. ``pump()`` produces tokens of the running generation for up to
    ``slice_s`` seconds, emitting ``GeneratedToken`` events and finally one ``GenerationDone``.
    Step-mode generations advance only on ``GenerateStep``. Errors become ``ErrorEvent`` +
    ``GenerationDone(reason="error")``. ``threads`` (default 1) is the torch thread count while
    generating: one token of a small model is several times faster on one thread than on two.
    """

    def __init__(self, emit: Callable[[Event], None], device: str = "cpu", slice_s: float = 0.03,
                 threads: int | None = 1):
        self.emit, self.device, self.slice_s, self.threads = emit, device, slice_s, threads
        self.current: Generation | TaskGeneration | None = None
        self.step_mode = False
        self._cache_key: tuple[str, float] | None = None
        self._cache: Any = None

    @property
    def busy(self) -> bool:
        """True while a streaming (not step-mode) generation has tokens to produce."""
        return self.current is not None and not self.step_mode and not self.current.done

    @property
    def active(self) -> bool:
        """Alias of ``busy`` (the worker loop's name for it)."""
        return self.busy

    def _load(self, source: str) -> Any:
        from pathlib import Path

        from engine.runs.checkpoint import load_model

        p = Path(source)
        key = (str(p.resolve()) if p.exists() else source, p.stat().st_mtime if p.exists() else 0.0)
        if key != self._cache_key:
            self._cache, self._cache_key = None, None  # free the old model before loading the next
            self._cache = load_model(source, device=self.device)
            self._cache_key = key
        return self._cache

    def handle(self, cmd: Any, live: Any = None) -> None:
        gen_id = getattr(cmd, "gen_id", "")
        try:
            if isinstance(cmd, Generate):
                self._finish("cancelled")
                self._start(cmd, live)
            elif isinstance(cmd, GenerateStep):
                gen = self.current
                if gen is None or gen.gen_id != cmd.gen_id or gen.done:
                    return  # stale step for a generation that has ended
                with _torch_threads(self.threads), _eval_mode(gen.model):
                    self.emit(gen.next(choose=cmd.choose))
                if gen.done:
                    self._finish(None)
            elif isinstance(cmd, CancelGeneration):
                if self.current is not None and self.current.gen_id == cmd.gen_id:
                    self._finish("cancelled")
        except SeqplayError as err:
            self._fail(gen_id, str(err))
        except Exception as err:  # noqa: BLE001 - a bug must not take the worker down with it
            self._fail(gen_id, f"generation failed ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
                       "try other settings or another checkpoint")

    def _start(self, cmd: Generate, live: Any) -> None:
        if cmd.source:
            loaded = self._load(cmd.source)
            model, tokenizer = loaded.model, loaded.tokenizer
        elif live is not None:
            model, tokenizer = (live if isinstance(live, tuple) else (live.model, live.tokenizer))
        else:
            raise ConfigError("nothing to generate from: pick a run or checkpoint, or start training first")
        settings = SamplingSettings.from_dict(cmd.settings)
        settings.max_tokens = cmd.max_tokens
        task = getattr(model, "task", "lm")
        with _torch_threads(self.threads), _eval_mode(model):
            if task == "seq2seq":
                self.current = Seq2SeqGeneration(model, tokenizer, cmd.prompt, _greedy(settings), gen_id=cmd.gen_id)
            elif task == "mlm":
                self.current = BlankFilling(model, tokenizer, cmd.prompt, _greedy(settings), gen_id=cmd.gen_id)
            else:
                self.current = Generation(model, tokenizer, cmd.prompt, settings, gen_id=cmd.gen_id)
        self.step_mode = cmd.step_mode

    def _finish(self, reason: str | None) -> None:
        """End the current generation (``reason`` overrides, e.g. "cancelled") and emit its Done."""
        gen, self.current = self.current, None
        if gen is None:
            return
        if reason is not None and not gen.done:
            gen.reason = reason
        self.emit(gen.done_event())

    def _fail(self, gen_id: str, message: str) -> None:
        self.current = None
        self.emit(ErrorEvent(job=gen_id, message=message, fatal=False))
        self.emit(GenerationDone(job=gen_id, reason="error"))

    def pump(self) -> None:
        """Produce tokens for up to ``slice_s`` seconds (nothing in step mode)."""
        gen = self.current
        if gen is None or self.step_mode:
            return
        deadline = time.perf_counter() + self.slice_s
        try:
            with _torch_threads(self.threads), _eval_mode(gen.model):
                while not gen.done and time.perf_counter() < deadline:
                    self.emit(gen.next())
        except Exception as err:  # noqa: BLE001 - reported, never raised into the worker loop
            message = str(err) if isinstance(err, SeqplayError) else f"generation failed ({type(err).__name__}); try other settings"
            self._fail(gen.gen_id, message)
            return
        if gen.done:
            self._finish(None)


class _torch_threads:
    """Temporarily set torch's intra-op thread count (None: leave it)."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self) -> None:
        if self.n is not None:
            self.old = torch.get_num_threads()
            if self.old != self.n:
                torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None and self.old != self.n:
            torch.set_num_threads(self.old)


class _eval_mode:
    """Generate in eval mode (no dropout) and give a training model back in training mode."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        if self.was_training:
            self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        if self.was_training:
            self.model.train()


# --------------------------------------------------------------------------------------------------
# Sequence-to-sequence decoding
# --------------------------------------------------------------------------------------------------


def _seq2seq_source(model: Any, tokenizer: Any, text: str) -> torch.Tensor:
    ids = [int(i) for i in tokenizer.encode(text)][: int(model.config.context)]
    pad = model.special_ids(int(model.config.vocab_size))[0]
    return torch.tensor([ids or [pad]], dtype=torch.long, device=model_device(model))


def _greedy(settings: SamplingSettings) -> SamplingSettings:
    """The same settings at temperature 0 (seq2seq and MLM decode greedily in the worker)."""
    return SamplingSettings.from_dict({**settings.to_dict(), "temperature": 0.0})


class TaskGeneration(_Stepped):
    """A seq2seq or MLM generation stepped one token at a time, with ``Generation``'s interface as
    ``GenerationJobs`` uses it (``next(choose)``, ``done``, ``reason``, ``text``, ``done_event()``).
    Subclasses implement ``_step(choose) -> (Choice, text delta)`` and set ``reason`` when done."""

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings, gen_id: str, banned: Sequence[int]):
        self.model, self.tokenizer, self.gen_id = model, tokenizer, gen_id
        self.settings = settings
        self.vocab_size = int(model.config.vocab_size)
        merged = {**settings.to_dict(), "banned": sorted({*settings.banned, *banned})}
        self.chooser = TokenChooser(SamplingSettings.from_dict(merged), self.vocab_size)
        self.device = model_device(model)
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

    def _step(self, choose: int | None) -> tuple[Any, str]:
        raise NotImplementedError

    def next(self, choose: int | None = None) -> GeneratedToken:
        if self.done:
            raise StopIteration
        t0 = time.perf_counter()
        with torch.inference_mode():
            c, text = self._step(choose)
        self.pieces.append(text)
        top = tuple(TokenAlternative(t, self.token_text(t), p) for t, p in c.top)
        event = GeneratedToken(job=self.gen_id, index=self.count, token=c.token, text=text, prob=c.prob,
                               raw_prob=c.raw_prob, entropy=c.entropy, top=top)
        self.count += 1
        self.elapsed += time.perf_counter() - t0
        return event



class Seq2SeqGeneration(TaskGeneration):
    """Maps each line of the prompt to an output line, one decoder step per ``next()``: the output
    tokens, then the line's eos, whose text is the line break when another line follows. At most
    ``settings.max_tokens`` (capped by the model's context) tokens per line; the events' texts add up to
    the output lines joined by newlines (``seq2seq_decode``'s outputs at temperature 0)."""

    def __init__(self, model: Any, tokenizer: Any, prompt: str, settings: SamplingSettings | None = None,
                 *, gen_id: str = ""):
        if getattr(model, "task", "") != "seq2seq":
            raise ConfigError(f"{getattr(model, 'arch', 'this model')} is not an encoder-decoder; use a seq2seq run")
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
            self.memory, self.state = self.model.encode(_seq2seq_source(self.model, self.tokenizer, self.lines[self.line]))
        self.out: list[int] = []
        self.outputs.append(self.out)
        self.prev = self.bos
        self.stream = TextStream(self.tokenizer)
        self.chooser.pipeline.reset()

    def _step(self, choose: int | None) -> tuple[Any, str]:
        prev = torch.tensor([self.prev], device=self.device)
        logits, self.state, _ = self.model.decode_step(prev, self.state, self.memory)
        c = self.chooser.choose(logits[0], self.out, force=choose)
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


class BlankFilling(TaskGeneration):
    """Fills the blanks (``_`` or ``[MASK]``) of a masked LM's prompt left to right, one blank per
    ``next()``, each chosen given the text and the blanks filled so far. Event texts add up to the
    filled text: each carries the text since the previous blank up to its own token (the last one also
    the rest of the prompt)."""

    def __init__(self, model: Any, tokenizer: Any, prompt: str, settings: SamplingSettings | None = None,
                 *, gen_id: str = ""):
        if getattr(model, "task", "") != "mlm":
            raise ConfigError(f"{getattr(model, 'arch', 'this model')} is not a masked LM; use an mlm run to fill blanks")
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

    def _step(self, choose: int | None) -> tuple[Any, str]:
        k = len(self.filled)
        pos = self.blanks[k]
        logits, _, _ = self.model(torch.tensor([self.ids], device=self.device))
        c = self.chooser.choose(logits[0, pos], self.ids, force=choose)
        self.ids[pos] = c.token
        alts = tuple(TokenAlternative(t, self.token_text(t), p) for t, p in c.top)
        self.filled.append(FilledBlank(pos, c.token, self.token_text(c.token), c.prob, c.raw_prob, c.entropy, alts))
        start = self.blanks[k - 1] + 1 if k else 0
        last = k + 1 == len(self.blanks)
        if last:
            self.reason = "eot"
        return c, self.tokenizer.decode(self.ids[start : len(self.ids) if last else pos + 1])


def seq2seq_decode(model: Any, tokenizer: Any, text: str, settings: SamplingSettings | None = None,
                   beams: int | None = None, length_penalty: float = 1.0) -> list[int]:
    """Map one source text to output token ids (without specials), greedy/sampled per ``settings``
    (temperature 0 = greedy), or by beam search of width ``beams`` when given. At most ``settings.max_tokens``
    (capped by the model's context) output tokens."""
    if getattr(model, "task", "") != "seq2seq":
        raise ConfigError(f"{getattr(model, 'arch', 'this model')} is not an encoder-decoder; use a seq2seq run")
    settings = settings or SamplingSettings()
    vocab = int(model.config.vocab_size)
    pad, bos, eos = model.special_ids(vocab)
    limit = min(settings.max_tokens, int(model.config.context))
    device = model_device(model)
    with torch.inference_mode():
        src = _seq2seq_source(model, tokenizer, text)
        memory, state = model.encode(src)
        if beams is not None:
            from engine.models.base import map_state

            carry: dict[str, Any] = {"state": state, "memory": memory}

            def step(hyps: list[list[int]], parents: torch.Tensor | None) -> torch.Tensor:
                if parents is None:
                    prev = torch.tensor([bos], device=device)
                else:
                    idx = parents.to(device)
                    carry["state"] = map_state(carry["state"], lambda t: t.index_select(1, idx))
                    carry["memory"] = map_state(vars(carry["memory"]).copy(), lambda t: t.index_select(0, idx))
                    carry["memory"] = type(memory)(**carry["memory"])
                    prev = torch.tensor([h[-1] for h in hyps], device=device)
                logits, carry["state"], _ = model.decode_step(prev, carry["state"], carry["memory"])
                logits[:, [pad, bos]] = float("-inf")
                return logits.float().log_softmax(-1).cpu()

            best = _beam_loop(step, beams, length_penalty, limit, eos, vocab)
            return list(best[0].ids) if best else []
        banned = sorted({*settings.banned, pad, bos})
        chooser = TokenChooser(SamplingSettings.from_dict({**settings.to_dict(), "banned": banned}), vocab)
        prev = torch.tensor([bos], device=device)
        out: list[int] = []
        for _ in range(limit):
            logits, state, _ = model.decode_step(prev, state, memory)
            token = chooser.choose(logits[0], out).token
            if token == eos:
                break
            out.append(token)
            prev = torch.tensor([token], device=device)
        return out


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


def fill_blanks(model: Any, tokenizer: Any, text: str, settings: SamplingSettings | None = None
                ) -> tuple[str, list[FilledBlank]]:
    """Fill each blank (``_`` or ``[MASK]``, one token each) left to right: every blank is chosen from
    the model's distribution given the text and the blanks already filled (greedy at temperature 0)."""
    filling = BlankFilling(model, tokenizer, text, settings or SamplingSettings(temperature=0.0))
    for _ in filling:
        pass
    return tokenizer.decode(filling.ids), filling.filled
