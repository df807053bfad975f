"""Training tasks: what a language model, seq2seq, a masked LM and a count model do differently.

The loop (``engine.training.trainer``) is the same for every model; it asks its task for::

    batch = task.next_batch()              Batch: model inputs (sliceable by rows), token count
    loss  = task.loss(model, batch)        the mean loss the step minimises
    ev    = task.evaluate(sample)          Evaluation over the validation split (or a stated sample)
    task.sample(prompt, n)                 an in-training sample, through engine.generation

Evaluation covers the whole validation split unless ``sample`` (``--eval-batches N``) asks for N
batches; the Evaluation says how many positions it scored out of how many. Bits per character are
computed from whole-split totals: bits = (sum of nats) / ln 2 / (characters of the scored targets).

* LanguageModelTask: next-token loss. Feed-forward models (Transformer, MLP) evaluate on consecutive
  non-overlapping windows of the split (every target position once; the first tokens of each window
  see a shorter context); recurrent models on B contiguous streams carrying their state (the
  remainder continues the last stream), as they train.
* MaskedLMTask: loss over masked positions only; evaluation masks the same positions every time.
* Seq2SeqTask: teacher-forced loss over (source, target) pairs; exact match of greedy decoding.
* CountTask: fitted by counting (n-gram); evaluated on one stream over the whole split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.device import autocast, bits_per_char
from engine.errors import SeqplayError
from engine.worker import protocol as P

if TYPE_CHECKING:
    from engine.training.trainer import Trainer

EXACT_MATCH_PAIRS = 256  # seq2seq: greedy-decoded validation pairs scored by exact match
COUNT_EVAL_CHUNK_CELLS = 4_000_000  # n-gram evaluation: (tokens x vocabulary) probabilities per chunk
LN2 = math.log(2)


@dataclass
class Batch:
    """One micro-batch: ``tensors`` (rows along dim 0, so data-parallel ranks can slice them),
    ``tokens`` it trains on, ``reset`` (recurrent streams restarted) and ``rows`` (which data rows:
    seq2seq pair indices, for the blow-up diagnosis)."""

    tensors: tuple[torch.Tensor, ...]
    tokens: int
    reset: bool = False
    rows: tuple[int, ...] | None = None

    def slice(self, lo: int, hi: int) -> Batch:
        rows = self.rows[lo:hi] if self.rows is not None else None
        part = tuple(t[lo:hi] for t in self.tensors)
        return Batch(part, self.tokens * (hi - lo) // max(1, self.tensors[0].size(0)), self.reset, rows)


@dataclass(frozen=True)
class Evaluation:
    """Validation result: mean loss (nats per scored position) over ``tokens`` scored positions of
    the ``split_tokens`` the split has; ``sampled``: a sample (``--eval-batches``) instead of all."""

    loss: float
    tokens: int
    split_tokens: int
    bpc: float
    sampled: bool = False
    accuracy: float | None = None
    accuracy_pairs: int | None = None


def _as_device(trainer: Trainer, array: np.ndarray) -> torch.Tensor:
    """Host batch -> device. On CUDA through pinned memory, asynchronously (no host sync)."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    if trainer.device.startswith("cuda"):
        return t.pin_memory().to(trainer.device, non_blocking=True)
    return t.to(trainer.device)


