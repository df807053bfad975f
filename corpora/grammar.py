"""The default corpus: English-like text from a small probabilistic grammar (a PCFG).

Subjects and verbs agree in number ("the old dog that the children see *runs*"), noun phrases nest
relative clauses, and verbs of saying embed whole sentences or quotes, so the text has structure at
several distances: spelling (characters), agreement across a clause (tens of characters), closing a
quote or a paragraph (hundreds). The vocabulary is small, so a small character model visibly learns
it within a minute. Seeded: the same options give the same text on every machine.
"""

from __future__ import annotations

import random

VERSION = 1

DETS_SG = ["the", "the", "a", "this", "every", "that"]
DETS_PL = ["the", "the", "some", "these", "many", "two", "those"]
ADJS = ["old", "small", "quiet", "happy", "red", "clever", "tired", "young", "strange", "bright", "lazy", "brave"]
NOUNS = [  # (singular, plural)
    ("dog", "dogs"), ("cat", "cats"), ("child", "children"), ("teacher", "teachers"), ("bird", "birds"),
    ("farmer", "farmers"), ("king", "kings"), ("woman", "women"), ("man", "men"), ("river", "rivers"),
    ("student", "students"), ("fox", "foxes"), ("baker", "bakers"), ("city", "cities"), ("sailor", "sailors"),
]
INTRANSITIVE = [  # (singular, plural)
    ("sleeps", "sleep"), ("runs", "run"), ("sings", "sing"), ("waits", "wait"), ("laughs", "laugh"),
    ("falls", "fall"), ("smiles", "smile"), ("dances", "dance"), ("wanders", "wander"),
]
TRANSITIVE = [
    ("sees", "see"), ("likes", "like"), ("follows", "follow"), ("helps", "help"), ("knows", "know"),
    ("watches", "watch"), ("finds", "find"), ("calls", "call"), ("remembers", "remember"),
]
SAYING = [("says", "say"), ("thinks", "think"), ("believes", "believe"), ("hopes", "hope"), ("knows", "know")]
ADVERBS = ["slowly", "often", "today", "again", "quietly", "at night", "in the morning", "by the river"]
PREPS = ["near", "behind", "with", "under", "beside"]


class Grammar:
    """Sentence generator; ``depth`` limits nesting so every sentence terminates."""

    def __init__(self, seed: int = 0, max_depth: int = 3):
        self.rng = random.Random(seed)
        self.max_depth = max_depth

    def noun_phrase(self, plural: bool, depth: int) -> list[str]:
        r = self.rng
        words = [r.choice(DETS_PL if plural else DETS_SG)]
        if r.random() < 0.35:
            words.append(r.choice(ADJS))
        words.append(r.choice(NOUNS)[plural])
        if depth < self.max_depth:
            x = r.random()
            if x < 0.18:  # subject relative clause: "that sings", agreeing with the head noun
                words += ["that", *self.verb_phrase(plural, depth + 1, allow_saying=False)]
            elif x < 0.30:  # object relative clause: "that the cats see", agreeing with its own subject
                inner = r.random() < 0.5
                words += ["that", *self.noun_phrase(inner, depth + 1), r.choice(TRANSITIVE)[inner]]
            elif x < 0.38:
                words += [r.choice(PREPS), *self.noun_phrase(r.random() < 0.5, depth + 1)]
        return words

    def verb_phrase(self, plural: bool, depth: int, allow_saying: bool = True) -> list[str]:
        r = self.rng
        x = r.random()
        if allow_saying and depth < self.max_depth and x < 0.15:
            verb = r.choice(SAYING)[plural]
            if r.random() < 0.5:
                return [verb, "that", *self.clause(depth + 1)]
            quoted = self.clause(depth + 1)
            quoted[0] = quoted[0].capitalize()
            return [verb + ",", '"' + quoted[0], *quoted[1:-1], quoted[-1] + '."'] if len(quoted) > 1 else [verb + ",", '"' + quoted[0] + '."']
        if x < 0.55:
            words = [r.choice(TRANSITIVE)[plural], *self.noun_phrase(r.random() < 0.5, depth + 1)]
        else:
            words = [r.choice(INTRANSITIVE)[plural]]
        if r.random() < 0.25:
            words.append(r.choice(ADVERBS))
        return words

    def clause(self, depth: int = 0) -> list[str]:
        plural = self.rng.random() < 0.5
        return [*self.noun_phrase(plural, depth), *self.verb_phrase(plural, depth)]

    def sentence(self) -> str:
        words = self.clause()
        text = " ".join(words)
        text = text[0].upper() + text[1:]
        if text.endswith('."'):
            return text
        if self.rng.random() < 0.1 and not words[0].lower().startswith(("every", "many")):
            return text + "!"
        return text + "."

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 6)))


def generate(size: int = 1_000_000, seed: int = 0, depth: int = 3) -> str:
    """About ``size`` characters of paragraphs separated by blank lines (cut at a paragraph end)."""
    g = Grammar(seed, depth)
    parts: list[str] = []
    total = 0
    while total < size:
        p = g.paragraph()
        parts.append(p)
        total += len(p) + 2
    return "\n\n".join(parts) + "\n"
