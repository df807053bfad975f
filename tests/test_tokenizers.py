"""engine.data.tokenizers: round trips, vocabularies, dtypes, save/load."""

import numpy as np
import pytest

from engine.data.tokenizers import BPETokenizer, Tokenizer, bpe_pieces, build_tokenizer, id_dtype
from engine.errors import ConfigError

TEXTS = [
    "hello world",
    "  two leading spaces, trailing  \n\n\ttab and blank lines\n",
    "emoji 😀👍🏽🇫🇷 family 👨‍👩‍👧",
    "CJK 中文字符 日本語のテキスト 한국어",
    "mixed: naïve café — “quotes” ½ ∑x² \\ backslash",
    "x",
]
CORPUS = ("The quick brown fox jumps over the lazy dog. " * 40 + "\n") * 5 + "".join(TEXTS)


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(kind, text):
    tok = build_tokenizer(kind, CORPUS, 300 if kind == "bpe" else None)
    ids = tok.encode(text)
    assert isinstance(ids, np.ndarray) and ids.dtype == id_dtype(tok.vocab_size)
    assert tok.decode(ids) == text


def test_bpe_round_trips_text_it_was_not_trained_on():
    tok = build_tokenizer("bpe", "aaaa bbbb aaaa bbbb\n" * 50, 260)
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text


def test_bpe_compresses_and_respects_vocab_size():
    tok = build_tokenizer("bpe", CORPUS, 300)
    assert 256 < tok.vocab_size <= 300
    ids = tok.encode(CORPUS)
    assert len(ids) < len(CORPUS.encode()) / 2


@pytest.mark.parametrize("eol", ["\n", " \n", "  \n \n"])
def test_bpe_parallel_encoding_of_long_text_equals_one_call(eol):
    text = "".join(f"Line {i}: some words here.{eol}\n  indented {i % 7}  ,{eol}" for i in range(3000))
    assert len(bpe_pieces(text)) > 4  # the long text really is encoded in pieces
    assert "".join(bpe_pieces(text)) == text
    tok = build_tokenizer("bpe", text, 400)
    assert isinstance(tok, BPETokenizer)
    assert np.array_equal(tok.encode(text), np.array(tok.hf.encode(text).ids))


def test_char_vocab_is_sorted_distinct_plus_unk():
    tok = build_tokenizer("char", "banana!")
    assert tok.vocab_size == len(set("banana!")) + 1
    assert tok.unk_id == tok.vocab_size - 1
    assert tok.decode(tok.encode("nab")) == "nab"
    ids = tok.encode("bZz")  # unseen characters map to <unk>
    assert ids[1] == tok.unk_id and ids[2] == tok.unk_id
    assert tok.decode(ids) == "b\ufffd\ufffd"
    assert tok.token_text(tok.unk_id) == "<unk>"


def test_byte_tokenizer_is_lossless_for_any_text():
    tok = build_tokenizer("byte", "")
    assert tok.vocab_size == 256
    text = "".join(TEXTS)
    assert tok.encode(text).tobytes() == text.encode("utf-8")
    assert tok.token_text(ord("a")) == "a" and tok.token_text(0xF0) == "<0xF0>"


def test_word_tokenizer_keeps_whitespace_and_caps_vocab():
    text = "the cat sat on the mat. the dog sat, too!\n  the end\n"
    tok = build_tokenizer("word", text)
    assert tok.decode(tok.encode(text)) == text  # every token in vocabulary: exact round trip
    small = build_tokenizer("word", text, vocab_size=4)
    assert small.vocab_size == 4
    ids = small.encode(text)
    assert (ids == small.unk_id).any()
    assert small.token_text(0) == "<unk>"
    # the most frequent tokens are kept: " the" occurs 3 times, "the" once... both beat singletons
    assert " the" in small.words


def test_word_tokenizer_vocab_is_deterministic():
    text = "b a c a b d e f g\n" * 3
    assert build_tokenizer("word", text, 5).words == build_tokenizer("word", text, 5).words


@pytest.mark.parametrize("kind", ["char", "byte", "word", "bpe", "whitespace"])
def test_save_load(tmp_path, kind):
    tok = build_tokenizer(kind, CORPUS, {"bpe": 300, "word": 50}.get(kind))
    path = tmp_path / "tok.json"
    tok.save(path)
    again = Tokenizer.load(path)
    assert again.vocab_size == tok.vocab_size and type(again) is type(tok)
    sample = CORPUS[:500]
    assert np.array_equal(again.encode(sample), tok.encode(sample))
    assert again.decode(tok.encode(sample)) == tok.decode(tok.encode(sample))


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_count_chars_is_exact(kind):
    tok = build_tokenizer(kind, CORPUS, 300 if kind == "bpe" else None)
    for text in TEXTS:
        assert tok.count_chars(tok.encode(text)) == len(text)


def test_id_dtype_boundaries():
    assert id_dtype(256) == np.uint8
    assert id_dtype(257) == np.uint16
    assert id_dtype(65536) == np.uint16
    assert id_dtype(65537) == np.uint32


def test_bad_kind_and_sizes():
    with pytest.raises(ConfigError):
        build_tokenizer("sentencepiece", "abc")
    with pytest.raises(ConfigError):
        build_tokenizer("bpe", "abc", 100)
    with pytest.raises(ConfigError, match="at least 3"):
        build_tokenizer("whitespace", "a b", 2)


def test_whitespace_tokenizer_is_the_ptb_wikitext_protocol():
    """Words split on whitespace; <unk> in the text is one token; every newline is <eos>; the
    vocabulary is the training types (+ <unk>, <eos>), so decode(encode(x)) normalises spacing only."""
    train = " = Title = \n\n the <unk> sat on the mat . \n the cat @-@ sat . \n"
    tok = build_tokenizer("whitespace", train)
    assert tok.vocab_size == len(set(train.split()) | {"<eos>"})
    assert tok.unk_id == 0 and tok.token_text(1) == "<eos>"
    ids = tok.encode(" the <unk> sat . \n dog \n")
    assert [tok.token_text(int(i)) for i in ids] == ["the", "<unk>", "sat", ".", "<eos>", "<unk>", "<eos>"]
    assert tok.decode(tok.encode(train)) == "= Title =\n\nthe <unk> sat on the mat .\nthe cat @-@ sat .\n"
    assert len(tok.encode(train)) == len(train.split()) + train.count("\n")
    capped = build_tokenizer("whitespace", train, 4)  # <unk>, <eos>, "the" (3), then "." (2; ties alphabetical)
    assert capped.vocab_size == 4 and capped.words[2:] == ["the", "."]
