"""Built-in corpora, usable wherever a file path is: ``grammar`` (the default), the synthetic tasks
``copy``, ``reverse``, ``brackets``, ``addition``, and ``stdlib``.

A spec is ``name[:key=value,...]``, e.g. ``copy:distance=40`` or ``grammar:size=1000000,seed=3``.
Everything is generated on demand, seeded and reproducible. ``corpus_text`` gives the text a language
model trains on; ``corpus_pairs`` gives (source, target) pairs for seq2seq (the tasks only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corpora import grammar, stdlib, tasks
from engine.errors import DataError

# Bounds of every corpus option (inclusive). Generation is pure Python, about 1M characters a second
# here, so MAX_CHARS keeps a built-in corpus under about two minutes; larger texts belong in a file.
OPTION_BOUNDS: dict[str, tuple[int, int]] = {
    "size": (1, 100_000_000), "n": (1, 10_000_000), "distance": (1, 10_000), "seed": (0, 2**32 - 1),
    "vocab": (1, 26), "vary": (0, 1), "depth": (1, 20),
}
MAX_CHARS = 100_000_000


@dataclass(frozen=True)
class CorpusInfo:
    """One built-in corpus: how to make it, its options (with defaults) and what it is for."""

    name: str
    description: str
    defaults: dict[str, Any]
    make_text: Callable[..., str]
    make_pairs: Callable[..., list[tuple[str, str]]] | None = None
    version: int = 1
    option_help: dict[str, str] = field(default_factory=dict)

    @property
    def paired(self) -> bool:
        return self.make_pairs is not None

    def check_options(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``opts``; unknown options, values outside ``OPTION_BOUNDS`` and
        corpora over ``MAX_CHARS`` characters raise ``DataError`` (before anything is generated)."""
        unknown = sorted(set(opts) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise DataError(f"corpus {self.name!r} has no option {unknown[0]!r}; its options are: {known}")
        merged = {**self.defaults, **opts}
        for key, value in merged.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise DataError(f"corpus option {self.name}:{key}={value!r} must be a whole number")
            lo, hi = OPTION_BOUNDS[key]
            if key == "vocab" and self.name in ("copy", "reverse"):
                hi = len(tasks.ALPHABET)
            if key == "distance" and self.name == "addition":
                hi = 200  # digits
            if value < lo:
                raise DataError(f"corpus option {self.name}:{key}={value} is too small; use at least {lo}")
            if value > hi:
                raise DataError(f"corpus option {self.name}:{key}={value} is too big; use at most {hi}")
        chars = self._approx(merged)
        if chars > MAX_CHARS:
            raise DataError(f"corpus {self.name!r} with these options would be about {chars:,} characters, over the "
                            f"limit of {MAX_CHARS:,}; use a smaller n or distance (or a text file)")
        return merged

    def _approx(self, o: dict[str, Any]) -> int:
        if "size" in o:
            return o["size"]
        d = o["distance"]
        if self.name == "addition":
            return o["n"] * (3 * d + 3)
        mean = (max(1, d // 2) + d) / 2 if o.get("vary", 1) else d
        return int(o["n"] * (2 * mean + 2))

    def approx_chars(self, **opts: Any) -> int:
        """About how many characters ``corpus_text`` gives (cheap: no generation)."""
        return self._approx(self.check_options(opts))


def _task(pairs_fn: Callable[..., list[tuple[str, str]]], sep: str = "|") -> Callable[..., str]:
    return lambda **o: tasks.as_text(pairs_fn(**o), sep)


CORPORA: dict[str, CorpusInfo] = {
    "grammar": CorpusInfo(
        "grammar",
        "English-like text from a small probabilistic grammar: number agreement, nested clauses, quotes",
        {"size": 1_000_000, "seed": 0, "depth": 3},
        grammar.generate,
        version=grammar.VERSION,
    ),
    "copy": CorpusInfo(
        "copy",
        "Copy task: lines 'abcde|abcde'; distance = source length",
        {"n": 5000, "distance": 20, "seed": 0, "vocab": 10, "vary": 1},
        _task(tasks.copy_pairs),
        tasks.copy_pairs,
        tasks.VERSION,
    ),
    "reverse": CorpusInfo(
        "reverse",
        "Reverse task: lines 'abcde|edcba'; distance = source length",
        {"n": 5000, "distance": 20, "seed": 0, "vocab": 10, "vary": 1},
        _task(tasks.reverse_pairs),
        tasks.reverse_pairs,
        tasks.VERSION,
    ),
    "brackets": CorpusInfo(
        "brackets",
        "Balanced brackets: an unfinished '([{' prefix, '|', then the closing brackets; distance = prefix length",
        {"n": 5000, "distance": 20, "seed": 0, "vary": 1},
        _task(tasks.bracket_pairs),
        tasks.bracket_pairs,
        tasks.VERSION,
    ),
    "addition": CorpusInfo(
        "addition",
        "Multi-digit addition: lines '123+456=579'; distance = number of digits",
        {"n": 5000, "distance": 3, "seed": 0, "vary": 1},
        lambda **o: "".join(f"{s}={t}\n" for s, t in tasks.addition_pairs(**o)),
        tasks.addition_pairs,
        tasks.VERSION,
    ),
    "stdlib": CorpusInfo(
        "stdlib",
        "Python source of the standard library of the running interpreter (real code, no download)",
        {"size": 2_000_000},
        stdlib.generate,
        version=stdlib.VERSION,
    ),
}
DEFAULT_CORPUS = "grammar"


def _info(name: str) -> CorpusInfo:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of: {', '.join(CORPORA)}")
    return CORPORA[name]


def list_corpora() -> list[CorpusInfo]:
    """Every built-in corpus, default first."""
    return list(CORPORA.values())


def corpus_version(name: str) -> int:
    return _info(name).version


@functools.lru_cache(maxsize=8)
def _cached_text(name: str, opts: tuple[tuple[str, Any], ...]) -> str:
    return _info(name).make_text(**dict(opts))


def corpus_text(name: str, **opts: Any) -> str:
    """The text of a built-in corpus (LM training text), e.g. ``corpus_text("copy", distance=40)``."""
    merged = _info(name).check_options(opts)
    return _cached_text(name, tuple(sorted(merged.items())))


def corpus_pairs(name: str, **opts: Any) -> list[tuple[str, str]]:
    """(source, target) pairs of a synthetic task for seq2seq."""
    info = _info(name)
    if info.make_pairs is None:
        raise DataError(f"corpus {name!r} has no source->target pairs; use copy, reverse, brackets or addition for seq2seq")
    return info.make_pairs(**info.check_options(opts))
