"""The worker's side of ``Generate`` / ``GenerateStep`` / ``CancelGeneration``: ``GenerationJobs`` runs one
generation at a time inside the worker process, a time slice at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.device import torch_threads
from engine.errors import ConfigError, SeqplayError
from engine.generation.beams import Beam, beam_search_steps, beam_text
from engine.generation.decoders import BlankFilling, Seq2SeqGeneration, TaskGeneration, _greedy
from engine.generation.processors import SamplingSettings
from engine.generation.settings import BEAMS, LENGTH_PENALTY
from engine.generation.streaming import Generation, eval_mode, start_ids
from engine.worker.protocol import (
    BeamText,
    CancelGeneration,
    ErrorEvent,
    Event,
    Generate,
    GenerateStep,
    GenerationDone,
)

# --------------------------------------------------------------------------------------------------
# The worker's side: Generate / GenerateStep / CancelGeneration
# --------------------------------------------------------------------------------------------------


class BeamGeneration:
    """A language-model beam search (``engine.generation.beams.beam_search_steps``) run one search step
    per ``next()``; it streams no tokens, and its ``done_event()`` carries the hypotheses."""

    def __init__(self, model: Any, tokenizer: Any, prompt: str, settings: SamplingSettings, width: int,
                 length_penalty: float, *, gen_id: str = ""):
        self.model, self.tokenizer, self.gen_id = model, tokenizer, gen_id
        ids = [int(i) for i in tokenizer.encode(prompt)] or start_ids(tokenizer)
        self._steps = beam_search_steps(model, ids, width, length_penalty, settings.max_tokens, settings=settings,
                                        tokenizer=tokenizer)
        self.found: list[Beam] = []
        self.done = False
        self.reason: str | None = None
        self.elapsed = 0.0

    def next(self, choose: int | None = None) -> None:
        """One search step (the search's last one fills ``found``)."""
        t0 = time.perf_counter()
        try:
            next(self._steps)
        except StopIteration as stop:
            self.found, self.done = stop.value, True
            self.reason = self.found[0].reason
        finally:
            self.elapsed += time.perf_counter() - t0

    def done_event(self) -> GenerationDone:
        beams = tuple(BeamText(text=beam_text(b, self.tokenizer), logprob=b.logprob, score=b.score, tokens=len(b.ids),
                               reason=b.reason) for b in self.found)
        tokens = sum(b.tokens for b in beams)
        return GenerationDone(job=self.gen_id, reason=self.reason or "cancelled", text=beams[0].text if beams else "",
                              tokens_per_s=tokens / self.elapsed if self.elapsed > 0 and tokens else 0.0, beams=beams)


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
    ``window_threads``: the count while a Transformer recomputes its window past the context
    (``Generation.window_threads``; None: ``threads``).
    """

    def __init__(self, emit: Callable[[Event], None], device: str = "cpu", slice_s: float = 0.03,
                 threads: int | None = 1, window_threads: int | None = None):
        self.emit, self.device, self.slice_s, self.threads = emit, device, slice_s, threads
        self.window_threads = window_threads
        self.current: Generation | TaskGeneration | BeamGeneration | None = None
        self.step_mode = False
        self._cache_key: Any = None  # engine.runs.checkpoint.CheckpointIdentity of the cached model
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
        """The model ``source`` names, kept for the next generation until the file it resolves to changes."""
        from engine.runs.checkpoint import checkpoint_identity, load_model

        key = checkpoint_identity(source)  # taken before loading: a file replaced meanwhile loads again next time
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
                if isinstance(gen, BeamGeneration):
                    return  # a beam search runs to its end by itself
                with torch_threads(self.threads), eval_mode(gen.model):
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
        width = BEAMS.check(cmd.beams)
        if width > 1:
            if task != "lm":
                raise ConfigError(f"beam search here is for language models, and this is a {task} model; "
                                  "`seqplay generate RUN --beams B` decodes it with beams")
            self.current = BeamGeneration(model, tokenizer, cmd.prompt, settings, width,
                                          LENGTH_PENALTY.check(cmd.length_penalty), gen_id=cmd.gen_id)
            self.step_mode = False
            return
        with torch_threads(self.threads), eval_mode(model):
            if task == "seq2seq":
                self.current = Seq2SeqGeneration(model, tokenizer, cmd.prompt, _greedy(settings), gen_id=cmd.gen_id)
            elif task == "mlm":
                self.current = BlankFilling(model, tokenizer, cmd.prompt, _greedy(settings), gen_id=cmd.gen_id)
            else:
                self.current = Generation(model, tokenizer, cmd.prompt, settings, gen_id=cmd.gen_id,
                                          window_threads=self.window_threads)
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
            with torch_threads(self.threads), eval_mode(gen.model):
                while not gen.done and time.perf_counter() < deadline:
                    event = gen.next()
                    if event is not None:  # a beam search step emits nothing
                        self.emit(event)
        except Exception as err:  # noqa: BLE001 - reported, never raised into the worker loop
            message = str(err) if isinstance(err, SeqplayError) else f"generation failed ({type(err).__name__}); try other settings"
            self._fail(gen.gen_id, message)
            return
        if gen.done:
            self._finish(None)
