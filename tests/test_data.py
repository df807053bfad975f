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
    assert first.text_chars == len(TEXT)
    assert first.train_chars + first.val_chars == len(TEXT)
    if kind in ("char", "byte"):  # no learned vocabulary: split by ids
        assert first.tokenizer.decode(ids) == TEXT
        assert len(first.val_ids) == round(0.1 * first.n_tokens)
    else:  # split by characters; the vocabulary is learned from the training text only
        train_text, val_text = TEXT[: first.train_chars], TEXT[first.train_chars :]
        assert abs(len(val_text) - 0.1 * len(TEXT)) < 20 and train_text[-1] != " " and val_text[0].isspace()
        assert first.tokenizer.decode(first.train_ids) == train_text
        assert np.array_equal(first.val_ids, first.tokenizer.encode(val_text))
    second = prepare(str(text_file), kind, vocab_size=300 if kind == "bpe" else None)
    assert second.cached
    assert np.array_equal(second.train_ids, first.train_ids) and np.array_equal(second.val_ids, first.val_ids)


@pytest.mark.parametrize("kind", ["word", "bpe", "whitespace"])
def test_learned_vocabulary_never_sees_validation_text(tmp_path, kind):
    """Words that occur only in the validation part are not in the vocabulary: they become <unk>
    (word, whitespace) or byte pieces (bpe), and the <unk> share says how many."""
    train = "".join(f"the cat sat on mat number {i % 5}.\n" for i in range(300))
    val = "".join("zebras quagga okapi graze.\n" for _ in range(30))
    path = tmp_path / "t.txt"
    path.write_text(train + val, encoding="utf-8")
    p = prepare(str(path), kind, vocab_size=400 if kind == "bpe" else None, val_fraction=len(val) / len(train + val))
    assert p.val_chars == len(val)
    if kind == "bpe":
        vocab = p.tokenizer.hf.get_vocab()
        assert not any("zebra" in t or "quagg" in t for t in vocab)
        assert p.unk_share() == 0.0
    else:
        words = set(p.tokenizer.words)
        assert not words & {"zebras", " zebras", "quagga", " quagga"}
        assert p.unk_share() > 0.5  # every validation word but the end of line is unseen


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
    data_mod._write_entry(entry, first.tokenizer, [("all", source.chunks)])
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


def _folder(tmp_path, test: bool = True) -> Path:
    d = tmp_path / "wt"
    d.mkdir()
    (d / "train.txt").write_text(" = A title = \n\n the cat sat on the mat . \n the <unk> sat too . \n", encoding="utf-8")
    (d / "valid.txt").write_text(" the cat sat . \n a dog ran . \n", encoding="utf-8")
    if test:
        (d / "test.txt").write_text(" the mat . \n", encoding="utf-8")
    return d


def test_split_folder_uses_its_files_as_splits(tmp_path):
    """A WikiText/PTB-layout folder: train.txt trains, valid.txt validates, test.txt tests; the
    whitespace vocabulary is the training types; unseen validation words are <unk>."""
    d = _folder(tmp_path)
    p = prepare(str(d), "whitespace", val_fraction=0.3)  # the fraction does not apply to a folder
    tok = p.tokenizer
    assert tok.decode(p.train_ids).split() == (d / "train.txt").read_text().split()
    assert list(tok.encode(" the cat sat . \n")) == list(p.val_ids[:5])
    assert [tok.token_text(int(i)) for i in p.val_ids] == ["the", "cat", "sat", ".", "<eos>", "<unk>", "<unk>", "<unk>", ".", "<eos>"]
    assert [tok.token_text(int(i)) for i in p.test_ids] == ["the", "mat", ".", "<eos>"]
    assert p.unk_share() == 3 / 10
    assert p.val_chars == len((d / "valid.txt").read_text()) and p.test_chars == len((d / "test.txt").read_text())
    train_types = set((d / "train.txt").read_text().split()) | {"<eos>"}
    assert set(tok.words) == train_types  # <unk> is in this training text
    assert "valid.txt" in p.split_rule and "test.txt" in p.split_rule
    again = prepare(str(d), "whitespace")
    assert again.cached and np.array_equal(again.test_ids, p.test_ids)
    (tmp_path / "b").mkdir()
    no_test = prepare(str(_folder(tmp_path / "b", test=False)), "char")
    assert no_test.test_ids is None  # the char alphabet of a folder is train.txt's: 'd', 'g', 'r' are unseen
    assert no_test.tokenizer.decode(no_test.val_ids) == " the cat sat . \n a \ufffdo\ufffd \ufffdan . \n"


def test_folder_without_splits_is_one_line_error(tmp_path):
    (tmp_path / "readme.md").write_text("hi", encoding="utf-8")
    with pytest.raises(DataError, match="without train.txt and valid.txt"):
        resolve_source(str(tmp_path))


@pytest.mark.slow
def test_wikitext2_standard_counts(wikitext2):
    """WikiText-2 through the whitespace tokenizer matches the published protocol: 33,278 types,
    2,088,628 / 217,646 / 245,569 tokens (train / valid / test, <eos> included)."""
    p = prepare(str(wikitext2), "whitespace")
    assert p.tokenizer.vocab_size == 33_278
    assert (len(p.train_ids), len(p.val_ids), len(p.test_ids)) == (2_088_628, 217_646, 245_569)
    assert p.tokenizer.token_text(int(np.asarray(p.val_ids)[np.asarray(p.val_ids) == p.tokenizer.unk_id][0])) == "<unk>"
    assert 0.05 < p.unk_share() < 0.06
