"""Every number has bounds (issue 14, classes 4 and 5): an absurd, negative, NaN or infinite value is
one ``error:`` line with exit code 2, never a traceback, a native crash or a hang; nothing is made.

Most cases run in-process through ``seqplay.cli.main`` (fast); one batch runs the real console entry
point in child processes, for the cases that used to crash the interpreter or hang."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqplay.cli import main
from tests.train_helpers import Recorder, tiny_config

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2, (args, out[-2000:], err[-2000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out + err, (args, err)
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny char-level transformer run (4 steps) that the generate/resume/attention cases use."""
    from engine.training.trainer import Trainer

    root = tmp_path_factory.mktemp("bounds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPLAY_HOME", str(root / "home"))
        Trainer(tiny_config(root, steps=4, eval_every=2, run_name="tf"), Recorder()).run()
    return {"tf": root / "runs" / "tf"}


TRAIN = [  # extra flags for `seqplay train grammar`, words the one line must hold
    (["--seed", "-1"], "seed must be a whole number from 0 to 4294967295, got -1"),
    (["--seed", str(2**70)], f"got {2**70}"),
    (["--threads", "1000000"], "threads must be a positive whole number up to 1024"),
    (["--tokenizer", "bpe", "--vocab-size", "1000000000"], "vocab-size must be a whole number from 2 to 1000000"),
    (["--grad-accum", "1000000000"], "grad-accum must be a positive whole number up to 1024"),
    (["--time", "nan"], "time-budget (--time) must be in (0, 10000000]"),
    (["--time", "inf"], "time-budget (--time) must be in (0, 10000000]"),
    (["--time", "0"], "time-budget (--time) must be in (0, 10000000]"),
    (["--steps", "0"], "steps must be a positive whole number"),
    (["--steps", "-3"], "steps must be a positive whole number"),
    (["--lr", "nan"], "lr (learning rate) must be positive and finite"),
    (["--lr", "inf"], "lr (learning rate) must be positive and finite"),
    (["--weight-decay", "nan"], "weight-decay must be >= 0 and finite"),
    (["--weight-decay", "inf"], "weight-decay must be >= 0 and finite"),
    (["--clip", "nan"], "clip must be positive and finite"),
    (["--clip", "inf"], "clip must be positive and finite"),
    (["--clip", "-1"], "clip must be positive and finite"),
    (["--momentum", "nan"], "momentum must be in [0, 1)"),
    (["--min-lr-ratio", "2"], "min-lr-ratio must be in [0, 1]"),
    (["--dropout", "inf"], "dropout must be in [0, 1)"),
    (["--val-fraction", "nan"], "val-fraction must be in (0, 0.9)"),
    (["--batch-size", "99999999999"], "batch-size must be a positive whole number up to 1048576"),
    (["--nproc", "100000"], "nproc must be a positive whole number up to 256"),
    (["--eval-every", "0"], "eval-every must be a positive whole number"),
    (["--checkpoint-every", "0"], "checkpoint-every must be a positive whole number"),
    (["--device", "gpu"], "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["--arch", "lstm", "--set", "forget_bias=nan"], "forget-bias must be in [-100, 100]"),
    (["--arch", "ngram", "--order", "1000"], "order must be a positive whole number up to 64"),
]


def test_train_refuses_every_unbounded_number_in_one_line(capsys, tmp_path):
    os.environ["SEQPLAY_HOME"] = str(tmp_path / "home")
    for args, words in TRAIN:
        line = one_line(capsys, "train", "grammar", "--threads", "1", *args)
        assert words in line, (args, line)
    assert not (tmp_path / "home" / "runs").exists()  # nothing was made


@pytest.mark.parametrize("spec, words", [
    ("copy:distance=1000000", "copy:distance=1000000 is too big; use at most 10000"),
    ("copy:n=10000000,distance=10000", "over the limit of 100,000,000"),
    ("grammar:size=1000000000", "grammar:size=1000000000 is too big"),
    ("grammar:depth=100000", "grammar:depth=100000 is too big; use at most 20"),
    ("copy:seed=-1", "copy:seed=-1 is too small; use at least 0"),
])
def test_corpus_parameters_have_a_size_cap(capsys, spec, words):
    assert words in one_line(capsys, "train", spec, "--threads", "1")
    assert words in one_line(capsys, "inspect", spec)


GENERATE = [
    (["-n", "0"], "max-tokens must be a positive whole number"),
    (["--seed", "-1"], "seed must be a whole number from 0 to 4294967295"),
    (["--seed", str(2**70)], "seed must be a whole number from 0 to 4294967295"),
    (["--threads", "1000000"], "threads must be a positive whole number up to 1024"),
    (["--length-penalty", "-inf"], "length-penalty must be a finite number, got -inf"),
    (["--length-penalty", "nan"], "length-penalty must be a finite number, got nan"),
    (["--presence-penalty", "inf"], "presence-penalty must be in [-2, 2], got inf"),
    (["--frequency-penalty", "nan"], "frequency-penalty must be in [-2, 2], got nan"),
    (["--temperature", "nan"], "temperature must be >= 0 and finite"),
    (["--top-p", "nan"], "top-p must be in (0, 1]"),
    (["--repetition-penalty", "inf"], "repetition-penalty must be positive and finite"),
    (["--beams", "1000000000"], "beams must be a positive whole number up to 1024"),
    (["--device", "tpu"], "device must be auto, cpu, cuda, cuda:N or mps"),
]


def test_generate_refuses_every_unbounded_number_in_one_line(capsys, runs):
    for args, words in GENERATE:
        line = one_line(capsys, "generate", runs["tf"], *args)
        assert words in line, (args, line)


def test_generate_on_a_device_that_is_not_there_is_one_line(capsys, runs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert "no CUDA GPU is available; use --device cpu or auto" in one_line(capsys, "generate", runs["tf"], "--device", "cuda")


def test_resume_refuses_a_saved_config_out_of_bounds(capsys, runs, tmp_path):
    run_dir = tmp_path / "tf"
    shutil.copytree(runs["tf"], run_dir)
    before = (run_dir / "run.json").read_text()
    for meta_path in (run_dir / "checkpoints").glob("*.json"):
        meta = json.loads(meta_path.read_text())
        meta["train_config"]["threads"] = 1_000_000  # a hostile run folder: torch crashed creating these
        meta_path.write_text(json.dumps(meta))
    line = one_line(capsys, "resume", run_dir, "--steps", "6")
    assert "a saved setting is refused: threads must be a positive whole number up to 1024" in line
    assert "got 1000000" in line
    assert (run_dir / "run.json").read_text() == before


def test_threads_are_capped_at_the_cores():
    from engine.device import choose_threads, usable_cores

    assert choose_threads(1) == 1
    assert choose_threads(1024) == usable_cores()


def test_out_of_range_layer_and_head_name_the_valid_range(capsys, runs):
    assert "layer 5 does not exist; this model has layers 0..0" in one_line(capsys, "attention", runs["tf"], "--layer", "5")
    assert "head 7 does not exist; this model has heads 0..1" in one_line(capsys, "attention", runs["tf"], "--head", "7")
    code, out, err = run(capsys, "attention", runs["tf"], "--layer", "-1", "--head", "1", "--prompt", "the cat")
    assert code == 0 and "layer 0 head 1" in out


def test_characters_outside_the_vocabulary_are_counted(capsys, runs):
    code, out, err = run(capsys, "generate", runs["tf"], "-n", "2", "--seed", "1", "--prompt", "the é€ cat")
    assert code == 0
    assert "warning: 2 characters of the prompt are not in the model's vocabulary and became <unk>" in err
    code, out, err = run(capsys, "generate", runs["tf"], "-n", "2", "--seed", "1", "--prompt", "the cat")
    assert code == 0 and "<unk>" not in err
    code, out, err = run(capsys, "surprisal", runs["tf"], "--text", "ZZZ the cat", "--json")
    assert code == 0 and "warning: 3 characters of the text are not in the model's vocabulary" in err


def test_train_has_the_val_fraction_flag_the_errors_advise(capsys, tmp_path):
    from tests.train_helpers import corpus

    runs_dir = tmp_path / "runs"
    code, out, err = run(capsys, "train", corpus(tmp_path), "--arch", "ngram", "--order", "2", "--val-fraction", "0.3",
                         "--steps", "1", "--runs-dir", runs_dir, "--run-name", "vf", "--json", "--threads", "1")
    assert code == 0, err
    assert json.loads((runs_dir / "vf" / "config.json").read_text())["val_fraction"] == 0.3


@pytest.mark.parametrize("argv, words", [
    (["trian"], "no such command 'trian'; did you mean 'train'?"),
    (["geenrate", "run"], "no such command 'geenrate'; did you mean 'generate'?"),
    (["nosuchcommand", "--help"], "no such command, file or corpus 'nosuchcommand'"),
    (["--device", "gpu"], "device must be auto, cpu, cuda, cuda:N or mps"),
])
def test_a_mistyped_command_is_one_line_not_the_app(capsys, argv, words, monkeypatch):
    import tui.app

    def no_app(**kw):
        raise AssertionError("the full-screen app was opened")

    monkeypatch.setattr(tui.app, "run_app", no_app)
    assert words in one_line(capsys, *argv)


def test_the_worst_cases_in_real_processes(tmp_path):
    """The cases that crashed (segfault, Rust abort) or hung: exit code 2, one line, within seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEQPLAY_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    cases = [
        ["train", "grammar", "--threads", "1000000"],
        ["train", "grammar", "--tokenizer", "bpe", "--vocab-size", "1000000000"],
        ["train", "grammar", "--grad-accum", "1000000000"],
        ["train", "grammar", "--time", "nan"],
        ["train", "copy:distance=1000000"],
        ["trian"],
        ["nosuchcommand", "--help"],
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "seqplay", *c], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in cases]
    for case, proc in zip(cases, procs):
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (case, out, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out + err, (case, err)
    assert not (tmp_path / "home" / "runs").exists()


# ------------------------------------------------------------------------------------------ fuzzing
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.errors import ConfigError, SeqplayError  # noqa: E402
from engine.generation.settings import SamplingSettings  # noqa: E402
from engine.models.registry import ARCHS  # noqa: E402
from engine.settings import settings_of  # noqa: E402
from engine.training.config import TrainConfig  # noqa: E402

NUMERIC = [(cls, s) for cls in (TrainConfig, SamplingSettings, *{i.config_cls for i in ARCHS.values()})
           for s in settings_of(cls) if s.kind in (int, float)]
ANY_NUMBER = st.one_of(st.integers(-(2**80), 2**80), st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63, 2**64]), st.booleans(), st.none(), st.text(max_size=5))


def _fuzz(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))


def _number_property(pick, value):
    import math

    cls, s = pick
    try:
        got = s.check(value)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith(s.subject)
        return
    if got is None:
        assert s.optional
        return
    assert isinstance(got, int | float) and not isinstance(got, bool) and math.isfinite(got)
    assert (s.lo is None or got >= s.lo) and (s.hi is None or got <= s.hi)


TRAIN_NUMBERS = [s for s in settings_of(TrainConfig) if s.kind in (int, float)]
NUMBER_TEXT = st.one_of(st.integers(-(2**80), 2**80).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["nan", "-inf", "inf", "1e309", "0", "-0", "0x10", "", " 3 ", "1_000"]),
                        st.text(max_size=6))


def _cli_property(s, text):
    """`seqplay train grammar --FLAG TEXT`: exit 2 with one line, or a config that validates (the job
    itself is replaced: nothing trains)."""
    import contextlib
    import io

    import seqplay.commands.train as train_cmd

    started: list = []
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_cmd, "_run_job", lambda config, *a: started.append(config) or 0)
        import types

        fake = types.SimpleNamespace(train_ids=range(20_000), val_ids=range(2_000), tokenizer=types.SimpleNamespace(vocab_size=60))
        mp.setattr("engine.data.sources.prepare", lambda *a, **k: fake)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["train", "grammar", s.cli_flag, text])
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0)
            except SeqplayError as e:  # pragma: no cover - main prints these itself
                raise AssertionError(f"uncaught {e}") from None
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        assert len(started) == 1 and started[0].validate() is started[0]
    else:
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (s.name, text, err.getvalue())


_numbers = given(pick=st.sampled_from(NUMERIC), value=ANY_NUMBER)
_cli = given(s=st.sampled_from(TRAIN_NUMBERS), text=NUMBER_TEXT)
test_fuzz_every_number_is_in_bounds_or_refused_in_one_line = _fuzz(300)(_numbers(_number_property))
test_fuzz_train_numbers_on_the_cli_run_or_refuse_in_one_line = _fuzz(150)(_cli(_cli_property))
test_fuzz_numbers_longer = pytest.mark.slow(_fuzz(20_000)(_numbers(_number_property)))
test_fuzz_cli_longer = pytest.mark.slow(_fuzz(3_000)(_cli(_cli_property)))


@pytest.mark.parametrize("argv, words", [
    (["archs", "--vocab", "0"], "vocab must be a positive whole number up to 10000000, got 0"),
    (["generate"], "Missing argument 'RUN'; see `seqplay generate --help`"),
    (["generate", "x", "--window", "nope"], "'nope' is not one of 'exact', 'slide'; see `seqplay generate --help`"),
    (["train", "--bogus"], "No such option '--bogus'"),
])
def test_click_usage_errors_are_one_line_too(capsys, argv, words):
    assert words in one_line(capsys, *argv)
