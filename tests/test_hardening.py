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

from engine.worker import protocol as P
from tests.test_tui import SIZE, make_app, sent, start_training, sync, wait_for
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
            assert data.stats.distinct_chars < 40  # decoded characters, not bytes
        assert not sent(engine, P.StartTraining)


# ------------------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("args,words", [
    (["--layers", "0"], ["layers must be a positive"]),
    (["--width", "-4"], ["width must be a positive"]),
    (["--heads", "3", "--width", "64"], ["3 heads do not divide width 64", "e.g. 2"]),
    (["--batch-size", "0"], ["batch-size must be a positive"]),
    (["--context", "-1"], ["context must be a positive"]),
    (["--lr", "-1"], ["learning rate must be positive"]),
    (["--width", "100000", "--layers", "1000"], ["absurdly large", "smaller size"]),
    # does not fit in memory: refused from the estimate before the model exists, with a batch that fits
    (["--batch-size", "100000", "--context", "1024", "--width", "512", "--layers", "4", "--heads", "8"],
     ["GiB", "is free on cpu", "use --batch-size"]),
    (["--width", "16384", "--layers", "48", "--heads", "16"], ["GiB", "is free on cpu", "smaller --width/--layers"]),
])
def test_cli_bad_settings_one_line_before_anything_is_made(args, words):
    res = seqplay("train", "grammar", "--steps", "5", "--threads", "1", *args, timeout=120)
    one_line_error(res, *words)
    runs = Path(os.environ["SEQPLAY_HOME"]) / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run folder, no checkpoint


def test_cli_context_longer_than_the_data_is_clamped_and_said(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text(TEXT[:600])
    res = seqplay("train", short, "--steps", "2", "--eval-every", "2", *TINY[:6], "--context", "5000", *TINY[8:])
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "warning: context 5000 is longer than the data allows; clamped to" in res.stdout
    assert res.stderr.strip() == ""


class InThreadWorker:
    """The real ``engine.worker.process`` loop (real Trainer, real messages) on a thread instead of a process:
    the TUI's EngineClient interface without spawning an interpreter. For failures that end fast."""

    def __init__(self) -> None:
        import queue
        import threading

        from engine.worker.process import _Worker

        self._cmd: queue.Queue = queue.Queue()
        self._ev: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=_Worker(self._cmd, self._ev).loop, daemon=True)
        self.sent: list[P.Command] = []

    def start(self) -> None:
        self._thread.start()

    def send(self, cmd: P.Command) -> None:
        self.sent.append(cmd)
        self._cmd.put(cmd)

    def poll(self, timeout: float = 0) -> list[P.Event]:
        import queue

        out: list[P.Event] = []
        try:
            out.append(self._ev.get(timeout=timeout) if timeout > 0 else self._ev.get_nowait())
            while True:
                out.append(self._ev.get_nowait())
        except queue.Empty:
            return out

    def close(self) -> None:
        self._cmd.put(P.Shutdown())
        self._thread.join(30)


def _set_form(app, **values: str) -> None:
    from textual.widgets import Input

    for widget, value in values.items():
        app.pane("model").query_one(f"#{widget}", Input).value = value


def _errors(app) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


@sync
async def test_tui_bad_settings_are_refused_before_training():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.pane("data").stats is not None)
        for widget, value, words in [("hp-width", "0", "width must be a positive"),
                                     ("hp-layers", "-1", "layers must be a positive"),
                                     ("hp-heads", "3", "heads do not divide"),
                                     ("batch", "-2", "batch"),
                                     ("lr", "-1", "learning rate"),
                                     ("steps", "-5", "steps")]:
            saved = app.pane("model").query_one(f"#{widget}").value
            _set_form(app, **{widget: value})
            await pilot.pause()
            before = len(_errors(app))
            await pilot.press("t")
            await wait_for(pilot, lambda b=before: len(_errors(app)) > b, what=f"refusal of {widget}={value}")
            assert words in _errors(app)[-1] and "\n" not in _errors(app)[-1]
            assert app.is_running and app.training_state == "idle"
            _set_form(app, **{widget: saved})
        assert not sent(engine, P.StartTraining)


