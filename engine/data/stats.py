"""Corpus statistics and token counts: what the Data pane shows and ``seqplay inspect`` reports.

``scan_corpus`` reads a file or built-in corpus in chunks (a huge file never sits in memory) and counts
characters, lines, words and distinct characters exactly. ``tokenize_counts`` asks ``prepare`` (the
function training uses, with its on-disk cache) for the tokenizer's vocabulary and the split sizes, so
the counts shown are the ones a run trains on. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.data.sources import check_learnable, prepare, resolve_source

SAMPLE_CHARS = 4_000_000  # characters of text kept by scan_corpus (the preview comes from it)


@dataclass(frozen=True)
class CorpusStats:
    """Exact counts of a text; ``sample`` is its first ``SAMPLE_CHARS`` characters."""

    name: str
    chars: int
    lines: int
    words: int
    distinct_chars: int
    sample: str


def scan_corpus(spec: str | os.PathLike[str], sample_chars: int = SAMPLE_CHARS) -> CorpusStats:
    """Statistics of a file or built-in corpus. Raises DataError (also for text with nothing to learn)."""
    src = resolve_source(spec)
    parts: list[str] = []
    kept = chars = lines = words = 0
    distinct: set[str] = set()
    last = ""
    for chunk in src.chunks():
        if not chunk:
            continue
        if kept < sample_chars:
            parts.append(chunk[: sample_chars - kept])
            kept += len(parts[-1])
        chars += len(chunk)
        lines += chunk.count("\n")
        words += len(chunk.split())  # chunks are cut inside whitespace: no word is split between two
        distinct.update(chunk)
        last = chunk[-1]
    check_learnable(distinct, src.name)
    lines += 1 if last and last != "\n" else 0
    return CorpusStats(src.name, chars, lines, words, len(distinct), "".join(parts))


@dataclass(frozen=True)
class TokenCounts:
    """A tokenizer learned on a corpus, as training sees it: ids in the vocabulary and per split."""

    tokenizer: str
    vocab_size: int  # the tokenizer's ids (a task may append more: engine.planning.TASK_EXTRA_IDS)
    train_tokens: int
    val_tokens: int

    @property
    def tokens(self) -> int:
        return self.train_tokens + self.val_tokens


def tokenize_counts(spec: str | os.PathLike[str], tokenizer: str = "char", vocab_size: int | None = None,
                    val_fraction: float = 0.1) -> TokenCounts:
    """The vocabulary and split sizes a run on ``spec`` gets (``prepare``; cached on disk)."""
    prep = prepare(spec, tokenizer, vocab_size, val_fraction)
    return TokenCounts(tokenizer, int(prep.tokenizer.vocab_size), len(prep.train_ids), len(prep.val_ids))
