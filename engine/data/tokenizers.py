"""Tokenizers: text <-> integer ids, one interface for four ways of cutting text.

- ``char``: one id per character; the vocabulary is the sorted distinct characters of the corpus
  plus ``<unk>`` as the last id (unseen characters at generation/eval time; it decodes as U+FFFD).
- ``byte``: the 256 UTF-8 byte values; lossless for any text, no training.
- ``word``: words and punctuation, the most frequent ``vocab_size - 1`` of them plus ``<unk>`` (id 0).
  Whitespace is kept: a word or punctuation token carries at most one leading space (" the", " ,"),
  a newline is its own token and other runs of spaces/tabs are tokens too, so ``decode`` is plain
  concatenation and round-trips every text whose tokens are all in the vocabulary.
- ``bpe``: byte-level BPE trained on the corpus with Hugging Face ``tokenizers`` (GPT-2 style
  pre-tokenisation without an inserted prefix space, so it round-trips any text).
- ``whitespace``: the word-level protocol of the PTB / WikiText language-modelling papers (and
  pytorch/examples ``word_language_model``): tokens are the whitespace-separated words of each line,
  every newline is an ``<eos>`` token, ``<unk>`` in the text is one token, and the vocabulary is every
  type of the training text (33,278 on WikiText-2). Spacing is not kept: ``decode`` joins with spaces.

Vocabularies that are learned (word, bpe, whitespace) come from the training split only
(``engine.data.sources.prepare``). char's alphabet comes from the whole text of a single file (so
no validation character is ``<unk>``) and from ``train.txt`` of a split folder; byte learns nothing.

Ids are compact numpy arrays (``id_dtype``: uint8 / uint16 / uint32 by vocabulary size), never lists.
``Tokenizer.to_dict()`` is plain JSON; ``Tokenizer.from_dict`` rebuilds any kind.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engine.errors import ConfigError, DataError

KINDS = ("char", "byte", "word", "bpe", "whitespace")
LEARNED_KINDS = ("word", "bpe", "whitespace")  # vocabularies learned from the training split
DEFAULT_WORD_VOCAB = 10_000
DEFAULT_BPE_VOCAB = 1_024
BPE_MAX_TRAIN_CHARS = 100_000_000  # BPE/word vocabularies are learned from at most this much text
UNK = "<unk>"
EOS = "<eos>"


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids below ``vocab_size``."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def _as_chunks(text: str | Iterable[str]) -> Iterable[str]:
    return [text] if isinstance(text, str) else text


def _is_continuation(b: np.ndarray) -> np.ndarray:
    return (b & 0xC0) == 0x80


class Tokenizer:
    """Base class: ``encode``/``decode`` between text and ids, plus JSON save/load."""

    name: ClassVar[str] = ""
    unk_id: int | None = None
    eot_id: int | None = None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(self.vocab_size)

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        raise NotImplementedError

    def token_text(self, token_id: int) -> str:
        """Display text of one token (as the model sees it)."""
        return self.decode([token_id])

    def chars_per_token(self) -> np.ndarray:
        """float64 array (vocab_size,): characters each id stands for, to count characters of a split.

        Exact for char, byte and bpe (a byte-level token counts the UTF-8 lead bytes it holds);
        for word ``<unk>`` counts as the mean length of the words it replaced at training time.
        """
        raise NotImplementedError

    def count_chars(self, ids: np.ndarray) -> int:
        """Number of characters of text that ``ids`` encode (see ``chars_per_token``)."""
        if len(ids) == 0:
            return 0
        table = self.chars_per_token()
        counts = np.zeros(len(table), dtype=np.int64)
        step = 1 << 24  # in blocks, so a memory-mapped billion-token array is never copied whole
        for start in range(0, len(ids), step):
            block = np.asarray(ids[start : start + step]).astype(np.int64)
            counts += np.bincount(block, minlength=len(table))[: len(table)]
        return int(round(float(counts @ table)))

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Tokenizer:
        kind = d.get("kind")
        cls = {"char": CharTokenizer, "byte": ByteTokenizer, "word": WordTokenizer, "bpe": BPETokenizer,
               "whitespace": WhitespaceTokenizer}.get(kind)
        if cls is None:
            raise DataError(f"unknown tokenizer kind {kind!r} in a saved tokenizer; expected one of {', '.join(KINDS)}")
        return cls._from_dict(d)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as JSON (atomically: a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> Tokenizer:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read tokenizer {path}: {err}; the file is missing or not a seqplay tokenizer") from None
        return Tokenizer.from_dict(d)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class CharTokenizer(Tokenizer):
    """One id per character: sorted distinct characters of the corpus, then ``<unk>``."""

    name = "char"

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = sorted(set(chars))
        if any(len(c) != 1 for c in self.chars):
            raise DataError("a char tokenizer vocabulary must hold single characters; the saved tokenizer is corrupt")
        self.unk_id = len(self.chars)
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        top = int(codes.max()) if len(codes) else 0
        self._lookup = np.full(top + 1, self.unk_id, dtype=np.int64)
        self._lookup[codes] = np.arange(len(codes))
        # id -> code point, <unk> decodes as U+FFFD
        self._codes = np.concatenate([codes, [0xFFFD]]).astype(np.uint32)

    @classmethod
    def train(cls, text: str | Iterable[str]) -> CharTokenizer:
        seen: set[str] = set()
        for chunk in _as_chunks(text):
            codes = np.unique(np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32))
            seen.update(map(chr, codes.tolist()))
        return cls(seen)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        top = len(self._lookup) - 1
        ids = self._lookup[np.minimum(codes, top)]
        ids[codes > top] = self.unk_id
        return ids.astype(self.dtype)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        arr = np.where((arr >= 0) & (arr < self.vocab_size), arr, self.unk_id)
        return self._codes[arr].tobytes().decode("utf-32-le")

    def token_text(self, token_id: int) -> str:
        return UNK if token_id == self.unk_id else self.decode([token_id])

    def chars_per_token(self) -> np.ndarray:
        return np.ones(self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "char", "vocab_size": self.vocab_size, "chars": "".join(self.chars)}

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(d["chars"])


class ByteTokenizer(Tokenizer):
    """The 256 byte values of the UTF-8 encoding; lossless, nothing to train."""

    name = "byte"

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        return np.clip(arr, 0, 255).astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def token_text(self, token_id: int) -> str:
        if 32 <= token_id < 127 or token_id in (9, 10):
            return chr(token_id)
        return f"<0x{token_id:02X}>"

    def chars_per_token(self) -> np.ndarray:
        return (~_is_continuation(np.arange(256))).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "byte", "vocab_size": 256}

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> ByteTokenizer:
        return cls()


# A word or a punctuation mark with at most one leading space; a newline; other whitespace runs.
WORD_PATTERN = re.compile(r" ?\w+| ?[^\w\s]|\n|[^\S\n]+")


class WordTokenizer(Tokenizer):
    """Words and punctuation (see ``WORD_PATTERN``), capped by frequency, ``<unk>`` = id 0."""

    name = "word"

    def __init__(self, words: list[str], unk_chars: float = 5.0):
        self.words = [UNK, *[w for w in words if w != UNK]]
        self.unk_id = 0
        self.unk_chars = float(unk_chars)
        self._index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int | None = None) -> WordTokenizer:
        size = DEFAULT_WORD_VOCAB if vocab_size is None else vocab_size
        if size < 2:
            raise ConfigError(f"word vocabulary size must be at least 2, got {size}")
        counts: Counter[str] = Counter()
        used = 0
        for chunk in _as_chunks(text):
            counts.update(WORD_PATTERN.findall(chunk))
            used += len(chunk)
            if used >= BPE_MAX_TRAIN_CHARS:
                break
        # most frequent first, ties broken alphabetically so the vocabulary is deterministic
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept, dropped = ranked[: size - 1], ranked[size - 1 :]
        n_drop = sum(c for _, c in dropped)
        unk_chars = sum(len(w) * c for w, c in dropped) / n_drop if n_drop else 5.0
        return cls([w for w, _ in kept], unk_chars)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> np.ndarray:
        get = self._index.get
        tokens = WORD_PATTERN.findall(text)
        return np.fromiter((get(t, 0) for t in tokens), dtype=self.dtype, count=len(tokens))

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        words, n = self.words, len(self.words)
        return "".join(words[i] if 0 <= i < n else UNK for i in np.asarray(ids, dtype=np.int64).tolist())

    def chars_per_token(self) -> np.ndarray:
        table = np.array([len(w) for w in self.words], dtype=np.float64)
        table[0] = self.unk_chars
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "vocab_size": self.vocab_size, "words": self.words[1:], "unk_chars": self.unk_chars}

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        return cls(list(d["words"]), d.get("unk_chars", 5.0))


class WhitespaceTokenizer(Tokenizer):
    """Whitespace-separated words plus ``<eos>`` at every newline (the PTB / WikiText protocol).

    ``<unk>`` is id 0 and ``<eos>`` id 1, then the training types by frequency (ties alphabetical).
    ``vocab_size`` None keeps every training type; a cap maps the rarer ones to ``<unk>``.
    """

    name = "whitespace"

    def __init__(self, words: list[str]):
        self.words = [UNK, EOS, *[w for w in words if w not in (UNK, EOS)]]
        self.unk_id, self.eos_id = 0, 1
        self._index = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def split(text: str) -> list[str]:
        """The tokens of ``text``: its words, with ``<eos>`` for each newline."""
        return text.replace("\n", f" {EOS} ").split()

    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int | None = None) -> WhitespaceTokenizer:
        if vocab_size is not None and vocab_size < 3:
            raise ConfigError(f"whitespace vocabulary size must be at least 3 (<unk>, <eos> and a word), got {vocab_size}")
        counts: Counter[str] = Counter()
        used = 0
        for chunk in _as_chunks(text):
            counts.update(chunk.split())
            used += len(chunk)
            if used >= BPE_MAX_TRAIN_CHARS:
                break
        counts.pop(UNK, None)
        counts.pop(EOS, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if vocab_size is not None:
            ranked = ranked[: vocab_size - 2]
        return cls([w for w, _ in ranked])

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> np.ndarray:
        get = self._index.get
        tokens = self.split(text)
        return np.fromiter((get(t, 0) for t in tokens), dtype=self.dtype, count=len(tokens))

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        words, n = self.words, len(self.words)
        out: list[str] = []
        for i in np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).tolist():
            if i == 1:
                out.append("\n")
            else:
                if out and out[-1] != "\n":
                    out.append(" ")
                out.append(words[i] if 0 <= i < n else UNK)
        return "".join(out)

    def token_text(self, token_id: int) -> str:
        return self.words[token_id] if 0 <= token_id < len(self.words) else UNK

    def chars_per_token(self) -> np.ndarray:
        """A word and one space; ``<eos>`` the newline. (Splits prepared from text count their
        characters exactly instead: ``Prepared.val_chars``.)"""
        table = np.array([len(w) + 1 for w in self.words], dtype=np.float64)
        table[1] = 1.0
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "whitespace", "vocab_size": self.vocab_size, "words": self.words[2:]}

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> WhitespaceTokenizer:
        return cls(list(d["words"]))


# A non-space character followed by whitespace: a byte-level pre-token always ends there (no GPT-2
# pre-token holds a non-space character and then a space), so pieces cut at such places encode, one
# by one and in parallel, to exactly the ids of the whole text.
_BPE_BOUNDARY = re.compile(r"\S(?=\s)")


def bpe_pieces(text: str, target: int = 16384) -> list[str]:
    """``text`` cut at pre-token boundaries into pieces of about ``target`` characters."""
    pieces, start = [], 0
    while len(text) - start > target:
        m = _BPE_BOUNDARY.search(text, start + target)
        if m is None:
            break
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return pieces


class BPETokenizer(Tokenizer):
    """Byte-level BPE (Hugging Face ``tokenizers``) without prefix-space insertion: lossless."""

    name = "bpe"

    def __init__(self, hf: Any):
        self.hf = hf
        self._table: np.ndarray | None = None

    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int | None = None) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        size = DEFAULT_BPE_VOCAB if vocab_size is None else vocab_size
        if size < 257:
            raise ConfigError(f"bpe vocabulary size must be at least 257 (256 bytes + merges), got {size}; use --vocab-size 1024")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=size,
            min_frequency=2,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )

        def pieces():
            used = 0
            for chunk in _as_chunks(text):
                yield from bpe_pieces(chunk, 4096)
                used += len(chunk)
                if used >= BPE_MAX_TRAIN_CHARS:
                    return

        hf.train_from_iterator(pieces(), trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        if len(text) < 65536:
            ids = self.hf.encode(text).ids
            return np.array(ids, dtype=self.dtype)
        pieces = bpe_pieces(text)
        encs = self.hf.encode_batch_fast(pieces) if hasattr(self.hf, "encode_batch_fast") else self.hf.encode_batch(pieces)
        parts = [np.array(e.ids, dtype=self.dtype) for e in encs]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        arr = arr[(arr >= 0) & (arr < self.vocab_size)]
        return self.hf.decode(arr.tolist(), skip_special_tokens=False)

    def token_text(self, token_id: int) -> str:
        return self.decode([token_id])

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a token stands for (may be part of one UTF-8 character)."""
        alphabet = {c: i for i, c in enumerate(_byte_alphabet())}
        return bytes(alphabet[c] for c in self.hf.id_to_token(token_id))

    def chars_per_token(self) -> np.ndarray:
        if self._table is None:
            inv = {c: i for i, c in enumerate(_byte_alphabet())}
            table = np.zeros(self.vocab_size)
            for tok, i in self.hf.get_vocab().items():
                raw = [inv.get(c, 0x41) for c in tok]
                table[i] = sum(1 for b in raw if (b & 0xC0) != 0x80)
            self._table = table
        return self._table

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bpe", "vocab_size": self.vocab_size, "hf": self.hf.to_str()}

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(d["hf"]))


@functools.cache
def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character map, in byte order (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    mapping = dict(zip(bs, cs))
    return [chr(mapping[b]) for b in range(256)]


def build_tokenizer(kind: str, text: str | Iterable[str], vocab_size: int | None = None) -> Tokenizer:
    """Train (or, for ``byte``, just make) a tokenizer of ``kind`` on ``text`` (a string or chunks)."""
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "word":
        return WordTokenizer.train(text, vocab_size)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    if kind == "whitespace":
        return WhitespaceTokenizer.train(text, vocab_size)
    raise ConfigError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")


def count_unknown(tokenizer: Any, text: str) -> int:
    """How many tokens of ``text`` are outside the vocabulary (encoded as ``<unk>``); 0 for tokenizers
    that cover every text (byte, bpe)."""
    unk = getattr(tokenizer, "unk_id", None)
    if unk is None or not text:
        return 0
    return sum(1 for i in tokenizer.encode(text) if int(i) == unk)
