"""Data: where text comes from, turning it into ids once (cached), splits, and the two batchers.

- ``resolve_source(spec)``: a file path, or a built-in corpus ``name[:key=value,...]``.
- ``prepare(spec, tokenizer, vocab_size, val_fraction)``: tokenizer + train/validation ids. Files are
  read and encoded in chunks, ids are streamed to ``$SEQPLAY_HOME/cache`` keyed by (file content hash,
  tokenizer, vocabulary size), so the second open of a big file only maps the cached array.
- ``RandomWindows``: random (x, y) windows, for attention models and the MLP.
- ``ContiguousStreams``: B parallel contiguous streams for truncated backpropagation through time;
  the RNN state carried from one batch to the next continues the same text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.data.textio import check_readable, iter_text_chunks
from engine.data.tokenizers import LEARNED_KINDS, Tokenizer, build_tokenizer
from engine.errors import ConfigError, DataError

CACHE_VERSION = 2  # 2: segments (train/valid/test) in meta.json


# ---------------------------------------------------------------------------------------------- dirs
def home_dir() -> Path:
    """``$SEQPLAY_HOME`` or the platform's user data directory (created on demand; computed once, by
    ``engine.runs.paths.home_dir``)."""
    from engine.runs.paths import home_dir as _home_dir

    return _home_dir()


def runs_dir() -> Path:
    from engine.runs.paths import ensure_dir

    return ensure_dir(home_dir() / "runs", "the runs folder")


def cache_dir() -> Path:
    """``<home>/cache``, created (``engine.runs.paths.cache_dir``)."""
    from engine.runs.paths import cache_dir as _cache_dir

    return _cache_dir()


# -------------------------------------------------------------------------------------------- sources
def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"copy:distance=40,seed=2"`` -> ``("copy", {"distance": 40, "seed": 2})`` (ints/floats parsed)."""
    name, _, rest = spec.partition(":")
    opts: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DataError(f"corpus option {item!r} in {spec!r} is not key=value; write e.g. copy:distance=40")
        opts[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return name.strip(), opts


def _parse_value(value: str) -> Any:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


# A corpus folder in the WikiText / PTB layout: split name -> the file names it may have.
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.txt", "wiki.train.tokens", "ptb.train.txt"),
    "valid": ("valid.txt", "wiki.valid.tokens", "ptb.valid.txt"),
    "test": ("test.txt", "wiki.test.tokens", "ptb.test.txt"),
}


def split_files(folder: Path) -> dict[str, Path]:
    """The split files of a corpus folder ({} unless it has at least a train and a valid file)."""
    found = {}
    for split, names in SPLIT_FILES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is not None:
            found[split] = path
    return found if "train" in found and "valid" in found else {}