@sync
async def test_tui_model_too_big_for_memory_is_explained():
    """The real worker loop refuses the run from its memory estimate; the TUI shows the message."""
    worker = InThreadWorker()
    app = __import__("tui.app", fromlist=["SeqplayApp"]).SeqplayApp(engine_factory=lambda: worker)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.pane("data").stats is not None)
        await pilot.press("2")
        _set_form(app, **{"hp-width": "16384", "hp-layers": "48", "hp-heads": "16", "steps": "5"})
        await pilot.pause()
        await pilot.press("t")
        await wait_for(pilot, lambda: _errors(app), timeout=60, what="memory refusal")
        assert "GiB" in _errors(app)[0] and "is free on" in _errors(app)[0] and "smaller" in _errors(app)[0]
        await wait_for(pilot, lambda: app.training_state == "idle", what="idle again")
        assert app.is_running and app.train_job is None


TUI_TINY = {"hp-width": "32", "hp-layers": "1", "hp-heads": "2", "hp-context": "16", "batch": "4"}


def _seqplay_app(engine) -> object:
    from tui.app import SeqplayApp

    return SeqplayApp(engine_factory=lambda: engine)


@pytest.mark.parametrize("error", ["cuda", "cpu"])
@sync
async def test_tui_out_of_memory_in_a_step_is_explained(monkeypatch, error):
    import torch

    from engine.training.trainer import Trainer

    def oom(self):
        if error == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 68719476736 bytes")

    monkeypatch.setattr(Trainer, "train_step", oom)
    worker = InThreadWorker()
    app = _seqplay_app(worker)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.pane("data").stats is not None)
        _set_form(app, **TUI_TINY, steps="5")
        await pilot.press("t")
        await wait_for(pilot, lambda: _errors(app), timeout=60, what="out-of-memory message")
        msg = _errors(app)[0]
        assert "out of memory at step 1" in msg and "--batch-size 2" in msg and "last checkpoint is kept" in msg
        await wait_for(pilot, lambda: app.training_state == "idle", what="idle again")
        assert app.is_running
    run = max((Path(os.environ["SEQPLAY_HOME"]) / "runs").iterdir())
    from engine.runs.checkpoint import load_model

    assert load_model(run).meta["step"] == 0  # the step-0 checkpoint survived


@sync
async def test_tui_learning_rate_blowup_pauses_with_an_explanation():
    worker = InThreadWorker()
    app = _seqplay_app(worker)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.pane("data").stats is not None)
        _set_form(app, **TUI_TINY, steps="50", lr="1000")
        app.pane("model").query_one("#schedule").value = "constant"
        await pilot.press("t")
        await wait_for(pilot, lambda: app.training_state == "paused", timeout=60, what="paused by the guard rail")
        (msg,) = _errors(app)
        assert "loss became" in msg and "too high" in msg and "training paused" in msg
        assert "auto-rollback" in msg and "step-000000.json is kept" in msg
        assert app.pane("train").last is None or app.pane("train").last.step <= 1  # caught within one step
        await pilot.press("x")
        await wait_for(pilot, lambda: app.train_job is None, timeout=30, what="stopped")
        assert app.is_running
    from engine.runs.checkpoint import load_model, step_checkpoints

    run = max((Path(os.environ["SEQPLAY_HOME"]) / "runs").iterdir())
    assert [s for s, _ in step_checkpoints(run)] == [0]  # the blown-up weights were never saved
    import torch

    assert all(torch.isfinite(p).all() for p in load_model(run).model.parameters())


# --------------------------------------------------------------------------------------------- faults
def _train_with_hook(tmp_path: Path, hook: str, steps: int = 30) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the real `seqplay train` entry point in a child whose ``hook`` (Python) fires a signal at a
    chosen moment; returns the finished process and the run folder."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT)
    args = ["train", str(corpus), "--steps", str(steps), "--eval-every", "5", *TINY,
            "--runs-dir", str(tmp_path / "runs"), "--run-name", "r", "--json"]
    script = "import os, signal\n" + textwrap.dedent(hook) + f"\nfrom seqplay.cli import main\nmain({args!r})\n"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    return res, tmp_path / "runs" / "r"


def _no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]
    assert not left, left


def _resumes(run: Path, steps: int) -> None:
    from engine.training.trainer import Trainer
    from tests.train_helpers import Recorder

    fin = Trainer({}, Recorder(), resume_from=str(run), overrides={"steps": steps}).run()
    assert fin.reason == "done" and fin.step == steps


