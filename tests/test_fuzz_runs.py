"""Issue 14: fuzzing run folders (Hypothesis), not only examples.

Properties, each over a copy of one small trained run:
- checkpoint JSON with any field replaced by a hostile value (or deleted): loading, listing and
  resuming end in success or one ``SeqplayError`` line, never another exception;
- a tensors file whose safetensors header is mutated (dtype, shape, offsets, names, header length),
  hashes and sizes recomputed so it verifies: the same;
- a run folder whose layout is mutated (files deleted, truncated, replaced by links to a file outside,
  FIFOs or folders; checkpoints/ linked elsewhere; junk checkpoints): the same, nothing hangs (each
  call bounded by a timeout) and nothing outside the run folder and the home is written.
The default suite runs a few dozen examples in-process; ``-m slow`` runs many more and drives the CLI
(`seqplay resume`/`generate`/`runs`) in subprocesses: exit code 0 or 2 with one line, no traceback, no
death by a signal.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.errors import SeqplayError  # noqa: E402
from engine.runs.checkpoint import load_model, read_checkpoint  # noqa: E402
from engine.runs.folders import list_runs  # noqa: E402
from engine.training.trainer import Trainer  # noqa: E402
from tests.train_helpers import Recorder, bounded, tiny_config  # noqa: E402

REPO = Path(__file__).parents[1]
FAST = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CLI = settings(max_examples=40, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step LSTM run (carried state, optimizer moments, batcher position: every kind of state),
    its corpus and the home that trained it."""
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPLAY_HOME", str(root / "home"))
        Trainer(tiny_config(root, arch="lstm", steps=4, eval_every=2, run_name="good"), Recorder()).run()
    return root


class Sandbox:
    """A fresh copy of the trained run and its home inside a new folder, with a sentinel file outside
    the run; ``outside_changes`` lists anything written outside the run folder and the home."""

    def __init__(self, trained: Path):
        self.root = Path(tempfile.mkdtemp(prefix="fuzz-", dir=trained))
        self.home = Path(shutil.copytree(trained / "home", self.root / "home"))
        self.run = Path(shutil.copytree(trained / "runs" / "good", self.root / "runs" / "good"))
        self.sentinel = self.root / "outside" / "precious.txt"
        self.sentinel.parent.mkdir()
        self.sentinel.write_text("keep me\n")
        shutil.copy(trained / "tiny.txt", self.root / "outside" / "tiny.txt")
        self.before = self._outside()
        self._home_was = os.environ.get("SEQPLAY_HOME")
        os.environ["SEQPLAY_HOME"] = str(self.home)  # the home that trained the run: its corpus counts as read

    def _outside(self) -> dict[str, tuple[int, int]]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            d = Path(dirpath)
            if d == self.root / "runs" or self.run in (d, *d.parents) or self.home in (d, *d.parents):
                dirnames[:] = []
                continue
            for f in filenames:
                st_ = os.lstat(d / f)
                out[str(d / f)] = (st_.st_size, st_.st_mtime_ns)
        return out

    def outside_changes(self) -> list[str]:
        after = self._outside()
        changed = [k for k in set(self.before) | set(after) if self.before.get(k) != after.get(k)]
        if self.sentinel.read_text() != "keep me\n":
            changed.append("sentinel content")
        return changed

    def close(self) -> None:
        if self._home_was is None:
            os.environ.pop("SEQPLAY_HOME", None)
        else:
            os.environ["SEQPLAY_HOME"] = self._home_was
        for dirpath, dirnames, _ in os.walk(self.root):
            for d in dirnames:
                p = Path(dirpath) / d
                if not p.is_symlink():
                    p.chmod(0o755)
        shutil.rmtree(self.root, ignore_errors=True)


def only_seqplay_errors(out: dict) -> None:
    err = out.get("error")
    assert err is None or isinstance(err, SeqplayError), f"{type(err).__name__}: {err}"
    if err is not None:
        assert "\n" not in str(err) and str(err).strip()


def exercise(box: Sandbox, resume: bool = True) -> None:
    """List, load and (optionally) resume the run: each ends in success or one SeqplayError line."""
    out = bounded(lambda: list_runs(box.run.parent))
    assert "value" in out, out.get("error")
    assert [r.name for r in out["value"]] == ["good"]
    only_seqplay_errors(bounded(lambda: load_model(box.run)))
    if resume:
        rec = Recorder()

        def go():
            return Trainer({}, rec, resume_from=str(box.run), overrides={"steps": 5}, pause_on_error=False).run()

        out = bounded(go, 120)
        assert "error" not in out, f"{type(out['error']).__name__}: {out['error']}"
        fin = out["value"]
        errors = [e.message for e in rec.of("error")]
        if fin.reason == "error":
            assert len(errors) == 1 and "\n" not in errors[0], errors
        else:
            assert fin.reason == "done" and not errors, (fin, errors)
    assert box.outside_changes() == []


