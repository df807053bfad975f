"""Issue 14 class 4 (part) and issue 12: one run listing that survives any single bad run, one home
folder, and engine/runs as one package without an import circle."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import SeqplayError
from engine.runs.folders import list_runs
from engine.runs.paths import home_dir
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, tiny_config

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("listing")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPLAY_HOME", str(root / "home"))
        Trainer(tiny_config(root, steps=4, eval_every=2, run_name="good"), Recorder()).run()
    return root / "runs" / "good"


def _drop_privileges() -> None:
    """Root reads every file: drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (take effect at exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


def seqplay(*args, env: dict | None = None, preexec=None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250", **(env or {})}
    return subprocess.run([sys.executable, "-m", "seqplay", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def _summary(run: Path, **fields) -> None:
    data = json.loads((run / "run.json").read_text())
    data.update(fields)
    (run / "run.json").write_text(json.dumps(data))


BREAKAGES = {
    "nul-in-name": lambda run: _summary(run, arch="trans\x00former", source="a\x00b\x1b[31m"),
    "nul-in-tensors-file": lambda run: [p.write_text(p.read_text().replace('.safetensors"', '\\u0000.safetensors"'))
                                        for p in (run / "checkpoints").glob("*.json")],
    "json-100000-deep": lambda run: (run / "run.json").write_text("[" * 100_000 + "]" * 100_000),
    "checkpoint-json-100000-deep": lambda run: [p.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
                                                for p in (run / "checkpoints").glob("*.json")],
    "absurd-timestamp": lambda run: _summary(run, created=1e300, updated=-1e308),
    "timestamp-not-a-number": lambda run: _summary(run, created="yesterday", updated=[1]),
    "unreadable-run-json": lambda run: (run / "run.json").chmod(0),
    "unreadable-checkpoints": lambda run: (run / "checkpoints").chmod(0),
    "run-json-is-a-fifo": lambda run: ((run / "run.json").unlink(), os.mkfifo(run / "run.json")),
    "run-json-links-outside": lambda run: ((run / "run.json").unlink(), (run / "run.json").symlink_to("/etc/passwd")),
    "checkpoints-is-a-link": lambda run: (shutil.move(run / "checkpoints", run.parents[1] / "elsewhere"),
                                          (run / "checkpoints").symlink_to(run.parents[1] / "elsewhere")),
    "huge-numbers": lambda run: _summary(run, steps=1e308, params=-3, best_val_loss="x"),
}


@pytest.mark.parametrize("how", list(BREAKAGES))
def test_a_listing_survives_any_single_bad_run_and_names_it(tmp_path, trained, how):
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "good")
    bad = Path(shutil.copytree(trained, runs / "bad"))
    BREAKAGES[how](bad)
    res = seqplay("runs", "--runs-dir", runs, "--json", preexec=_drop_privileges)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    rows = {r["name"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert set(rows) == {"good", "bad"}
    assert rows["good"]["problem"] is None and rows["good"]["steps"] == 4
    if how not in ("nul-in-name", "huge-numbers"):  # those two are shown, sanitised, not broken
        assert rows["bad"]["problem"], rows["bad"]
    assert "\x00" not in res.stdout.replace("\\u0000", "\x00") or how == "nul-in-tensors-file"
    table = seqplay("runs", "--runs-dir", runs, preexec=_drop_privileges)
    assert table.returncode == 0 and "Traceback" not in table.stderr and "good" in table.stdout, table.stderr[-3000:]
    for p in (bad, bad / "checkpoints"):
        if p.exists() and not p.is_symlink():
            p.chmod(0o755)


def test_control_characters_are_shown_not_sent_to_the_terminal(tmp_path, trained):
    runs = tmp_path / "runs"
    bad = Path(shutil.copytree(trained, runs / "bad"))
    BREAKAGES["nul-in-name"](bad)
    row = list_runs(runs)[0]
    assert row.arch == "trans?former" and "\x1b" not in row.source


def test_the_listing_has_what_the_runs_pane_shows(trained):
    row = {r.name: r for r in list_runs(trained.parent)}["good"]
    summary = json.loads((trained / "run.json").read_text())
    newest = sorted((trained / "checkpoints").glob("step-*.json"))[-1]
    meta = json.loads(newest.read_text())
    assert row.problem is None and row.arch == "transformer" and row.steps == 4 and row.params == summary["params"]
    assert row.tokens_seen == meta["tokens_seen"] > 0
    assert row.final_lr == meta["optimizer"]["param_groups"][0]["lr"] > 0
    assert row.wall_time == summary["wall_time"] > 0
    assert row.size == sum(p.stat().st_size for p in trained.rglob("*") if p.is_file() and not p.is_symlink())
    assert row.checkpoints == len(list((trained / "checkpoints").glob("step-*.json")))
    assert row.tokenizer == "char" and row.device == "cpu" and row.status == "finished"


def test_listing_is_torch_free(trained):
    code = (f"import sys; from engine.runs.folders import list_runs; rows = list_runs({str(trained.parent)!r}); "
            "assert rows and rows[0].problem is None; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


# --------------------------------------------------------------------------------- unusable home
@pytest.mark.parametrize("case", ["under-a-file", "is-a-file", "read-only"])
def test_an_unusable_home_is_one_line(tmp_path, case):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    home = {"under-a-file": blocker / "home", "is-a-file": blocker, "read-only": tmp_path / "ro"}[case]
    if case == "read-only":
        home.mkdir()
        home.chmod(0o555)
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200)
    for args in (["train", corpus, "--steps", "1", "--threads", "1"], ["runs"]):
        res = seqplay(*args, env={"SEQPLAY_HOME": str(home)}, preexec=_drop_privileges)
        if args == ["runs"] and case == "read-only":  # listing an empty read-only home is fine
            assert res.returncode == 0 and "no runs" in res.stdout, res.stderr
            continue
        assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr[-3000:])
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(home) in lines[0], lines
    home.chmod(0o755) if home.is_dir() else None


def test_home_dir_refuses_a_file(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("SEQPLAY_HOME", str(tmp_path / "f" / "home"))
    with pytest.raises(SeqplayError, match="under a file"):
        home_dir()


# ----------------------------------------------------------------------------- one package, one owner
def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_engine_runs_has_no_import_circle():
    pkg = REPO / "engine" / "runs"
    graph = {f"engine.runs.{p.stem}": {m for m in _imports(p) if m.startswith("engine.runs.")}
             for p in pkg.glob("*.py") if p.stem != "__init__"}
    assert "engine.runs.folders" not in graph["engine.runs.checkpoint"]

    def visit(node, stack):
        assert node not in stack, f"import circle: {' -> '.join([*stack, node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, [*stack, node])

    for node in graph:
        visit(node, [])


def test_the_home_folder_is_computed_in_one_place():
    hits = [str(p.relative_to(REPO)) for folder in ("engine", "seqplay") for p in (REPO / folder).rglob("*.py")
            if "platformdirs" in p.read_text() or "SEQPLAY_HOME\")" in p.read_text()]
    assert hits == ["engine/runs/paths.py"], hits
