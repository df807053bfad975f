"""Reading a user's text file: path -> text, or path -> chunks of text for big files.

What is accepted, and how it is decoded:
- UTF-8, with or without a byte-order mark (BOM); UTF-16 with a BOM.
- UTF-16 *without* a BOM is detected by the NUL pattern of mostly-ASCII text (one byte of every pair
  is NUL) and decoded, with a warning on the ``seqplay`` logger.
- Text that is not valid UTF-8 but has no control bytes is decoded as Latin-1 (cp1252 where that
  fits), with a warning: refusing an old Western-European file would be less friendly.
- CRLF and lone CR line ends become LF.

Everything else raises ``DataError`` with one line naming the file and what to do: a missing path, a
directory, a FIFO/device (never opened, so it cannot hang), no read permission, an empty or
whitespace-only file, a binary file (NUL bytes, a known image/executable/archive signature, many
control bytes).
"""

from __future__ import annotations

import codecs
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import DataError

log = logging.getLogger("seqplay.data")

CHUNK_BYTES = 4 << 20  # read and decode big files 4 MiB at a time
SNIFF_BYTES = 1 << 20  # the encoding is decided on the first 1 MiB

# Signatures of common binary formats, so the message can say what the file looks like.
_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x93NUMPY", "a numpy array"),
    (b"SQLite format 3\x00", "an SQLite database"),
]
_ALLOWED_CONTROL = {9, 10, 12, 13}  # tab, LF, form feed, CR
_warned: set[str] = set()


@dataclass(frozen=True)
class Encoding:
    """How a file will be decoded: a Python codec name and an optional warning for the user."""

    codec: str
    note: str | None = None


