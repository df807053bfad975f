"""Built-in corpora: reproducible, knobs work, the grammar agrees, tasks are what they claim."""

import re
import time

import pytest

from corpora import CORPORA, corpus_pairs, corpus_text, list_corpora
from corpora.grammar import INTRANSITIVE, NOUNS
from engine.errors import DataError


def test_listing_has_every_corpus_with_a_description():
    names = [c.name for c in list_corpora()]
    assert names[0] == "grammar"
    assert set(names) == {"grammar", "copy", "reverse", "brackets", "addition", "stdlib"}
    assert all(c.description for c in list_corpora())


@pytest.mark.parametrize("name", ["grammar", "copy", "reverse", "brackets", "addition"])
def test_seeded_and_reproducible(name):
    small = {"size": 20_000} if name == "grammar" else {"n": 50}
    a = CORPORA[name].make_text(**CORPORA[name].check_options({**small, "seed": 1}))
    b = CORPORA[name].make_text(**CORPORA[name].check_options({**small, "seed": 1}))
    c = CORPORA[name].make_text(**CORPORA[name].check_options({**small, "seed": 2}))
    assert a == b and a != c


def test_grammar_default_is_about_a_megabyte_and_fast():
    t = time.perf_counter()
    text = CORPORA["grammar"].make_text(**CORPORA["grammar"].defaults)
    assert time.perf_counter() - t < 2.0
    assert 1_000_000 <= len(text) < 1_010_000
    assert text.count("\n\n") > 100  # paragraphs


def test_grammar_subject_verb_agreement():
    text = corpus_text("grammar", size=200_000, seed=5)
    sg = "|".join(s for s, _ in NOUNS)
    pl = "|".join(p for _, p in NOUNS)
    v_sg = "|".join(s for s, _ in INTRANSITIVE)
    v_pl = "|".join(p for _, p in INTRANSITIVE)
    # simple sentences "The dog sleeps." / "The dogs sleep." : determiner, noun, intransitive verb
    good_sg = re.findall(rf"\. (?:The|This|That|A|Every) (?:{sg}) (?:{v_sg})\.", text)
    good_pl = re.findall(rf"\. (?:The|These|Those|Some|Many|Two) (?:{pl}) (?:{v_pl})\.", text)
    bad = re.findall(rf"\. (?:The|This|That|A|Every) (?:{sg}) (?:{v_pl})\.", text)
    bad += re.findall(rf"\. (?:The|These|Those|Some|Many|Two) (?:{pl}) (?:{v_sg})\.", text)
    assert len(good_sg) > 20 and len(good_pl) > 20
    assert bad == []


def test_grammar_nests_clauses_and_quotes():
    text = corpus_text("grammar", size=100_000)
    assert re.search(r" that \w+ \w+ that ", text)
    assert text.count('"') % 2 == 0 and text.count(', "') > 10


def test_copy_and_reverse_distance_knob():
    for s, t in corpus_pairs("copy", n=30, distance=40):
        assert s == t and 20 <= len(s) <= 40
    for s, t in corpus_pairs("reverse", n=30, distance=12, vary=0):
        assert t == s[::-1] and len(s) == 12
    lines = corpus_text("copy", n=30, distance=9).splitlines()
    assert len(lines) == 30 and all(a == b for a, b in (ln.split("|") for ln in lines))


def test_brackets_targets_close_the_prefix():
    pairs = {"(": ")", "[": "]", "{": "}"}
    for src, tgt in corpus_pairs("brackets", n=100, distance=30):
        stack = []
        for ch in src + tgt:
            if ch in pairs:
                stack.append(pairs[ch])
            else:
                assert stack.pop() == ch
        assert stack == [] and tgt


def test_addition_is_correct_and_digits_knob():
    for src, tgt in corpus_pairs("addition", n=100, distance=6, vary=0):
        a, b = src.split("+")
        assert len(a) == 6 and len(b) == 6 and int(a) + int(b) == int(tgt)
    line = corpus_text("addition", n=1).strip()
    assert re.fullmatch(r"\d+\+\d+=\d+", line)


def test_stdlib_is_python_source():
    text = corpus_text("stdlib", size=50_000)
    assert len(text) == 50_000 and text.startswith("# file: ") and "def " in text


def test_bad_options_are_refused():
    with pytest.raises(DataError, match="no option"):
        corpus_text("copy", length=3)
    with pytest.raises(DataError, match="too small"):
        corpus_text("copy", n=0)
    with pytest.raises(DataError, match="whole number"):
        corpus_text("copy", distance="far")
    with pytest.raises(DataError, match="no source->target pairs"):
        corpus_pairs("grammar")
    with pytest.raises(DataError, match="unknown corpus"):
        corpus_text("poetry")