@dataclass
class Source:
    """Where text comes from: a file (``path``), a split folder (``splits``: train/valid[/test] files;
    ``path`` is then its training file) or a built-in corpus (``corpus`` + ``options``)."""

    name: str
    path: Path | None = None
    corpus: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Path] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def spec(self) -> str:
        if self.folder is not None:
            return str(self.folder)
        if self.path is not None:
            return str(self.path)
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.corpus}:{opts}" if opts else str(self.corpus)

    def text(self) -> str:
        """The whole text (LF line ends)."""
        return "".join(self.chunks())

    def chunks(self) -> Iterator[str]:
        """The text in pieces (files are read a few MiB at a time)."""
        if self.path is not None:
            yield from iter_text_chunks(self.path)
        else:
            from corpora import corpus_text

            yield corpus_text(self.corpus, **self.options)

    @property
    def paired(self) -> bool:
        """True if this source has (source, target) pairs for seq2seq."""
        if self.path is None:
            from corpora import CORPORA

            return CORPORA[self.corpus].paired
        first = next(iter_text_chunks(self.path), "")
        lines = [ln for ln in first.split("\n")[:1000] if ln.strip()]
        return bool(lines) and all(ln.count("\t") == 1 for ln in lines)

    def pairs(self) -> list[tuple[str, str]]:
        """(source, target) pairs: a built-in task's, or a file's ``source<TAB>target`` lines."""
        if self.path is None:
            from corpora import CORPORA, corpus_pairs

            if not CORPORA[self.corpus].paired:
                raise DataError(f"corpus {self.corpus!r} has no source->target pairs; use copy, reverse, brackets or addition for seq2seq")
            return corpus_pairs(self.corpus, **self.options)
        out: list[tuple[str, str]] = []
        for n, line in enumerate(self.text().split("\n"), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataError(f"{self.path} line {n} is not 'source<TAB>target' (found {len(parts) - 1} tabs); seq2seq files need one pair per line")
            out.append((parts[0], parts[1]))
        if not out:
            raise DataError(f"{self.path} has no source<TAB>target lines; seq2seq files need one pair per line")
        return out


def resolve_source(spec: str | os.PathLike[str]) -> Source:
    """A file path, a split folder (train.txt/valid.txt[/test.txt]), or a built-in corpus spec
    ``name[:k=v,...]``."""
    text = str(spec)
    if not text.strip():
        raise DataError("no data given; pass a text file or a built-in corpus name (see `seqplay corpora`)")
    folder = Path(os.path.expanduser(text))
    if folder.is_dir():
        splits = split_files(folder)
        if not splits:
            raise DataError(f"{folder} is a directory without train.txt and valid.txt; give the path of a file inside it, "
                            "or a folder holding train.txt, valid.txt (and test.txt)")
        for p in splits.values():
            check_readable(p)
        return Source(name=folder.resolve().name, path=splits["train"], splits=splits, folder=folder)
    if os.path.lexists(os.path.expanduser(text)):
        path = check_readable(text)
        return Source(name=path.name, path=path)
    from corpora import CORPORA

    name, opts = parse_spec(text)
    if name in CORPORA:
        CORPORA[name].check_options(opts)
        src = Source(name=name, corpus=name, options=opts)
        src.name = src.spec
        return src
    if os.sep in text or "." in text or (os.altsep and os.altsep in text):
        raise DataError(f"{text}: no such file; check the path (or run `seqplay corpora` for built-in corpora)")
    raise DataError(f"{text!r} is neither a file nor a built-in corpus; give a file path or one of: {', '.join(CORPORA)}")


# ------------------------------------------------------------------------------------------- prepare
@dataclass
class Prepared:
    """A tokenised corpus, split: what training needs. ``*_chars`` count characters for bits/char.

    ``split_rule`` says where validation (and test) come from: the folder's own files, or the last
    ``val_fraction`` of the text. ``test_ids`` is None unless the source has a test split."""

    source: Source
    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    text_chars: int
    train_chars: int
    val_chars: int
    cached: bool = False  # True when the ids came from the on-disk cache
    test_ids: np.ndarray | None = None
    test_chars: int = 0
    split_rule: str = ""

    @property
    def n_tokens(self) -> int:
        return len(self.train_ids) + len(self.val_ids) + (len(self.test_ids) if self.test_ids is not None else 0)

    def unk_share(self, ids: np.ndarray | None = None) -> float:
        """Fraction of ``ids`` (default: validation) that are the tokenizer's ``<unk>`` (0 without one)."""
        ids = self.val_ids if ids is None else ids
        unk = self.tokenizer.unk_id
        if unk is None or len(ids) == 0:
            return 0.0
        return float(np.count_nonzero(np.asarray(ids) == unk)) / len(ids)


def split_ids(ids: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: the last ``val_fraction`` of the ids is validation (views, no copy)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"validation fraction {val_fraction} must be between 0 and 1 (e.g. 0.1)")
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and n_val == 0 and len(ids) > 1:
        n_val = 1
    cut = len(ids) - n_val
    return ids[:cut], ids[cut:]


def check_learnable(chars: set[str] | str, name: str) -> None:
    """Refuse text with fewer than two distinct non-space characters: there is nothing to predict."""
    distinct = {c for c in chars if not c.isspace()}
    if len(distinct) < 2:
        raise DataError(f"{name} has a single distinct character; a model cannot learn anything from it, give varied text")


def _file_hash(path: Path) -> str:
    """Content hash of a file, memoised per (path, size, mtime) so a re-open does not re-read it."""
    memo = _hash_memo(path)
    memo_dir = memo.parent
    if memo.exists():
        return memo.read_text().strip()
    h = hashlib.blake2b(digest_size=20)
    try:
        with open(path, "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable (chmod +r) or copy it somewhere you can read") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); check the file") from None
    digest = h.hexdigest()
    try:  # the memo only saves a re-read: a full or read-only disk must not stop anything here
        memo_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(memo, digest)
    except OSError:
        pass
    return digest


