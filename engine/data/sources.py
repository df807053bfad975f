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
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, DataError
from engine.data.textio import check_readable, iter_text_chunks
from engine.data.tokenizers import Tokenizer, build_tokenizer

CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------------- dirs
def home_dir() -> Path:
    """``$SEQPLAY_HOME`` or the platform's user data directory (created on demand)."""
    env = os.environ.get("SEQPLAY_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("seqplay", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = home_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    path = home_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


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


@dataclass
class Source:
    """Where text comes from: a file (``path``) or a built-in corpus (``corpus`` + ``options``)."""

    name: str
    path: Path | None = None
    corpus: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
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
    """A file path (if something exists there) or a built-in corpus spec ``name[:k=v,...]``."""
    text = str(spec)
    if not text.strip():
        raise DataError("no data given; pass a text file or a built-in corpus name (see `seqplay corpora`)")
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
    """A tokenised corpus, split: what training needs. ``*_chars`` count characters for bits/char."""

    source: Source
    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    text_chars: int
    train_chars: int
    val_chars: int
    cached: bool = False  # True when the ids came from the on-disk cache

    @property
    def n_tokens(self) -> int:
        return len(self.train_ids) + len(self.val_ids)


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
    st = path.stat()
    memo_dir = cache_dir() / "hashes"
    memo = memo_dir / hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
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


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # never leave a half-written temporary behind
        raise


def _cache_key(source: Source, kind: str, vocab_size: int | None) -> str:
    if source.path is not None:
        content = "file:" + _file_hash(source.path)
    else:
        from corpora import corpus_version

        content = f"corpus:{source.spec}:v{corpus_version(source.corpus)}"
    return hashlib.sha256(f"{content}|{kind}|{vocab_size}|v{CACHE_VERSION}".encode()).hexdigest()[:24]


def _load_cached(entry: Path) -> tuple[Tokenizer, np.ndarray, int] | None:
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        tok = Tokenizer.load(entry / "tokenizer.json")
        if meta["n_tokens"] == 0:
            return None
        ids = np.memmap(entry / "ids.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["n_tokens"],))
        return tok, ids, int(meta["n_chars"])
    except (OSError, ValueError, KeyError, DataError):
        return None  # missing or half-written entry: rebuild it


def prepare(
    spec: str | os.PathLike[str] | Source,
    tokenizer: str = "char",
    vocab_size: int | None = None,
    val_fraction: float = 0.1,
    use_cache: bool = True,
) -> Prepared:
    """Tokenise a file or built-in corpus and split it; files go through the on-disk id cache."""
    source = spec if isinstance(spec, Source) else resolve_source(spec)
    key = _cache_key(source, tokenizer, vocab_size) if use_cache else None
    entry = cache_dir() / "data" / key if key else None
    hit = _load_cached(entry) if entry is not None and entry.exists() else None
    cached = hit is not None
    if hit is None:
        hit = _encode_source(source, tokenizer, vocab_size, entry)
    tok, ids, n_chars = hit
    train, val = split_ids(ids, val_fraction)
    if len(train) < 2:
        raise DataError(f"{source.name} gives only {len(ids)} tokens; give more text or a smaller validation fraction (--val-fraction)")
    val_chars = min(tok.count_chars(val), n_chars)  # the smaller split: cheaper to count
    return Prepared(source, tok, train, val, n_chars, n_chars - val_chars, val_chars, cached)


def _encode_source(
    source: Source, kind: str, vocab_size: int | None, entry: Path | None
) -> tuple[Tokenizer, np.ndarray, int]:
    """Two passes over the text: learn the tokenizer, then encode chunk by chunk (to disk if cached)."""
    # pass 1: the tokenizer (and the learnability check on the distinct characters)
    distinct: set[str] = set()

    def chunks_seen() -> Iterator[str]:
        for chunk in source.chunks():
            if len(distinct) < 8:  # enough to know whether there is anything to learn
                codes = np.unique(np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32))
                distinct.update(map(chr, codes[:8].tolist()))
            yield chunk

    if source.path is None:
        text = source.text()
        check_learnable(set(text), source.name)
        tok = build_tokenizer(kind, text, vocab_size)
        ids = tok.encode(text)
        if entry is not None:
            _write_entry(entry, tok, [ids], len(text))
        return tok, ids, len(text)

    if kind == "byte":
        for _ in chunks_seen():
            if len(distinct) > 2:
                break
        tok = build_tokenizer(kind, "", vocab_size)
    else:
        tok = build_tokenizer(kind, chunks_seen(), vocab_size)
    check_learnable(distinct, source.name)
    # pass 2: encode, streaming the ids to the cache entry (or into memory without a cache)
    if entry is None:
        parts = []
        n_chars = 0
        for chunk in source.chunks():
            parts.append(tok.encode(chunk))
            n_chars += len(chunk)
        return tok, np.concatenate(parts), n_chars
    n_chars = _write_entry(entry, tok, None, 0, source=source)
    loaded = _load_cached(entry)
    if loaded is None:
        raise DataError(f"cannot use the data cache in {entry.parent}; check free disk space and permissions")
    return loaded


def _write_entry(
    entry: Path, tok: Tokenizer, parts: list[np.ndarray] | None, n_chars: int, source: Source | None = None
) -> int:
    """Write ``tokenizer.json``, ``ids.bin`` and ``meta.json`` into a temporary folder, then rename it."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
    try:
        n_tokens = 0
        with open(tmp / "ids.bin", "wb") as f:
            if parts is None:
                assert source is not None
                for chunk in source.chunks():
                    ids = tok.encode(chunk)
                    f.write(np.ascontiguousarray(ids, dtype=tok.dtype).tobytes())
                    n_tokens += len(ids)
                    n_chars += len(chunk)
            else:
                for ids in parts:
                    f.write(np.ascontiguousarray(ids, dtype=tok.dtype).tobytes())
                    n_tokens += len(ids)
            f.flush()
            os.fsync(f.fileno())
        tok.save(tmp / "tokenizer.json")
        meta = {"dtype": tok.dtype.name, "n_tokens": n_tokens, "n_chars": n_chars, "version": CACHE_VERSION}
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
    return n_chars


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