class _eval_mode:
    """Model in eval mode, the training RNG untouched (``fork_rng``), grads off; restored after."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def __enter__(self) -> None:
        self.was_training = self.trainer.model.training
        self.trainer.model.eval()
        self.rng = self.trainer.rng_guard()
        self.rng.__enter__()
        self.no_grad = torch.no_grad()
        self.no_grad.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.no_grad.__exit__(*exc)
        self.rng.__exit__(*exc)
        if self.was_training:
            self.trainer.model.train()


class Task:
    """The task interface the loop uses (see the module docstring)."""

    name = ""
    trainable = True

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.batcher: Any = None

    def setup(self) -> None:
        """Build the batcher (after the model exists)."""

    def notes(self) -> list[str]:
        """Lines to log when the run starts."""
        return []

    def next_batch(self) -> Batch:
        raise NotImplementedError

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, sample: int | None) -> Evaluation:
        raise NotImplementedError

    def sample(self, prompt: str, max_tokens: int) -> P.SampleText | None:
        raise NotImplementedError

    def describe_rows(self, batch: Batch, rows: list[int]) -> str | None:
        """What is wrong with the data of ``rows`` of ``batch`` (None: nothing visible)."""
        return None

    # carried state (recurrent models): checkpointed with the run
    def carried(self) -> list[torch.Tensor]:
        return []

    def load_carried(self, tensors: list[torch.Tensor]) -> None:
        pass

    def reset_carried(self) -> None:
        pass

    def _bpc_whole(self, nats: float, chars: int) -> float:
        return nats / LN2 / chars if chars > 0 and math.isfinite(nats) else float("nan")


class LanguageModelTask(Task):
    """Next-token prediction (every LM; recurrent ones carry their state through truncated BPTT)."""

    name = "lm"

    def setup(self) -> None:
        from engine.data.sources import ContiguousStreams, RandomWindows

        t, cfg = self.t, self.t.config
        self.recurrent = bool(getattr(t.model, "recurrent", False))
        self.state: Any = None
        if self.recurrent:
            self.batcher = ContiguousStreams(t.data.train_ids, cfg.batch_size, t.context)
        else:
            self.batcher = RandomWindows(t.data.train_ids, cfg.batch_size, t.context, seed=cfg.seed)

    def next_batch(self) -> Batch:
        if self.recurrent:
            x, y, reset = self.batcher.next()
        else:
            (x, y), reset = self.batcher.next(), False
        return Batch((_as_device(self.t, x), _as_device(self.t, y)), int(x.size), reset)

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        x, y = batch.tensors
        if not self.recurrent:
            return model(x, y)[1]
        if batch.reset:
            self.state = None
        _, loss, state = model(x, y, state=self.state)
        self.state = self.t.model.detach_state(state)  # truncated BPTT: the graph ends at the batch
        return loss

    # -- carried state -----------------------------------------------------------------------------
    def carried(self) -> list[torch.Tensor]:
        return list(_flatten(self.state))

    def load_carried(self, tensors: list[torch.Tensor]) -> None:
        self.state = tuple(x.to(self.t.device) for x in tensors) if tensors else None

    def reset_carried(self) -> None:
        self.state = None

    # -- evaluation --------------------------------------------------------------------------------
    def _target_chars(self) -> int:
        """Characters of the scored targets (every validation token but the first)."""
        val = self.t.data.val_ids
        return max(0, self.t.data.val_chars - len(self.t.tokenizer.decode([int(val[0])])))

    def evaluate(self, sample: int | None) -> Evaluation:
        with _eval_mode(self.t):
            nats, count = self._recurrent_nats(sample) if self.recurrent else self._window_nats(sample)
        split = len(self.t.data.val_ids) - 1
        loss = nats / max(count, 1)
        if sample is None:
            bpc = self._bpc_whole(nats, self._target_chars())
        else:  # a sample's characters are not counted: the split's characters per token stand in
            bpc = bits_per_char(loss, len(self.t.data.val_ids), self.t.data.val_chars)
        return Evaluation(loss, count, split, bpc, sampled=sample is not None)

    def split_loss(self, ids: np.ndarray) -> float:
        """Mean loss over every target of ``ids`` (e.g. the test split), scored as validation is."""
        with _eval_mode(self.t):
            nats, count = self._recurrent_nats(None, ids) if self.recurrent else self._window_nats(None, ids)
        return nats / max(count, 1)

    def _windows(self, sample: int | None, T: int, n: int) -> list[tuple[int, int]]:
        """(start, length) of the windows to score over ``n`` target positions: consecutive
        non-overlapping windows covering every target, or ``sample`` batches of full windows spread
        evenly over them."""
        if sample is None:
            return [(s, min(T, n - s)) for s in range(0, n, T)]
        k = max(1, min(sample * self.t.config.batch_size, n // T))
        return [(int(s), T) for s in np.linspace(0, n - T, k).astype(np.int64)]

    def _window_nats(self, sample: int | None, ids: np.ndarray | None = None) -> tuple[float, int]:
        t = self.t
        val = np.asarray(t.data.val_ids if ids is None else ids, dtype=np.int64)
        T, B = t.context, t.config.batch_size
        windows = self._windows(sample, T, len(val) - 1)
        nats = torch.zeros((), dtype=torch.float64, device=t.device)
        count = 0
        masks = torch.Generator(device="cpu").manual_seed(t.config.seed)  # mlm: the same masks every time
        full = [s for s, n in windows if n == T]
        groups = [full[i : i + B] for i in range(0, len(full), B)] + [[s] for s, n in windows if n != T]
        for starts in groups:
            n = min(T, len(val) - 1 - starts[0])
            w = _as_device(t, val[np.asarray(starts)[:, None] + np.arange(n + 1)])
            loss, scored = self._window_loss(w, masks)
            nats += loss.double() * scored
            count += scored
        return float(nats.item()), count

    def _window_loss(self, w: torch.Tensor, masks: torch.Generator) -> tuple[torch.Tensor, int]:
        with autocast(self.t.device, self.t.precision):
            _, loss, _ = self.t.model(w[:, :-1], w[:, 1:])
        return loss, w[:, 1:].numel()

    def _recurrent_nats(self, sample: int | None, ids: np.ndarray | None = None) -> tuple[float, int]:
        t = self.t
        val = np.asarray(t.data.val_ids if ids is None else ids, dtype=np.int64)
        T, B = t.context, t.config.batch_size
        n = len(val) - 1
        streams = max(1, min(B, n // max(T, 1)))
        length = n // streams
        xs = torch.from_numpy(val[: streams * length].reshape(streams, length))
        ys = torch.from_numpy(val[1 : streams * length + 1].reshape(streams, length))
        nats = torch.zeros((), dtype=torch.float64, device=t.device)
        count, state = 0, None

        def score(x: torch.Tensor, y: torch.Tensor, state: Any) -> Any:
            nonlocal nats, count
            with autocast(t.device, t.precision):
                _, loss, state = t.model(x.to(t.device), y.to(t.device), state=state)
            nats += loss.double() * y.numel()
            count += y.numel()
            return state

        for i, start in enumerate(range(0, length, T)):
            if sample is not None and i >= sample:
                return float(nats.item()), count
            state = score(xs[:, start : start + T], ys[:, start : start + T], state)
        rest = n - streams * length  # < streams tokens: they continue the last stream exactly
        if rest:
            from engine.models.base import map_state

            last = map_state(state, lambda s: s[:, -1:].contiguous())
            lo = streams * length
            score(torch.from_numpy(val[lo : lo + rest])[None], torch.from_numpy(val[lo + 1 : lo + rest + 1])[None], last)
        return float(nats.item()), count

    # -- samples -----------------------------------------------------------------------------------
    def sample(self, prompt: str, max_tokens: int) -> P.SampleText | None:
        """Temperature-0.8 sample through engine.generation (KV cache / carried state), seeded by the
        step: the same run gives the same samples."""
        from engine.generation.generate import Generation
        from engine.generation.processors import SamplingSettings

        t = self.t
        settings = SamplingSettings(temperature=0.8, seed=t.config.seed + t.step, max_tokens=max_tokens)
        start = prompt or [int(t.data.val_ids[0])]
        try:
            with _eval_mode(t):
                gen = Generation(t.model, t.tokenizer, start, settings)
                for _ in gen:
                    pass
        except SeqplayError as err:  # a bad prompt from the user: report it, keep training
            t.emit(P.ErrorEvent(job=t.job, message=str(err), fatal=False))
            return None
        return P.SampleText(job=t.job, step=t.step, prompt=prompt, text=gen.text, copied=t.copied(gen.text))


class MaskedLMTask(LanguageModelTask):
    """BERT-style masked LM: 15% of positions masked 80/10/10, loss over the masked positions."""

    name = "mlm"

    def notes(self) -> list[str]:
        return ["masked LM: validation loss is over masked positions (same masks every evaluation); "
                "bits/char is not reported (NaN): the model never predicts the text left to right"]

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        return model(*self.t.model.masking(batch.tensors[0]))[1]  # training RNG: resumable

    def evaluate(self, sample: int | None) -> Evaluation:
        with _eval_mode(self.t):
            nats, count = self._window_nats(sample)
        split = len(self.t.data.val_ids) - 1
        return Evaluation(nats / max(count, 1), count, split, float("nan"), sampled=sample is not None)

    def _window_loss(self, w: torch.Tensor, masks: torch.Generator) -> tuple[torch.Tensor, int]:
        inputs, targets = self.t.model.masking(w[:, :-1], generator=masks)
        with autocast(self.t.device, self.t.precision):
            _, loss, _ = self.t.model(inputs, targets)
        return loss, int((targets != -100).sum())

    def sample(self, prompt: str, max_tokens: int) -> P.SampleText | None:
        """Blanks (``_``) filled greedily in ``prompt``; default: every 7th token of the validation text
        blanked (its own underscores read as spaces)."""
        from engine.generation.generate import fill_blanks

        t, tok = self.t, self.t.tokenizer
        try:
            with _eval_mode(t):
                if prompt:
                    shown, text = prompt, fill_blanks(t.model, tok, prompt)[0]
                else:
                    ids = [int(i) for i in t.data.val_ids[: min(t.context, 64)]]
                    pieces = [tok.decode(ids[i : i + 6]) for i in range(0, len(ids), 7)]  # tokens 7k+6 blanked
                    shown = "_".join(p.replace("_", " ") for p in pieces)
                    text = fill_blanks(t.model, tok, shown)[0]
        except SeqplayError as err:
            t.emit(P.ErrorEvent(job=t.job, message=str(err), fatal=False))
            return None
        return P.SampleText(job=t.job, step=t.step, prompt=shown, text=text)


class Seq2SeqTask(Task):
    """Source -> target pairs, teacher-forced (engine.data.pairs has the convention)."""

    name = "seq2seq"

    def setup(self) -> None:
        from engine.data.pairs import PairBatches, encode_pairs, split_pairs

        t, cfg = self.t, self.t.config
        pairs = t.data.source.pairs()
        limit = int(t.model_config.context)
        srcs, tgts, report = encode_pairs(pairs, t.tokenizer, limit)
        train, val = split_pairs(len(pairs), cfg.val_fraction)
        self.specials = t.model.special_ids(int(t.model_config.vocab_size))
        self.pairs = pairs
        self.report = report
        self.train_index = list(train)
        self.val_index = list(val)
        self.val = ([srcs[i] for i in val], [tgts[i] for i in val])
        self.batcher = PairBatches([srcs[i] for i in train], [tgts[i] for i in train], cfg.batch_size,
                                   self.specials, seed=cfg.seed)

    def notes(self) -> list[str]:
        n_train, n_val = len(self.train_index), len(self.val_index)
        lines = [f"{n_train:,} training and {n_val:,} validation pairs; each evaluation scores the loss on "
                 f"{'every' if self.t.config.eval_batches is None else 'a sample of the'} validation pairs and "
                 f"greedy-decodes {min(n_val, EXACT_MATCH_PAIRS):,} of them for exact-match accuracy"]
        return lines + self.report.lines()

    def next_batch(self) -> Batch:
        src, tgt_in, targets = self.batcher.next()
        rows = tuple(self.train_index[i] for i in self.batcher.last_picked)
        tensors = tuple(_as_device(self.t, a) for a in (src, tgt_in, targets))
        return Batch(tensors, int(src.size + targets.size), rows=rows)  # + target positions

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        return model(*batch.tensors)[1]

    def describe_rows(self, batch: Batch, rows: list[int]) -> str | None:
        if batch.rows is None:
            return None
        problems = [self.report.describe(batch.rows[r], self.pairs[batch.rows[r]]) for r in rows]
        problems = [p for p in problems if p]
        return "; ".join(problems[:3]) or None

    def evaluate(self, sample: int | None) -> Evaluation:
        from engine.data.pairs import collate

        t = self.t
        srcs, tgts = self.val
        B = t.config.batch_size
        n = len(srcs) if sample is None else min(len(srcs), sample * B)
        nats, count = 0.0, 0
        with _eval_mode(t):
            for i in range(0, n, B):
                batch = [_as_device(t, a) for a in collate(srcs[i : i + B], tgts[i : i + B], *self.specials)]
                with autocast(t.device, t.precision):
                    _, loss, _ = t.model(*batch)
                scored = int((batch[2] != -100).sum())
                nats += float(loss.double()) * scored
                count += scored
            n_match = min(len(srcs), EXACT_MATCH_PAIRS)
            hits = sum(out == y.tolist() for out, y in zip(self._decode(n_match), tgts))
        chars = sum(len(t.tokenizer.decode(y)) + 1 for y in tgts[:n])  # eos counts as the line end
        split = sum(len(y) + 1 for y in tgts)
        return Evaluation(nats / max(count, 1), count, split, self._bpc_whole(nats, chars), sampled=sample is not None,
                          accuracy=hits / max(n_match, 1), accuracy_pairs=n_match)

    def _decode(self, n: int) -> list[list[int]]:
        """Greedy output ids of the first ``n`` validation sources (engine.generation's batched decoder),
        each at most one token longer than its target: a longer output is wrong anyway."""
        from engine.generation.decoders import greedy_outputs

        srcs, tgts = self.val
        return greedy_outputs(self.t.model, srcs[:n], [len(y) + 1 for y in tgts[:n]])

    def sample(self, prompt: str, max_tokens: int) -> P.SampleText | None:
        """Greedy output for ``prompt`` (default: the first validation source)."""
        from engine.generation.generate import seq2seq_decode
        from engine.generation.processors import SamplingSettings

        t = self.t
        shown = prompt or self.pairs[self.val_index[0]][0]
        try:
            with _eval_mode(t):
                out = seq2seq_decode(t.model, t.tokenizer, shown, SamplingSettings(temperature=0.0, max_tokens=max_tokens))
        except SeqplayError as err:
            t.emit(P.ErrorEvent(job=t.job, message=str(err), fatal=False))
            return None
        return P.SampleText(job=t.job, step=t.step, prompt=shown, text=t.tokenizer.decode(out))


class CountTask(Task):
    """Count models (n-gram): ``fit`` on the training ids once; evaluated over the whole split as one
    contiguous stream, read in chunks that carry the model's state (its last n-1 tokens)."""

    name = "count"
    trainable = False

    def fit(self) -> int:
        self.t.model.fit(self.t.data.train_ids)
        return len(self.t.data.train_ids)

    def evaluate(self, sample: int | None) -> Evaluation:
        t = self.t
        val = np.asarray(t.data.val_ids, dtype=np.int64)
        V = int(t.model_config.vocab_size)
        n = len(val) - 1
        chunk = max(16, min(4096, COUNT_EVAL_CHUNK_CELLS // max(V, 1)))
        state, nats = None, 0.0
        with torch.no_grad():
            for start in range(0, n, chunk):
                w = torch.from_numpy(val[start : min(start + chunk, n) + 1])[None].to(t.device)
                _, loss, state = t.model(w[:, :-1], w[:, 1:], state=state)
                nats += float(loss.double()) * (w.size(1) - 1)
        chars = max(0, t.data.val_chars - len(t.tokenizer.decode([int(val[0])])))
        return Evaluation(nats / max(n, 1), n, n, self._bpc_whole(nats, chars))

    def sample(self, prompt: str, max_tokens: int) -> P.SampleText | None:
        return LanguageModelTask.sample(self, prompt, max_tokens)  # type: ignore[arg-type]


TASKS: dict[str, type[Task]] = {"lm": LanguageModelTask, "mlm": MaskedLMTask, "seq2seq": Seq2SeqTask}


def make_task(trainer: Trainer) -> Task:
    """The task object for the trainer's architecture (count models by ``trainable``)."""
    if not getattr(trainer.model, "trainable", True):
        return CountTask(trainer)
    return TASKS[trainer.info.task](trainer)


def _flatten(state: Any) -> list[torch.Tensor]:
    if state is None:
        return []
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, tuple | list):
        return [t for s in state for t in _flatten(s)]
    return []
