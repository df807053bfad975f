"""`seqplay corpora` and `seqplay inspect` through the real CLI entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqplay.cli import main

SHAKESPEARE = Path("/work/shared/corpora/tinyshakespeare.txt")


def run(args, capsys):
    """Run ``seqplay ARGS`` in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_corpora_lists_every_corpus(capsys):
    code, out, _ = run(["corpora"], capsys)
    assert code == 0
    for name in ("grammar", "copy", "reverse", "brackets", "addition", "stdlib"):
        assert name in out
    code, out, _ = run(["corpora", "--json"], capsys)
    rows = json.loads(out)
    assert {r["name"] for r in rows} >= {"grammar", "stdlib"} and all(r["description"] for r in rows)


def test_inspect_file_json(tmp_path, capsys):
    p = tmp_path / "t.txt"
    p.write_text("hello world\nhello there\n", encoding="utf-8")
    code, out, _ = run(["inspect", str(p), "--json", "-t", "char", "-t", "word"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["characters"] == 24 and info["lines"] == 2
    assert info["distinct_characters"] == len(set("hello world\nhello there\n"))
    char, word = info["tokenizers"]
    assert char["tokenizer"] == "char" and char["tokens"] == 24 and char["vocab_size"] == info["distinct_characters"] + 1
    assert word["tokens"] == 6  # hello, " world", "\n", hello, " there", "\n"


def test_inspect_builtin_corpus_table(capsys):
    code, out, _ = run(["inspect", "addition:n=50", "-t", "char"], capsys)
    assert code == 0
    assert "distinct characters" in out and "source->target pairs" in out and "preview" in out
    code, out, _ = run(["inspect", "addition:n=50", "-t", "char", "--json"], capsys)
    info = json.loads(out)
    assert info["distinct_characters"] == 13  # ten digits, '+', '=', newline
    assert info["pairs"] == 50 and info["lines"] == 50


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="tinyshakespeare not available")
def test_inspect_tinyshakespeare(capsys):
    code, out, _ = run(["inspect", str(SHAKESPEARE), "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["characters"] == 1_115_394
    assert info["distinct_characters"] == 65
    vocab = {t["tokenizer"]: t["vocab_size"] for t in info["tokenizers"]}
    assert vocab["char"] == 66 and vocab["byte"] == 256 and vocab["bpe"] == 1024
    code, out, _ = run(["inspect", str(SHAKESPEARE)], capsys)
    assert "1,115,394" in out and "65" in out


def test_help_lists_data_commands():
    env = {**os.environ, "COLUMNS": "120"}
    res = subprocess.run([sys.executable, "-m", "seqplay", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0 and "corpora" in res.stdout and "inspect" in res.stdout


def test_bad_input_through_subprocess_has_no_traceback(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "seqplay", "inspect", str(tmp_path / "missing.txt")],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.txt" in lines[0]