# ------------------------------------------------------------------------------------- mutations
HOSTILE = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2**31, 2**63, 2**70, -(2**70), 1e308, -1e308, float("nan"),
                     float("inf"), float("-inf"), 0.5, "", "\x00", "a\x00b", "../../outside/precious.txt",
                     "/dev/zero", "x" * 5000, [], {}, [[[[[]]]]], {"a": {"b": {}}}, [1, 2, 3], "step-000004.json"]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)


def leaf_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaf_paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj and len(obj) < 50:
        for i, v in enumerate(obj):
            yield from leaf_paths(v, (*prefix, i))
    yield prefix


def set_path(obj, path, value):
    if not path:
        return {} if value is DELETE else value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if value is DELETE:
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return obj


DELETE = object()


def newest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*.json"))[-1]


def _meta_paths(trained: Path) -> list[tuple]:
    meta = json.loads(newest(trained / "runs" / "good").read_text())
    return sorted(set(leaf_paths(meta)), key=repr)


def json_mutations(paths: list[tuple], with_config: bool):
    keep = [p for p in paths if with_config or not (p and p[0] in ("train_config",))]
    return st.lists(st.tuples(st.sampled_from(keep), st.one_of(HOSTILE, st.just(DELETE))), min_size=1, max_size=3)


def apply_json(json_path: Path, mutations) -> None:
    meta = json.loads(json_path.read_text())
    for path, value in mutations:
        try:
            meta = set_path(meta, path, value)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier mutation removed or replaced the parent
    json_path.write_text(json.dumps(meta))


def rehash(json_path: Path, data: bytes) -> None:
    meta = json.loads(json_path.read_text())
    (json_path.parent / meta["tensors_file"]).write_bytes(data)
    meta.update(tensors_sha256=hashlib.sha256(data).hexdigest(), tensors_bytes=len(data))
    json_path.write_text(json.dumps(meta))


@st.composite
def header_mutations(draw, names: list[str]):
    """A function that rewrites a safetensors file's header (the rest of the bytes kept)."""
    kind = draw(st.sampled_from(["dtype", "shape", "offsets", "rename", "drop", "length", "junk"]))
    name = draw(st.sampled_from(names))
    dtype = draw(st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "XX", 5, None]))
    shape = draw(st.lists(st.integers(-3, 2**40), max_size=4) | st.sampled_from([[], [0], [1], [2**62, 2**62]]))
    offsets = draw(st.lists(st.integers(-5, 2**40), min_size=0, max_size=3))
    new_name = draw(st.sampled_from(["optim.0.exp_avg", "optim.0.step", "rng.torch", "state.0", "model.bogus",
                                     "state.7", "optim.99.exp_avg", ""]))
    length = draw(st.integers(-1, 2**64 - 1))
    junk = draw(st.binary(max_size=64))

    def mutate(data: bytes) -> bytes:
        n = int.from_bytes(data[:8], "little")
        header, body = json.loads(data[8:8 + n]), data[8 + n:]
        entry = header.get(name)
        if kind == "dtype":
            entry["dtype"] = dtype
        elif kind == "shape":
            entry["shape"] = shape
        elif kind == "offsets":
            entry["data_offsets"] = offsets
        elif kind == "rename":
            header[new_name] = header.pop(name)
        elif kind == "drop":
            header.pop(name)
        raw = json.dumps(header).encode()
        if kind == "length":
            return length.to_bytes(8, "little") + raw + body
        if kind == "junk":
            return data[:8] + junk + data[8 + len(junk):]
        return len(raw).to_bytes(8, "little") + raw + body

    return mutate


def _tensor_names(trained: Path) -> list[str]:
    data = (newest(trained / "runs" / "good").with_suffix(".safetensors")).read_bytes()
    n = int.from_bytes(data[:8], "little")
    return sorted(k for k in json.loads(data[8:8 + n]) if k != "__metadata__")


LAYOUT_OPS = ["delete", "truncate", "link-outside", "link-loop", "fifo", "folder", "empty", "junk-checkpoint",
              "link-checkpoints", "unreadable"]


def layout_ops(box_files: list[str]):
    return st.lists(st.tuples(st.sampled_from(LAYOUT_OPS), st.sampled_from(box_files), st.integers(0, 10_000)),
                    min_size=1, max_size=3)


