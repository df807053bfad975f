"""Synthetic long-range tasks that separate architectures: copy, reverse, brackets, addition.

Each task makes ``n`` examples (source, target). As language-model text every example is one line
``source|target`` (addition: ``a+b=sum``), so predicting the target needs the source seen
``distance`` characters earlier; ``pairs()`` gives the same examples for seq2seq. ``distance`` is the
knob: the source length (copy, reverse, brackets) or the number of digits (addition).

- copy: ``abcde|abcde``; needs exact memory of the whole source.
- reverse: ``abcde|edcba``; the first target symbol depends on the last source symbol and vice versa.
- brackets: a prefix of ``([{`` brackets, some closed, then ``|`` and the brackets that close what is
  still open, innermost first: ``([]{(|)})``; needs a stack.
- addition: ``123+456=579``; carries run from right to left, against the writing direction.
"""

from __future__ import annotations

import random

VERSION = 1
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
OPEN, CLOSE = "([{", ")]}"


def _symbols(rng: random.Random, length: int, vocab: int) -> str:
    return "".join(rng.choice(ALPHABET[:vocab]) for _ in range(length))


def _length(rng: random.Random, distance: int, vary: bool) -> int:
    return rng.randint(max(1, distance // 2), distance) if vary else distance


def copy_pairs(n: int = 5000, distance: int = 20, seed: int = 0, vocab: int = 10, vary: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = _symbols(rng, _length(rng, distance, bool(vary)), vocab)
        out.append((s, s))
    return out


def reverse_pairs(n: int = 5000, distance: int = 20, seed: int = 0, vocab: int = 10, vary: int = 1) -> list[tuple[str, str]]:
    return [(s, s[::-1]) for s, _ in copy_pairs(n, distance, seed, vocab, vary)]


def bracket_pairs(n: int = 5000, distance: int = 20, seed: int = 0, vary: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = _length(rng, distance, bool(vary))
        stack: list[int] = []
        chars = []
        for _ in range(length):
            if stack and rng.random() < 0.4:
                chars.append(CLOSE[stack.pop()])
            else:
                kind = rng.randrange(3)
                stack.append(kind)
                chars.append(OPEN[kind])
        if not stack:  # always leave something to close
            kind = rng.randrange(3)
            stack.append(kind)
            chars.append(OPEN[kind])
        out.append(("".join(chars), "".join(CLOSE[k] for k in reversed(stack))))
    return out


def addition_pairs(n: int = 5000, distance: int = 3, seed: int = 0, vary: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a_len = _length(rng, distance, bool(vary))
        b_len = _length(rng, distance, bool(vary))
        a = rng.randrange(10 ** (a_len - 1) if a_len > 1 else 0, 10**a_len)
        b = rng.randrange(10 ** (b_len - 1) if b_len > 1 else 0, 10**b_len)
        out.append((f"{a}+{b}", str(a + b)))
    return out


def as_text(pairs: list[tuple[str, str]], sep: str = "|") -> str:
    """One example per line, ``source<sep>target``."""
    return "".join(f"{s}{sep}{t}\n" for s, t in pairs)