def _hash_memo(path: Path) -> Path:
    st = path.stat()
    return cache_dir() / "hashes" / hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]


def read_before(path: str | os.PathLike[str]) -> bool:
    """Whether this user's cache shows the file was already read here, unchanged (stat only: the
    file itself is not opened). Resume reads a run's saved source only then, or when the user names it."""
    try:
        return _hash_memo(Path(path).expanduser()).is_file()
    except (OSError, ValueError):
        return False


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # never leave a half-written temporary behind
        raise


def _cache_key(source: Source, kind: str, vocab_size: int | None, cut_fraction: float | None = None) -> str:
    if source.splits:
        content = "folder:" + ",".join(f"{k}={_file_hash(p)}" for k, p in sorted(source.splits.items()))
    elif source.path is not None:
        content = "file:" + _file_hash(source.path)
    else:
        from corpora import corpus_version

        content = f"corpus:{source.spec}:v{corpus_version(source.corpus)}"
    return hashlib.sha256(f"{content}|{kind}|{vocab_size}|{cut_fraction}|v{CACHE_VERSION}".encode()).hexdigest()[:24]


@dataclass
class _Cached:
    tokenizer: Tokenizer
    ids: np.ndarray
    n_chars: int
    segments: list[tuple[str, int, int]]  # (split name, tokens, characters), in file order