def _run_files(trained: Path) -> list[str]:
    run = trained / "runs" / "good"
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def apply_layout(box: Sandbox, ops) -> None:
    for op, rel, n in ops:
        p = box.run / rel
        if p.is_symlink() or not p.is_file() or p.parent.is_symlink():
            continue  # made a link, FIFO or folder (or removed, or moved away) by an earlier op: leave it
        if op in ("delete", "link-outside", "link-loop", "fifo", "folder") and p.is_file() and not p.is_symlink():
            p.unlink()
        if op == "truncate" and p.is_file():
            p.write_bytes(p.read_bytes()[: n % max(1, p.stat().st_size)])
        elif op == "link-outside":
            p.symlink_to(box.sentinel)
        elif op == "link-loop":
            p.symlink_to(p.name)
        elif op == "fifo" and hasattr(os, "mkfifo"):
            os.mkfifo(p)
        elif op == "folder":
            p.mkdir()
        elif op == "empty" and p.is_file():
            p.write_bytes(b"")
        elif op == "junk-checkpoint" and not (box.run / "checkpoints").is_symlink():
            (box.run / "checkpoints" / f"step-{900000 + n:06d}.json").write_text(
                json.dumps({"format": "seqplay-checkpoint", "version": 1, "tensors_file": rel.split("/")[-1],
                            "tensors_bytes": n, "tensors_sha256": "0" * 64}))
        elif op == "link-checkpoints" and not (box.run / "checkpoints").is_symlink():
            elsewhere = box.root / "outside" / "ckpts"
            if not elsewhere.exists():
                shutil.move(box.run / "checkpoints", elsewhere)
                (box.run / "checkpoints").symlink_to(elsewhere)
                box.before = box._outside()  # the moved files are the attacker's, not the user's
        elif op == "unreadable" and p.is_file():
            p.chmod(0)


# ------------------------------------------------------------------------------------- properties
def _json_property(trained, mutations, resume: bool) -> None:
    box = Sandbox(trained)
    try:
        apply_json(newest(box.run), mutations)
        apply_json(box.run / "checkpoints" / "best.json", mutations)
        exercise(box, resume=resume)
    finally:
        box.close()


def _header_property(trained, mutate) -> None:
    box = Sandbox(trained)
    try:
        for json_path in (newest(box.run), box.run / "checkpoints" / "best.json"):
            tensors = json_path.parent / json.loads(json_path.read_text())["tensors_file"]
            try:
                rehash(json_path, mutate(tensors.read_bytes()))
            except (KeyError, AttributeError, TypeError, OverflowError):
                return  # the drawn mutation does not apply to this file
        out = bounded(lambda: read_checkpoint(newest(box.run)))
        only_seqplay_errors(out)
        exercise(box)
    finally:
        box.close()


def _layout_property(trained, ops) -> None:
    box = Sandbox(trained)
    try:
        apply_layout(box, ops)
        exercise(box)
    finally:
        box.close()


def test_fuzz_checkpoint_json(trained):
    """In-process: any JSON field but the training settings (those reach torch.set_num_threads, whose
    bounds are checked by TrainConfig.validate: the CLI fuzz below covers them in a subprocess)."""
    @FAST
    @given(json_mutations(_meta_paths(trained), with_config=False))
    def prop(mutations):
        _json_property(trained, mutations, resume=True)

    prop()


def test_fuzz_checkpoint_json_including_settings_load_and_list(trained):
    @FAST
    @given(json_mutations(_meta_paths(trained), with_config=True))
    def prop(mutations):
        _json_property(trained, mutations, resume=False)

    prop()


def test_fuzz_tensor_headers(trained):
    @FAST
    @given(header_mutations(_tensor_names(trained)))
    def prop(mutate):
        _header_property(trained, mutate)

    prop()


def test_fuzz_run_folder_layout(trained):
    @FAST
    @given(layout_ops(_run_files(trained)))
    def prop(ops):
        _layout_property(trained, ops)

    prop()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_long_in_process(trained):
    @LONG
    @given(json_mutations(_meta_paths(trained), with_config=False))
    def json_prop(mutations):
        _json_property(trained, mutations, resume=True)

    @LONG
    @given(header_mutations(_tensor_names(trained)))
    def header_prop(mutate):
        _header_property(trained, mutate)

    @LONG
    @given(layout_ops(_run_files(trained)))
    def layout_prop(ops):
        _layout_property(trained, ops)

    json_prop()
    header_prop()
    layout_prop()


def _cli(box: Sandbox, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQPLAY_HOME": str(box.home), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "seqplay", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180)


def _one_line_or_success(res: subprocess.CompletedProcess) -> None:
    assert res.returncode in (0, 2), (res.returncode, res.stderr[-2000:])  # not a signal, not a crash
    assert "Traceback" not in res.stdout + res.stderr, res.stderr[-3000:]
    if res.returncode == 2:
        errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, res.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_cli_with_hostile_settings(trained):
    """Subprocesses: the training settings too (threads, sizes, paths), through resume, generate and runs."""
    @CLI
    @given(json_mutations([p for p in _meta_paths(trained) if p and p[0] == "train_config"], with_config=True),
           layout_ops(_run_files(trained)) | st.just([]))
    def prop(mutations, ops):
        box = Sandbox(trained)
        try:
            apply_json(newest(box.run), mutations)
            apply_layout(box, ops)
            for args in (["resume", str(box.run), "--steps", "5"], ["generate", str(box.run), "-n", "5"],
                         ["runs", "--runs-dir", str(box.run.parent)]):
                _one_line_or_success(_cli(box, *args))
            assert box.outside_changes() == []
        finally:
            box.close()

    prop()