def check_readable(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path if it names a regular, readable file; raise ``DataError`` otherwise."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise DataError(f"{str(p)}: no such file; check the path (or run `seqplay corpora` for built-in corpora)") from None
    except PermissionError:
        raise DataError(f"{str(p)}: permission denied; make the file readable (chmod +r) or copy it somewhere you can read") from None
    except OSError as err:
        raise DataError(f"{str(p)}: cannot be read ({err.strerror}); check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{str(p)} is a directory, not a text file; give the path of a file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{str(p)} is not a regular file (a pipe, socket or device); save the text to a file first")
    if st.st_size == 0:
        raise DataError(f"{str(p)} is empty; give a file with some text in it")
    return p


def _open(p: Path):
    try:
        return open(p, "rb")  # noqa: SIM115 - the caller closes it
    except PermissionError:
        raise DataError(f"{str(p)}: permission denied; make the file readable (chmod +r) or copy it somewhere you can read") from None
    except OSError as err:
        raise DataError(f"{str(p)}: cannot be read ({err.strerror}); check the path") from None


def _looks_utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' if ``head`` has the NUL pattern of mostly-ASCII UTF-16 text."""
    n = len(head) // 2 * 2
    if n < 4:
        return None
    even, odd = head[0:n:2], head[1:n:2]
    half = n // 2
    if odd.count(0) >= 0.9 * half and even.count(0) <= 0.05 * half:
        return "utf-16-le"
    if even.count(0) >= 0.9 * half and odd.count(0) <= 0.05 * half:
        return "utf-16-be"
    return None


def _control_fraction(data: bytes) -> float:
    if not data:
        return 0.0
    bad = sum(data.count(bytes([b])) for b in range(32) if b not in _ALLOWED_CONTROL)
    bad += data.count(b"\x7f")
    return bad / len(data)


def detect_encoding(path: str | os.PathLike[str]) -> Encoding:
    """Decide how to decode ``path`` from its first MiB, or raise ``DataError`` if it is not text."""
    p = check_readable(path)
    with _open(p) as f:
        head = f.read(SNIFF_BYTES)
        at_end = not f.read(1)
    return _encoding_of(p, head, at_end)


def _encoding_of(p: Path, head: bytes, at_end: bool) -> Encoding:
    name = str(p)
    if head.startswith(codecs.BOM_UTF8):
        return Encoding("utf-8-sig")
    if head[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):
        return Encoding("utf-32")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Encoding("utf-16")
    for magic, what in _MAGIC:
        if head.startswith(magic) and (magic != b"MZ" or b"\x00" in head[:512]):
            raise DataError(f"{name} looks like {what}, not text; give a plain-text file (e.g. .txt)")
    if b"\x00" in head:
        codec = _looks_utf16_without_bom(head)
        if codec:
            return Encoding(codec, f"{name} has no byte-order mark but looks like UTF-16 text; decoded as {codec.upper()} (re-save it as UTF-8 to silence this)")
        raise DataError(f"{name} is a binary file (it contains NUL bytes), not text; give a plain-text UTF-8 file")
    if _control_fraction(head) > 0.01:
        raise DataError(f"{name} is a binary file (many control bytes), not text; give a plain-text UTF-8 file")
    # Strict UTF-8, allowing a multi-byte character cut off by the end of the sniffed block.
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=at_end)
        return Encoding("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        codec = "cp1252"
    except UnicodeDecodeError:
        codec = "latin-1"
    if sum(1 for b in head if 0x80 <= b <= 0x9F) and codec == "latin-1":
        raise DataError(f"{name} is not valid UTF-8 and not plausible Latin-1 text; re-save it as UTF-8")
    return Encoding(codec, f"{name} is not valid UTF-8; decoded as {'Windows-1252' if codec == 'cp1252' else 'Latin-1'} (re-save it as UTF-8 to silence this)")


def iter_text_chunks(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Yield the decoded, LF-normalised text of ``path`` in pieces of about ``chunk_bytes``.

    Each piece (but the last) ends where a non-space character meets a whitespace run that holds a
    newline, so no word or byte-level BPE pre-token is ever cut between two pieces. The encoding is
    decided on the first MiB; a decoding error further on raises ``DataError`` with the byte offset.
    An empty or whitespace-only file raises ``DataError``.
    """
    p = check_readable(path)
    name = str(p)
    with _open(p) as f:
        try:
            first = f.read(max(chunk_bytes, SNIFF_BYTES))
        except OSError as err:
            raise DataError(f"{name}: cannot be read ({err.strerror}); check the file") from None
        at_end = len(first) < max(chunk_bytes, SNIFF_BYTES)
        enc = _encoding_of(p, first[:SNIFF_BYTES], at_end and len(first) <= SNIFF_BYTES)
        if enc.note and enc.note not in _warned:  # once per file and process, not once per pass
            _warned.add(enc.note)
            log.warning(enc.note)
        decoder = codecs.getincrementaldecoder(enc.codec)("strict")
        buf = ""  # decoded text not yet yielded
        offset = 0
        seen_text = False
        block = first
        while True:
            final = not block
            try:
                buf += decoder.decode(block, final=final)
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{name} has bytes that are not valid {enc.codec.upper()} near byte {offset + err.start}; re-save it as UTF-8"
                ) from None
            offset += len(block)
            held = ""
            if buf.endswith("\r") and not final:  # a CR whose LF may come with the next block
                buf, held = buf[:-1], "\r"
            if "\r" in buf:
                buf = buf.replace("\r\n", "\n").replace("\r", "\n")
            if not seen_text and not buf.isspace():
                seen_text = bool(buf)
            if final:
                if buf:
                    yield buf
                break
            cut = _safe_cut(buf)
            if cut == 0 and len(buf) > 4 * chunk_bytes:  # one enormous line: cut anywhere
                cut = buf.rfind("\n") + 1 or len(buf)
            if cut > 0:
                yield buf[:cut]
                buf = buf[cut:]
            buf += held
            try:
                block = f.read(chunk_bytes)
            except OSError as err:
                raise DataError(f"{name}: cannot be read ({err.strerror}); check the file") from None
    if not seen_text:
        raise DataError(f"{name} contains only whitespace; give a file with some text in it")


def _safe_cut(text: str) -> int:
    """Where to cut ``text`` so no word or byte-level BPE pre-token is split: the start of the
    whitespace run holding the last newline, if text comes before it (0 if there is no such place)."""
    i = text.rfind("\n")
    while i > 0 and text[i - 1].isspace():
        i -= 1
    return max(i, 0)


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole text of ``path`` (see the module docstring for what is accepted); raises ``DataError``."""
    return "".join(iter_text_chunks(path))