CTRL_C = {
    # Ctrl-C while the data is being read and tokenised: nothing is half-made, exit 130
    "data preparation": """
        import engine.data.sources as d
        real = d.Source.chunks
        def chunks(self):
            for c in real(self):
                os.kill(os.getpid(), signal.SIGINT)
                yield c
        d.Source.chunks = chunks
    """,
    # during an evaluation: it finishes, a checkpoint is written, the run stops
    "evaluation": """
        from engine.training.trainer import Trainer
        real = Trainer.evaluate
        def evaluate(self):
            if self.step == 10:
                os.kill(os.getpid(), signal.SIGINT)
            return real(self)
        Trainer.evaluate = evaluate
    """,
    # during a checkpoint write: the write completes, then the run stops
    "checkpoint write": """
        import engine.runs.checkpoint as ck
        real = ck._write_file
        def writer(fh, data):
            if ".step-000010.safetensors" in fh.name:
                os.kill(os.getpid(), signal.SIGINT)
            real(fh, data)
        ck._write_file = writer
    """,
    # Ctrl-C twice half-way through a checkpoint's tensors: abort at once, the half file is removed
    "twice mid-checkpoint write": """
        import engine.runs.checkpoint as ck
        real = ck._write_file
        def writer(fh, data):
            if ".step-000010.safetensors" in fh.name:
                fh.write(data[: len(data) // 2]); fh.flush()
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            real(fh, data)
        ck._write_file = writer
    """,
}


@pytest.mark.parametrize("moment", CTRL_C)
def test_cli_ctrl_c_at_any_moment(tmp_path, moment):
    from engine.runs.checkpoint import latest_checkpoint, load_model

    res, run = _train_with_hook(tmp_path, CTRL_C[moment])
    assert res.returncode == 130, res.stderr[-3000:]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    if moment == "data preparation":
        assert not run.exists()  # stopped before anything was made
        _no_temporaries(Path(os.environ["SEQPLAY_HOME"]) / "cache")
        assert res.stderr.strip() == "aborted"
        return
    _no_temporaries(run)
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    if moment == "twice mid-checkpoint write":
        assert latest_checkpoint(run).name == "step-000005.json"  # the half-written step 10 is gone
        assert not (run / "checkpoints" / "step-000010.json").exists()
        assert load_model(run).meta["step"] in (5, 10)  # best.json (step 5 or 10) or step 5
        _resumes(run, 12)
        return
    assert res.stderr.strip() == "stopping after this step and saving a checkpoint (Ctrl-C again to abort)"
    assert events[-1]["event"] == "finished" and events[-1]["reason"] == "stopped" and events[-1]["step"] == 10
    assert latest_checkpoint(run).name == "step-000010.json" and load_model(latest_checkpoint(run)).meta["step"] == 10
    _resumes(run, 12)


def _fsize_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past `limit` bytes fail (EFBIG)

    return preexec


def test_cli_disk_full_mid_run_keeps_the_last_checkpoint(tmp_path):
    """A real write failure from the OS: once step 5 is saved, no file may grow past 4 KiB any more."""
    from engine.runs.checkpoint import latest_checkpoint

    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT)
    run = tmp_path / "runs" / "full"
    cmd = [sys.executable, "-m", "seqplay", "train", str(corpus), "--steps", "100000", "--eval-every", "5", *TINY,
           "--runs-dir", str(tmp_path / "runs"), "--run-name", "full"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "step-000005.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            time.sleep(0.05)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (4096, 4096))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    one_line_error(subprocess.CompletedProcess(cmd, proc.returncode, out, err),
                   "no space left for a checkpoint", "free some space", "previous checkpoint is intact")
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and int(ckpt.stem.split("-")[1]) >= 5
    _no_temporaries(run)
    _resumes(run, 12 + int(ckpt.stem.split("-")[1]))


def test_cli_disk_full_from_the_start(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT)
    args = ["train", corpus, "--steps", "5", *TINY, "--runs-dir", tmp_path / "runs", "--run-name", "x"]
    # nothing cached yet: the token cache cannot be written
    one_line_error(seqplay(*args, preexec=_fsize_limit(4096)), "cannot write the data cache", "free some disk space")
    _no_temporaries(Path(os.environ["SEQPLAY_HOME"]) / "cache")
    # data cached: the first checkpoint cannot be written
    assert seqplay("inspect", corpus, "-t", "char").returncode == 0
    one_line_error(seqplay(*args, preexec=_fsize_limit(4096)), "no space left for a checkpoint")
    _no_temporaries(tmp_path / "runs")


