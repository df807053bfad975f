"""engine.data.sources: sources, prepare + cache, splits and the two batchers."""

from pathlib import Path

import numpy as np
import pytest

from engine.data.sources import (
    ContiguousStreams,
    RandomWindows,
    cache_dir,
    home_dir,
    parse_spec,
    prepare,
    resolve_source,
    split_ids,
)
from engine.errors import DataError

TEXT = "".join(f"Sentence number {i} says something about {i % 13} things.\n" for i in range(400))


@pytest.fixture
def text_file(tmp_path) -> Path:
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def test_home_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPLAY_HOME", str(tmp_path / "h"))
    assert home_dir() == tmp_path / "h" and cache_dir().is_dir()


def test_parse_spec():
    assert parse_spec("copy:distance=40,seed=2") == ("copy", {"distance": 40, "seed": 2})
    assert parse_spec("grammar") == ("grammar", {})
    with pytest.raises(DataError):
        parse_spec("copy:distance")


def test_resolve_file_and_corpus(text_file):
    src = resolve_source(str(text_file))
    assert src.path == text_file and src.text() == TEXT and not src.paired
    c = resolve_source("copy:distance=7,n=10")
    assert c.path is None and c.paired and c.name == "copy:distance=7,n=10"
    assert len(c.pairs()) == 10
    with pytest.raises(DataError, match="neither a file nor a built-in corpus"):
        resolve_source("no-such-corpus")


def test_tsv_file_gives_pairs(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("hello\tbonjour\ncat\tchat\n\n", encoding="utf-8")
    src = resolve_source(str(p))
    assert src.paired
    assert src.pairs() == [("hello", "bonjour"), ("cat", "chat")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        resolve_source(str(bad)).pairs()


def test_split_is_deterministic_last_fraction():
    ids = np.arange(100, dtype=np.uint16)
    train, val = split_ids(ids, 0.1)
    assert len(val) == 10 and val[0] == 90 and train[-1] == 89
    assert split_ids(ids, 0.25)[1][0] == 75


@pytest.mark.parametrize("kind", ["char", "byte", "word", "bpe"])
def test_prepare_file_and_cache(text_file, kind):
    first = prepare(str(text_file), kind, vocab_size=300 if kind == "bpe" else None)
    assert not first.cached
    ids = np.concatenate([first.train_ids, first.val_ids])
    assert ids.dtype == first.tokenizer.dtype
    assert first.tokenizer.decode(ids) == TEXT
    assert first.text_chars == len(TEXT)
    assert first.train_chars + first.val_chars == len(TEXT)
    assert len(first.val_ids) == round(0.1 * first.n_tokens)
    second = prepare(str(text_file), kind, vocab_size=300 if kind == "bpe" else None)
    assert second.cached
    assert np.array_equal(second.train_ids, first.train_ids) and np.array_equal(second.val_ids, first.val_ids)


def test_train_chars_match_the_decoded_split(text_file):
    p = prepare(str(text_file), "bpe", vocab_size=300)
    assert p.train_chars == len(p.tokenizer.decode(p.train_ids))


def test_cache_notices_a_changed_file(text_file):
    prepare(str(text_file), "char")
    text_file.write_text(TEXT + "A brand new line with Zebras.\n", encoding="utf-8")
    again = prepare(str(text_file), "char")
    assert not again.cached and "Z" in again.tokenizer.decode(again.val_ids)


def test_prepare_builtin_corpus():
    p = prepare("copy:distance=5,n=200", "char")
    text = p.tokenizer.decode(np.concatenate([p.train_ids, p.val_ids]))
    assert text.count("\n") == 200 and all(a == b for a, b in (ln.split("|") for ln in text.splitlines()))


def test_random_windows_shift_and_resume():
    ids = np.arange(1000, dtype=np.uint16)
    b = RandomWindows(ids, batch_size=4, context=16, seed=3)
    x, y = b.next()
    assert x.shape == (4, 16) and x.dtype == np.int64
    assert np.array_equal(y, x + 1)  # y is x shifted by one
    state = b.state_dict()
    expected = [b.next() for _ in range(3)]
    c = RandomWindows(ids, batch_size=4, context=16, seed=99)
    c.load_state_dict(state)
    for (x1, _), (x2, _) in zip(expected, [c.next() for _ in range(3)]):
        assert np.array_equal(x1, x2)
    with pytest.raises(DataError, match="fewer than context"):
        RandomWindows(ids[:10], 2, 16)


def test_contiguous_streams_carry_text_across_batches():
    ids = np.arange(103, dtype=np.uint32)
    s = ContiguousStreams(ids, batch_size=4, bptt=5)  # streams of 25 tokens
    x1, y1, r1 = s.next()
    x2, _, r2 = s.next()
    assert r1 and not r2
    assert np.array_equal(y1, x1 + 1)
    assert np.array_equal(x2[:, 0], x1[:, -1] + 1)  # each row continues where it stopped
    assert np.array_equal(x1[:, 0], [0, 25, 50, 75])
    seen = 2
    while True:
        x, _, reset = s.next()
        seen += 1
        if reset:
            break
    assert seen - 1 == s.batches_per_epoch == 5 and s.epoch == 1
    state = s.state_dict()
    expected = s.next()[0]
    t = ContiguousStreams(ids, batch_size=4, bptt=5)
    t.load_state_dict(state)
    assert np.array_equal(t.next()[0], expected)
    with pytest.raises(DataError, match="too few"):
        ContiguousStreams(ids[:5], 4, 5)


def test_prepare_refuses_too_little_data(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("ab", encoding="utf-8")
    with pytest.raises(DataError, match="only"):
        prepare(str(p), "char", val_fraction=0.5)


def test_cache_entry_written_by_another_process_is_kept(text_file):
    from engine.data import sources as data_mod

    first = prepare(str(text_file), "char")
    source = resolve_source(str(text_file))
    entry = cache_dir() / "data" / data_mod._cache_key(source, "char", None)
    assert entry.is_dir()
    # a second writer racing the first finds the entry in place and keeps it
    data_mod._write_entry(entry, first.tokenizer, None, 0, source=source)
    again = prepare(str(text_file), "char")
    assert again.cached and np.array_equal(again.train_ids, first.train_ids)
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".tmp-")]


def test_broken_cache_entry_is_rebuilt(text_file):
    from engine.data import sources as data_mod

    prepare(str(text_file), "char")
    entry = cache_dir() / "data" / data_mod._cache_key(resolve_source(str(text_file)), "char", None)
    (entry / "meta.json").write_text("{not json", encoding="utf-8")
    again = prepare(str(text_file), "char")
    assert not again.cached and again.tokenizer.decode(again.train_ids) == TEXT[: len(again.train_ids)]
    assert prepare(str(text_file), "char").cached
