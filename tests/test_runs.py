"""Run folders and `seqplay runs`: listing, name lookup, corrupt folders reported not crashed on."""

from __future__ import annotations

import json

from click.testing import CliRunner

from engine.runs.folders import find_run, list_runs
from engine.training.trainer import Trainer
from seqplay.cli import cli
from tests.train_helpers import Recorder, tiny_config


def test_runs_lists_good_and_corrupt_runs(tmp_path):
    Trainer(tiny_config(tmp_path, steps=4, eval_every=4, run_name="good"), Recorder()).run()
    Trainer(tiny_config(tmp_path, steps=4, eval_every=4, run_name="tampered"), Recorder()).run()
    runs = tmp_path / "runs"
    (runs / "empty").mkdir()  # no run.json at all
    newest = sorted((runs / "tampered" / "checkpoints").glob("step-*.safetensors"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated tensors
    (runs / "badjson").mkdir()
    (runs / "badjson" / "run.json").write_text("{oops")
    rows = {r.name: r for r in list_runs(runs)}
    assert rows["good"].problem is None and rows["good"].steps == 4 and rows["good"].arch == "transformer"
    assert rows["good"].best_val_loss is not None
    assert "does not match its hash" in rows["tampered"].problem
    assert rows["empty"].problem == "run.json missing"
    assert rows["badjson"].problem == "run.json unreadable (not valid JSON)"
    result = CliRunner().invoke(cli, ["runs", "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0
    listed = {d["name"]: d for d in map(json.loads, result.output.splitlines())}
    assert set(listed) == {"good", "tampered", "empty", "badjson"}
    table = CliRunner().invoke(cli, ["runs", "--runs-dir", str(runs)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "corrupt: run.json missing" in table.output


def test_find_run_by_name_and_prefix(tmp_path):
    Trainer(tiny_config(tmp_path, steps=2, eval_every=2, run_name="alpha-run"), Recorder()).run()
    runs = tmp_path / "runs"
    assert find_run("alpha-run", runs) == runs / "alpha-run"
    assert find_run("alpha", runs) == runs / "alpha-run"


def test_resume_command_continues_a_run(tmp_path):
    Trainer(tiny_config(tmp_path, steps=4, eval_every=4, run_name="r1"), Recorder()).run()
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["resume", "r1", "--runs-dir", str(runs), "--steps", "6", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert events[0]["event"] == "started" and events[0]["start_step"] == 4
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 6