def test_cli_sigkill_mid_step_then_resume(tmp_path):
    """`seqplay train` killed with SIGKILL at a random step: the last complete checkpoint loads and
    `seqplay resume` continues from it (the worker-process variant is in tests/test_faults.py)."""
    from engine.runs.checkpoint import latest_checkpoint, load_model

    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT)
    run = tmp_path / "runs" / "k"
    cmd = [sys.executable, "-m", "seqplay", "train", str(corpus), "--steps", "100000", "--eval-every", "5", *TINY,
           "--runs-dir", str(tmp_path / "runs"), "--run-name", "k", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = 0
    for line in proc.stdout:
        if '"event": "steps"' in line:
            seen += 1
            if seen == 30:  # mid-run, between or inside steps
                proc.kill()
                break
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and load_model(ckpt).meta["step"] >= 5
    _no_temporaries(run)
    step = load_model(ckpt).meta["step"]
    res = seqplay("resume", "k", "--runs-dir", tmp_path / "runs", "--steps", step + 3, "--json")
    assert res.returncode == 0, res.stderr
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert events[0]["start_step"] == step and events[-1]["reason"] == "done" and events[-1]["step"] == step + 3


# ---------------------------------------------------------------------------------- untrusted files
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny trained run (4 steps, checkpoints at 2 and 4) that tests copy before breaking it."""
    from engine.training.trainer import Trainer
    from tests.train_helpers import Recorder, tiny_config

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPLAY_HOME", str(root / "home"))
        Trainer(tiny_config(root, steps=4, eval_every=2, run_name="good"), Recorder()).run()
    return root / "runs" / "good"


def _copy_run(trained_run: Path, tmp_path: Path, name: str = "good") -> Path:
    import shutil

    return Path(shutil.copytree(trained_run, tmp_path / "runs" / name))


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: what loading a pickle-based checkpoint would suffer."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _retarget(json_path: Path, data: bytes) -> None:
    """Swap a checkpoint's tensors for ``data`` and make the JSON's hash agree (a careful attacker)."""
    import hashlib

    meta = json.loads(json_path.read_text())
    (json_path.parent / meta["tensors_file"]).write_bytes(data)
    meta["tensors_sha256"] = hashlib.sha256(data).hexdigest()
    json_path.write_text(json.dumps(meta))


def test_no_unpickling_anywhere_in_the_code():
    import re

    bad = re.compile(r"torch\.load\(|pickle\.loads?\(|^\s*import pickle|weights_only\s*=\s*False|allow_pickle\s*=\s*True")
    hits = [f"{p}:{i}" for folder in ("engine", "tui", "seqplay") for p in (REPO / folder).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []


def test_cli_malicious_pickle_never_runs(tmp_path, trained_run):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(str(marker)))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads({payload!r})"], check=True, cwd=REPO)
    assert marker.exists()  # the payload is live: unpickling it runs code
    marker.unlink()
    targets = {}
    for name in ("model.safetensors", "model.pt", "checkpoint.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_bytes(payload)
        targets[name] = folder / name
    run = _copy_run(trained_run, tmp_path)
    for json_path in (run / "checkpoints").glob("*.json"):
        _retarget(json_path, payload)  # every checkpoint of the run now holds the pickle, hashes agree
    targets["run folder"] = run
    for what, target in targets.items():
        line = one_line_error(seqplay("generate", target, "-n", "3"))
        assert "checkpoint" in line or "safetensors" in line, (what, line)
        assert not marker.exists(), what
    for target in (targets["model.pt"], run):
        one_line_error(seqplay("resume", target, "--steps", "6"))
        assert not marker.exists()


def test_cli_absurd_config_json_is_refused_before_allocation(tmp_path, trained_run):
    run = _copy_run(trained_run, tmp_path)
    for json_path in (run / "checkpoints").glob("*.json"):
        meta = json.loads(json_path.read_text())
        meta["model_config"].update(width=60_000, layers=60_000)  # ~10^14 parameters if it were built
        json_path.write_text(json.dumps(meta))
    start = time.monotonic()
    one_line_error(seqplay("generate", run, "-n", "3"), "cannot be built")
    one_line_error(seqplay("resume", run, "--steps", "6"), "GiB", "smaller --width/--layers")  # the memory estimate
    assert json.loads((run / "run.json").read_text())["steps"] == 4  # the failed resume left the summary alone
    assert time.monotonic() - start < 60  # refused from the numbers, not after trying to allocate


def _break(run: Path, how: str) -> None:
    ck = run / "checkpoints"
    if how == "no checkpoints folder":
        import shutil

        shutil.rmtree(ck)
    elif how == "every tensors file truncated":
        for p in ck.glob("*.safetensors"):
            p.write_bytes(p.read_bytes()[:100])
    elif how == "every checkpoint JSON corrupt":
        for p in ck.glob("*.json"):
            p.write_text("{oops")
    elif how == "newest checkpoint truncated":
        newest = sorted(ck.glob("step-*.safetensors"))[-1]
        newest.write_bytes(newest.read_bytes()[:100])
        (ck / "best.json").unlink()
    elif how == "tensors file missing":
        for p in ck.glob("*.safetensors"):
            p.unlink()
    elif how == "run.json and config.json missing":
        (run / "run.json").unlink()
        (run / "config.json").unlink()


@pytest.mark.parametrize("how,usable", [
    ("no checkpoints folder", False), ("every tensors file truncated", False),
    ("every checkpoint JSON corrupt", False), ("tensors file missing", False),
    ("newest checkpoint truncated", True), ("run.json and config.json missing", True),
])
def test_cli_broken_run_folder_is_reported_not_crashed_on(tmp_path, trained_run, how, usable):
    run = _copy_run(trained_run, tmp_path)
    _break(run, how)
    listed = seqplay("runs", "--runs-dir", run.parent, "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    (row,) = [json.loads(x) for x in listed.stdout.splitlines()]
    assert row["problem"], row  # `seqplay runs` names what is wrong
    gen = seqplay("generate", run, "-n", "3", "--prompt", "the ")
    if usable:  # an intact earlier checkpoint is used
        assert gen.returncode == 0 and gen.stdout.startswith("the ") and "Traceback" not in gen.stderr, gen.stderr
    else:
        one_line_error(gen, str(run.name))


@sync
async def test_tui_ctrl_c_and_a_broken_run_folder_do_not_stop_the_app(tmp_path, trained_run):
    """Ctrl-C in the TUI (raw terminal: a key, not a signal) never kills training; a broken run folder
    is listed with its problem, and generating from it is a notification."""
    from engine.runs.folders import runs_root

    root = runs_root()
    import shutil

    shutil.copytree(trained_run, root / "good")
    broken = Path(shutil.copytree(trained_run, root / "broken"))
    _break(broken, "every tensors file truncated")
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await start_training(pilot, app)
        await pilot.press("ctrl+c")
        await pilot.pause(0.3)
        assert app.is_running and app.training_state == "running" and not sent(engine, P.Stop)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.train_job is None, what="stopped")
        runs = app.pane("runs")
        runs.refresh_runs()
        await wait_for(pilot, lambda: {"good", "broken"} <= {r.name for r in runs.runs}, what="runs listed")
        status = {r.name: f"{r.status} {r.problem or ''}" for r in runs.runs}  # the table shows both
        assert "does not match its hash" in status["broken"] and "hash" not in status["good"], status
        assert app.is_running


# ---------------------------------------------------------------------------------------- 1 GB, slow
@pytest.mark.slow
def test_one_gigabyte_file_in_the_tui_data_pane_and_cli_train_streams(tmp_path):
    """The Data pane's scan and `seqplay train --steps 1` on a 1 GiB file: peak RSS of each child stays
    under 1 GiB (reading it whole cost ~26x the file size in the Data pane before it streamed)."""
    big = tmp_path / "big.txt"
    line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
    block = line * ((1 << 20) // len(line) + 1)
    with open(big, "wb") as f:
        while f.tell() < 1 << 30:
            f.write(block)
    probe = (f"import resource; from engine.data.stats import scan_corpus, tokenize_counts; "
             f"s = scan_corpus({str(big)!r}); assert s.chars == {big.stat().st_size}; "
             f"tokenize_counts({str(big)!r}, 'word'); "  # what the Data pane runs (prepare, streamed)
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    res = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) < 1 << 30
    res = seqplay("train", big, "--steps", "1", "--eval-every", "1", "--tokenizer", "byte", *TINY,
                  "--runs-dir", tmp_path / "runs", timeout=1800)
    assert res.returncode == 0, res.stderr
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 < 1 << 30
