"""Bad data (issue 8): every case ends with one line saying what is wrong and what to do, exit 2.

Decisions: UTF-16 without a BOM is detected by its NUL pattern and decoded (with a warning);
Latin-1/Windows-1252 text is decoded with a warning; a single distinct character is refused.
"""

import builtins
import codecs
import os
import subprocess
import sys
import textwrap

import pytest

from engine.data.sources import prepare
from engine.data.textio import read_text
from engine.errors import DataError
from seqplay.cli import main

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(range(64))


def inspect(path, capsys):
    """Run ``seqplay inspect PATH --json -t char``; return (exit code, stdout, stderr)."""
    try:
        main(["inspect", str(path), "--json", "-t", "char"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(path, capsys, *words):
    code, out, err = inspect(path, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "name,data,words",
    [
        ("empty.txt", b"", ["empty.txt", "is empty"]),
        ("blank.txt", b"  \n\t\r\n   \n", ["blank.txt", "only whitespace"]),
        ("image.txt", PNG, ["image.txt", "PNG image"]),
        ("program", ELF, ["program", "ELF executable"]),
        ("random.bin", bytes(range(256)) * 8, ["random.bin", "binary"]),
        ("ctrl.txt", b"abc\x01\x02\x03\x04def\x05\x06\x07\x08" * 20, ["ctrl.txt", "binary"]),
        ("c1.txt", b"text with \x81\x8d\x8f\x90 undefined bytes\n", ["c1.txt", "not valid UTF-8"]),
        ("one.txt", b"aaaaaaaaaa\naaaaaa\n", ["one.txt", "single distinct character"]),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, capsys, name, data, words):
    p = tmp_path / name
    p.write_bytes(data)
    refused(p, capsys, *words)


def test_directory_missing_and_fifo(tmp_path, capsys):
    refused(tmp_path, capsys, "directory")
    refused(tmp_path / "nope.txt", capsys, "nope.txt", "no such file")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it would block forever: it must be refused before any open()
    refused(fifo, capsys, "pipe", "not a regular file")


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    p = tmp_path / "secret.txt"
    p.write_text("some text here\n", encoding="utf-8")
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(p):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    refused(p, capsys, "secret.txt", "permission denied")


@pytest.mark.parametrize(
    "data,codec",
    [
        ("hello wörld 😀\nline two\n".encode("utf-16"), "utf-16"),
        ("hello world\nline two\n".encode("utf-16-le"), "utf-16-le"),
        ("hello world\nline two\n".encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF8 + "hello wörld\n".encode(), "utf-8-sig"),
    ],
)
def test_utf16_and_bom_files_are_read(tmp_path, capsys, data, codec):
    p = tmp_path / "u.txt"
    p.write_bytes(data)
    code, out, _ = inspect(p, capsys)
    assert code == 0 and f'"encoding": "{codec}"' in out
    assert read_text(p).startswith("hello w")


def test_latin1_is_decoded_with_one_warning_line(tmp_path, capsys):
    p = tmp_path / "latin.txt"
    p.write_bytes("Le garçon mange une crêpe à Noël.\n".encode("latin-1"))
    try:
        main(["inspect", str(p), "-t", "char", "--preview", "0"])
    except SystemExit as exit_:  # pragma: no cover - a failure shows the message
        pytest.fail(f"exit {exit_.code}")
    err = capsys.readouterr().err
    assert "latin.txt is not valid UTF-8; decoded as" in err and "Traceback" not in err
    assert read_text(p) == "Le garçon mange une crêpe à Noël.\n"


def test_prepare_raises_dataerror_not_oserror(tmp_path):
    with pytest.raises(DataError):
        prepare(str(tmp_path / "missing.txt"))
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(DataError):
        prepare(str(tmp_path / "e.txt"), "bpe")


@pytest.mark.slow
def test_one_gigabyte_file_streams_in_bounded_memory(tmp_path):
    """prepare(byte) on a 1 GiB file: peak RSS stays far below 8x the file size (measured in a child)."""
    big = tmp_path / "big.txt"
    line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
    block = line * ((1 << 20) // len(line) + 1)
    with open(big, "wb") as f:
        while f.tell() < 1 << 30:
            f.write(block)
    size = big.stat().st_size
    code = textwrap.dedent(
        f"""
        import resource
        from engine.data.sources import prepare
        p = prepare({str(big)!r}, "byte")
        assert p.n_tokens == {size}, p.n_tokens
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        """
    )
    env = {**os.environ, "SEQPLAY_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1200)
    assert res.returncode == 0, res.stderr
    peak = int(res.stdout.strip())
    assert peak < size, f"peak RSS {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"