def _load_cached(entry: Path) -> _Cached | None:
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        tok = Tokenizer.load(entry / "tokenizer.json")
        if meta["n_tokens"] == 0:
            return None
        ids = np.memmap(entry / "ids.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["n_tokens"],))
        segments = [(str(n), int(t), int(c)) for n, t, c in meta.get("segments", [])]
        return _Cached(tok, ids, int(meta["n_chars"]), segments)
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None  # missing or half-written entry: rebuild it


def _segments(source: Source, kind: str, val_fraction: float) -> list[tuple[str, Callable[[], Iterator[str]]]]:
    """The pieces of text to encode, in order, each with a way to re-read it.

    A split folder: its train/valid/test files. A learned vocabulary (word, bpe, whitespace) on one
    text: the text cut at a character position (snapped to the next word end) into train and valid,
    so the vocabulary is learned from the training part only. Otherwise one piece, split by ids."""
    if source.splits:
        return [(name, lambda p=p: iter_text_chunks(p)) for name, p in source.splits.items()]
    if kind not in LEARNED_KINDS or val_fraction <= 0:
        return [("all", source.chunks)]
    cut = _cut_point(source, val_fraction)
    return [("train", lambda: _slice_chunks(source.chunks(), 0, cut)),
            ("valid", lambda: _slice_chunks(source.chunks(), cut, None))]


_WORD_END = re.compile(r"(?<=\n)|\S(?=\s)")  # after a newline, or a non-space before whitespace


def _cut_point(source: Source, val_fraction: float) -> int:
    """Character index where validation starts: the last ``val_fraction`` of the characters, moved
    forward to a line start or the end of a word (no word or BPE pre-token straddles the cut)."""
    total = sum(len(c) for c in source.chunks())
    target = total - int(round(total * val_fraction))
    pos = 0
    for chunk in source.chunks():
        if pos + len(chunk) > target:
            local = target - pos
            ends = (m.end() for m in _WORD_END.finditer(chunk, max(0, local - 1)))
            return pos + next((e for e in ends if e >= local), len(chunk))
        pos += len(chunk)
    return total


def _slice_chunks(chunks: Iterator[str], start: int, stop: int | None) -> Iterator[str]:
    """The characters [start, stop) of a chunked text, still in chunks."""
    pos = 0
    for chunk in chunks:
        end = pos + len(chunk)
        lo, hi = max(start, pos), end if stop is None else min(stop, end)
        if hi > lo:
            yield chunk[lo - pos : hi - pos]
        pos = end
        if stop is not None and pos >= stop:
            return


def prepare(
    spec: str | os.PathLike[str] | Source,
    tokenizer: str = "char",
    vocab_size: int | None = None,
    val_fraction: float = 0.1,
    use_cache: bool = True,
) -> Prepared:
    """Tokenise a file, split folder or built-in corpus and split it; through the on-disk id cache.

    Validation: a folder's ``valid`` file (``val_fraction`` is then unused), else the last
    ``val_fraction`` of the text. Learned vocabularies see the training split only."""
    source = spec if isinstance(spec, Source) else resolve_source(spec)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"validation fraction {val_fraction} must be between 0 and 1 (e.g. 0.1)")
    cut_fraction = val_fraction if (tokenizer in LEARNED_KINDS and not source.splits and val_fraction > 0) else None
    key = _cache_key(source, tokenizer, vocab_size, cut_fraction) if use_cache else None
    entry = cache_dir() / "data" / key if key else None
    hit = _load_cached(entry) if entry is not None and entry.exists() else None
    cached = hit is not None
    if hit is None:
        hit = _encode_source(source, tokenizer, vocab_size, val_fraction, entry)
    tok, ids = hit.tokenizer, hit.ids
    parts: dict[str, tuple[np.ndarray, int]] = {}
    start = 0
    for name, n_tok, n_chr in hit.segments:
        parts[name] = (ids[start : start + n_tok], n_chr)
        start += n_tok
    test_ids, test_chars = None, 0
    if "all" in parts or not parts:
        train, val = split_ids(ids, val_fraction)
        val_chars = min(tok.count_chars(val), hit.n_chars)  # the smaller split: cheaper to count
        train_chars = hit.n_chars - val_chars
        rule = f"validation: the last {val_fraction:.0%} of the tokens"
    else:
        (train, train_chars), (val, val_chars) = parts["train"], parts["valid"]
        if "test" in parts:
            test_ids, test_chars = parts["test"]
        if source.splits:
            rule = "validation: " + source.splits["valid"].name + (f", test: {source.splits['test'].name}" if "test" in source.splits else "")
        else:
            rule = f"validation: the last {val_fraction:.0%} of the text (vocabulary learned from the rest)"
    if len(train) < 2:
        raise DataError(f"{source.name} gives only {len(ids)} tokens; give more text or a smaller validation fraction (--val-fraction)")
    return Prepared(source, tok, train, val, hit.n_chars, train_chars, val_chars, cached, test_ids, test_chars, rule)


def _encode_source(
    source: Source, kind: str, vocab_size: int | None, val_fraction: float, entry: Path | None
) -> _Cached:
    """Learn the tokenizer on the first segment (the training text), then encode every segment chunk
    by chunk (streamed to the cache entry when there is one)."""
    segments = _segments(source, kind, val_fraction)
    distinct: set[str] = set()

    def chunks_seen() -> Iterator[str]:
        for chunk in segments[0][1]():
            if len(distinct) < 8:  # enough to know whether there is anything to learn
                codes = np.unique(np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32))
                distinct.update(map(chr, codes[:8].tolist()))
            yield chunk

    if kind == "byte":
        for _ in chunks_seen():
            if len(distinct) > 2:
                break
        tok = build_tokenizer(kind, "", vocab_size)
    else:
        tok = build_tokenizer(kind, chunks_seen(), vocab_size)
    check_learnable(distinct, source.name)
    if entry is None:
        parts, meta = [], []
        for name, chunks in segments:
            n_tok = n_chr = 0
            for chunk in chunks():
                ids = tok.encode(chunk)
                parts.append(ids)
                n_tok, n_chr = n_tok + len(ids), n_chr + len(chunk)
            meta.append((name, n_tok, n_chr))
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=tok.dtype)
        return _Cached(tok, ids.astype(tok.dtype, copy=False), sum(c for _, _, c in meta), meta)
    _write_entry(entry, tok, segments)
    loaded = _load_cached(entry)
    if loaded is None:
        raise DataError(f"cannot use the data cache in {entry.parent}; check free disk space and permissions")
    return loaded


