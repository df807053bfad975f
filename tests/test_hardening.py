"""Hardening audit (issue 8): every case of the issue, through the real CLI and, where it applies, the TUI.

CLI cases run ``python -m seqplay ...`` in a subprocess and check the exit code, that stderr is exactly
one ``error: ...`` line (what is wrong + what to do) and that no traceback appears anywhere. TUI cases
drive the real app with a scripted engine (no torch) and check for a notification with the app still
running. docs/hardening.md is the table of these cases (case -> what the user sees -> what survived).
Cases already covered elsewhere are named there (tests/test_faults.py, test_checkpoint.py, ...).
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import protocol as P
from tests.test_tui import SIZE, make_app, notifications, sent, sync, wait_for
from tests.train_helpers import TEXT

REPO = Path(__file__).parents[1]
TINY = ["--layers", "1", "--width", "16", "--heads", "2", "--context", "8", "--batch-size", "2",
        "--threads", "1", "--precision", "fp32", "--compile", "off", "--sample-every", "0", "--warmup", "1"]

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(range(64))


# ------------------------------------------------------------------------------------------ helpers
def seqplay(*args: object, timeout: float = 180, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a child process (SEQPLAY_HOME comes from conftest)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "seqplay", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def one_line_error(res: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2, stderr exactly one ``error: ...`` line holding ``words``, no traceback anywhere."""
    assert res.returncode == 2, (res.returncode, res.stdout[-3000:], res.stderr[-3000:])
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _drop_privileges() -> None:
    """Root reads every file: drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (take effect at exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


# ----------------------------------------------------------------------------------------- bad data
def _bad_file(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    """Make the file of one bad-data case; return its path and words the message must hold."""
    p = tmp_path / case
    data = {
        "empty": (b"", ["is empty"]),
        "whitespace": (b"  \n\t\r\n   \n", ["only whitespace"]),
        "image.png": (PNG, ["PNG image", "plain-text"]),
        "program.elf": (ELF, ["ELF executable", "plain-text"]),
        "invalid-utf8": (b"some text \x81\x8d\x8f\x90 with undefined bytes\n" * 10, ["not valid UTF-8", "UTF-8"]),
        "invalid-utf8-late": (b"valid ascii text\n" * 80_000 + b"then \xff\xfe\x81 broken\n", ["not valid UTF-8 near byte", "re-save"]),
        "single-char": (b"aaaaaaaaaa\naaaa\n" * 20, ["single distinct character", "varied text"]),
    }
    if case in data:
        p.write_bytes(data[case][0])
        return p, data[case][1]
    if case == "directory":
        p.mkdir()
        return p, ["is a directory", "file inside it"]
    if case == "missing":
        return p, ["no such file", "check the path"]
    if case == "fifo":
        os.mkfifo(p)  # opening it would block forever: it must be refused before any open()
        return p, ["not a regular file", "save the text to a file"]
    if case == "no-permission":
        p.write_text("readable only by its owner\n" * 20)
        p.chmod(0o000)
        os.chmod(tmp_path, 0o755)  # the folder is searchable: the file itself is what cannot be read
        return p, ["permission denied", "chmod +r"]
    raise KeyError(case)


BAD_DATA = ["empty", "whitespace", "image.png", "program.elf", "invalid-utf8", "invalid-utf8-late", "single-char",
            "directory", "missing", "fifo", "no-permission"]


@pytest.mark.parametrize("case", BAD_DATA)
def test_cli_bad_data_one_line_each(tmp_path, case):
    """`seqplay inspect` and `seqplay train` refuse every bad file with one line (and before torch)."""
    path, words = _bad_file(tmp_path, case)
    preexec = _drop_privileges if case == "no-permission" and os.geteuid() == 0 else None
    for args in (["inspect", path, "-t", "char"], ["train", path, "--steps", "1", *TINY]):
        start = time.monotonic()
        res = seqplay(*args, preexec=preexec)
        line = one_line_error(res, *words)
        assert path.name in line
        assert time.monotonic() - start < 30
    assert not (Path(os.environ["SEQPLAY_HOME"]) / "runs").exists()  # no run folder was made


ODD_ENCODINGS = {
    "utf16-bom.txt": (lambda: ("hello wörld\nline two\n" * 50).encode("utf-16"), None),
    "utf16-nobom.txt": (lambda: ("hello world\nline two\n" * 50).encode("utf-16-le"), "looks like UTF-16"),
    "latin1.txt": (lambda: ("Le garçon mange une crêpe à Noël.\n" * 50).encode("latin-1"), "not valid UTF-8; decoded as"),
    "utf8-bom.txt": (lambda: codecs.BOM_UTF8 + ("hello wörld\n" * 50).encode(), None),
}


@pytest.mark.parametrize("case", ODD_ENCODINGS)
def test_cli_odd_encodings_are_read_with_at_most_one_warning(tmp_path, case):
    make, note = ODD_ENCODINGS[case]
    p = tmp_path / case
    p.write_bytes(make())
    res = seqplay("inspect", p, "-t", "char", "--preview", "0")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    warnings = res.stderr.strip().splitlines()
    if note is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and note in warnings[0] and "re-save it as UTF-8" in warnings[0], warnings
    info = json.loads(seqplay("inspect", p, "-t", "char", "--json", "--preview", "0").stdout)
    assert info["characters"] > 500 and info["distinct_characters"] < 40  # decoded, not bytes


@sync
async def test_tui_bad_data_notifies_and_keeps_running(tmp_path, monkeypatch):
    """Open every bad file from the Data pane: one error notification each, the app and the loaded
    corpus stay; odd encodings open."""
    app, engine = make_app()
    cases = {case: _bad_file(tmp_path, case) for case in BAD_DATA}
    if os.geteuid() == 0:  # root reads anything: make the worker thread's open() fail as it would
        import builtins

        secret, real_open = str(cases["no-permission"][0]), builtins.open

        def deny(file, *args, **kwargs):
            if str(file) == secret:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", deny)
    async with app.run_test(size=SIZE) as pilot:
        data = app.query_one("#data")
        await wait_for(pilot, lambda: data.stats is not None, what="default corpus")
        chars = data.stats.chars
        for case, (path, words) in cases.items():
            before = len(app._notifications)
            data.load(str(path))  # what choosing the file in the Data pane's browser does
            await wait_for(pilot, lambda b=before: len(app._notifications) > b, what=f"notification for {case}")
            await pilot.pause(0.05)
            new = [n for n in list(app._notifications)[before:]]
            assert len(new) == 1 and new[0].severity == "error", [n.message for n in new]
            assert "\n" not in new[0].message and all(w in new[0].message for w in words), new[0].message
            assert app.is_running and data.spec == "grammar" and data.stats.chars == chars
        for case, (make, _note) in ODD_ENCODINGS.items():
            p = tmp_path / case
            p.write_bytes(make())
            data.load(str(p))
            await wait_for(pilot, lambda p=p: data.spec == str(p), what=f"{case} opened")
            assert data.stats.vocab < 40  # decoded characters, not bytes
        assert not sent(engine, P.StartTraining)
