"""The memorisation meter: planted spans are found exactly, n-gram shares are right, and it is fast."""

import random
import time
from pathlib import Path

import pytest

from engine.insight.memorization import TrainingIndex, longest_copied_span, measure, memorization_report


def _random_text(n: int, alphabet: str, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_finds_a_planted_span():
    train = _random_text(20_000, "abcdefgh \n", 1)
    planted = train[12_345:12_345 + 57]
    # The sample's own characters never occur in the training text, so the planted span is the answer.
    sample = _random_text(300, "XYZ", 2) + planted + _random_text(200, "XYZ", 3)
    index = TrainingIndex(train)
    reading = measure(sample, index, n=8)
    assert reading.span == planted
    assert reading.span_start == 300
    # 57 - 8 + 1 of the sample's 8-grams are inside the planted span; all others contain X/Y/Z.
    assert reading.ngram_total == len(sample) - 7
    assert reading.ngram_share == pytest.approx(50 / (len(sample) - 7))
    assert "".join("1" if m else "0" for m in reading.copied_mask) == "0" * 300 + "1" * 57 + "0" * 200


def test_longest_span_is_longest_among_several():
    train = "the quick brown fox jumps over the lazy dog. " * 3 + "pack my box with five dozen liquor jugs"
    sample = "Q the quick brown Q pack my box with five dozen Q"
    assert longest_copied_span(sample, train) == " pack my box with five dozen "


def test_nothing_copied_and_short_samples():
    index = TrainingIndex("aaaa")
    reading = measure("bcd", index, n=8)
    assert (reading.span_length, reading.ngram_total, reading.ngram_share) == (0, 0, 0.0)
    assert measure("", index).span_length == 0


def test_unicode_text():
    train = "Grüße aus Köln — 東京へようこそ. " * 10
    assert longest_copied_span("xx東京へようxx", train) == "東京へよう"


def test_report_dict():
    report = memorization_report(["hello world", "zzzz"], "say hello world again", n=4)
    assert report["max_span_length"] == len(" hello world") - 1  # "hello world"
    assert report["samples"][0]["span"] == "hello world"
    assert report["samples"][1]["ngram_share"] == 0.0
    assert report["samples"][0]["ngram_share"] == 1.0


CORPUS = Path("/work/shared/corpora/tinyshakespeare.txt")


@pytest.mark.skipif(not CORPUS.exists(), reason="tinyshakespeare corpus not available")
def test_fast_on_a_megabyte():
    train = CORPUS.read_text()
    sample = _random_text(400, "XYZ ", 5) + train[700_000:700_120] + _random_text(400, "XYZ ", 6)
    t0 = time.perf_counter()
    reading = measure(sample, TrainingIndex(train))
    elapsed = time.perf_counter() - t0
    assert reading.span_length >= 120 and train[700_000:700_120] in reading.span
    assert elapsed < 1.0, f"memorisation meter took {elapsed:.2f}s on 1 MB"