def _write_entry(entry: Path, tok: Tokenizer, segments: list[tuple[str, Callable[[], Iterator[str]]]]) -> None:
    """Write ``tokenizer.json``, ``ids.bin`` and ``meta.json`` into a temporary folder, then rename it."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
    try:
        n_tokens = n_chars = 0
        seg_meta = []
        with open(tmp / "ids.bin", "wb") as f:
            for name, chunks in segments:
                s_tok = s_chr = 0
                for chunk in chunks():
                    ids = tok.encode(chunk)
                    f.write(np.ascontiguousarray(ids, dtype=tok.dtype).tobytes())
                    s_tok, s_chr = s_tok + len(ids), s_chr + len(chunk)
                seg_meta.append([name, s_tok, s_chr])
                n_tokens, n_chars = n_tokens + s_tok, n_chars + s_chr
            f.flush()
            os.fsync(f.fileno())
        tok.save(tmp / "tokenizer.json")
        meta = {"dtype": tok.dtype.name, "n_tokens": n_tokens, "n_chars": n_chars, "segments": seg_meta,
                "version": CACHE_VERSION}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if entry.exists() and _load_cached(entry) is None:
            shutil.rmtree(entry, ignore_errors=True)  # a stale or broken entry
        try:
            os.replace(tmp, entry)
        except OSError:
            if _load_cached(entry) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process wrote the same entry first
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot write the data cache in {entry.parent} ({err.strerror}); free some disk space") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------ batchers
def _check_ids(ids: np.ndarray, batch_size: int, length: int, what: str) -> None:
    if batch_size < 1 or length < 1:
        raise ConfigError(f"batch size and {what} must be positive, got {batch_size} and {length}")


class RandomWindows:
    """Random windows of ``context + 1`` tokens: ``x = w[:-1]``, ``y = w[1:]``, int64 (B, T)."""

    def __init__(self, ids: np.ndarray, batch_size: int, context: int, seed: int = 0):
        _check_ids(ids, batch_size, context, "context")
        if len(ids) < context + 1:
            raise DataError(
                f"the data has {len(ids)} tokens, fewer than context + 1 = {context + 1}; use a shorter context or more text"
            )
        self.ids, self.batch_size, self.context = ids, batch_size, context
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._offsets = np.arange(context + 1)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        starts = self.rng.integers(0, len(self.ids) - self.context, size=self.batch_size)
        w = np.asarray(self.ids[starts[:, None] + self._offsets], dtype=np.int64)
        return w[:, :-1], w[:, 1:]

    __next__ = next

    def __iter__(self) -> RandomWindows:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "random", "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class ContiguousStreams:
    """Split ids into ``batch_size`` parallel streams and walk them ``bptt`` tokens at a time.

    Row b of consecutive batches is consecutive text, so a recurrent model carries its state from
    one batch to the next (detaching it). ``reset`` is True on the first batch of every epoch: the
    carried state must then be zeroed, because the streams jump back to their starts.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, bptt: int):
        _check_ids(ids, batch_size, bptt, "bptt")
        length = (len(ids) - 1) // batch_size
        if length < 2:
            raise DataError(
                f"the data has {len(ids)} tokens, too few for {batch_size} parallel streams; use a smaller batch size or more text"
            )
        self.batch_size, self.bptt, self.length = batch_size, bptt, length
        n = batch_size * length
        self._x = ids[:n].reshape(batch_size, length)
        self._y = ids[1 : n + 1].reshape(batch_size, length)
        self.pos = 0
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.length // self.bptt)

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        reset = self.pos == 0
        end = min(self.pos + self.bptt, self.length)
        x = np.asarray(self._x[:, self.pos : end], dtype=np.int64)
        y = np.asarray(self._y[:, self.pos : end], dtype=np.int64)
        self.pos = end
        if self.pos >= self.length:
            self.pos = 0
            self.epoch += 1
        return x, y, reset

    __next__ = next

    def __iter__(self) -> ContiguousStreams:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "streams", "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])
