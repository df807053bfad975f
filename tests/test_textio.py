"""engine.data.textio: encodings, line ends and chunking of real files."""

import codecs
import logging

import pytest

from engine.data.textio import detect_encoding, iter_text_chunks, read_text
from engine.errors import DataError

TEXT = "héllo wörld\nemoji 😀 and CJK 中文\nlast line"


def write(tmp_path, data: bytes, name="f.txt"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode("utf-8"),
        codecs.BOM_UTF8 + TEXT.encode("utf-8"),
        TEXT.encode("utf-16"),  # with BOM, native order
        codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
        codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
    ],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be-bom", "utf16-le-bom"],
)
def test_read_text_decodes_supported_encodings(tmp_path, data):
    assert read_text(write(tmp_path, data)) == TEXT


def test_line_ends_become_lf(tmp_path):
    p = write(tmp_path, b"a\r\nb\rc\n\r\nd")
    assert read_text(p) == "a\nb\nc\n\nd"


def test_crlf_and_multibyte_split_across_chunks(tmp_path):
    # tiny chunks force CR|LF pairs and 4-byte characters to straddle block boundaries
    text = ("line 😀 中\r\n" * 300) + "end"
    p = write(tmp_path, text.encode("utf-8"))
    chunks = list(iter_text_chunks(p, chunk_bytes=7))
    assert "".join(chunks) == text.replace("\r\n", "\n")
    assert "\r" not in "".join(chunks)


@pytest.mark.parametrize("eol", ["\n\n", " \n \n"])
def test_chunks_end_where_text_meets_a_newline_run(tmp_path, eol):
    text = "".join(f"word{i} and more{eol}" for i in range(200_000))  # ~3.6 MB
    p = write(tmp_path, text.encode())
    chunks = list(iter_text_chunks(p, chunk_bytes=1 << 20))
    assert len(chunks) > 1
    assert "".join(chunks) == text
    for c in chunks[1:]:
        assert c.startswith(eol)  # whitespace runs are never split between chunks


def test_utf16_without_bom_is_detected_with_a_warning(tmp_path, caplog):
    p = write(tmp_path, "plain ascii text\nsecond line\n".encode("utf-16-le"))
    with caplog.at_level(logging.WARNING, logger="seqplay.data"):
        assert read_text(p) == "plain ascii text\nsecond line\n"
    assert "UTF-16" in caplog.text
    p2 = write(tmp_path, "big endian\n".encode("utf-16-be"), "be.txt")
    assert read_text(p2) == "big endian\n"


def test_latin1_is_decoded_with_a_warning(tmp_path, caplog):
    p = write(tmp_path, "café crème brûlée\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="seqplay.data"):
        assert read_text(p) == "café crème brûlée\n"
    assert "not valid UTF-8" in caplog.text
    assert detect_encoding(p).note is not None


def test_utf8_file_has_no_warning(tmp_path):
    assert detect_encoding(write(tmp_path, TEXT.encode())).note is None


def test_invalid_utf8_late_in_a_big_file_names_the_offset(tmp_path):
    data = b"valid text\n" * 200_000 + b"bad \xff byte\n"  # the bad byte is past the sniffed MiB
    p = write(tmp_path, data)
    with pytest.raises(DataError, match="near byte 2200004"):
        read_text(p)
