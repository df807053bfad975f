"""A run whose process died without a goodbye is listed as "interrupted" and can be resumed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from engine.runs.folders import list_runs, process_alive, process_identity
from engine.training.trainer import Trainer
from seqplay.cli import cli
from tests.train_helpers import Recorder, tiny_config


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_running(run_dir, **fields) -> None:
    """Rewrite run.json as a process killed mid-training would have left it."""
    path = run_dir / "run.json"
    summary = json.loads(path.read_text())
    summary.update(status="running", **fields)
    path.write_text(json.dumps(summary))


def test_run_json_records_the_training_process(tmp_path):
    Trainer(tiny_config(tmp_path, steps=2, eval_every=2, run_name="r"), Recorder()).run()
    summary = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())
    assert summary["pid"] == os.getpid() and summary["host"] == socket.gethostname()
    assert summary["status"] == "finished"
    assert process_alive(summary) is True  # this very process


def test_dead_pid_is_listed_as_interrupted_and_resumes(tmp_path):
    Trainer(tiny_config(tmp_path, steps=4, eval_every=4, run_name="killed"), Recorder()).run()
    Trainer(tiny_config(tmp_path, steps=2, eval_every=2, run_name="alive"), Recorder()).run()
    Trainer(tiny_config(tmp_path, steps=2, eval_every=2, run_name="elsewhere"), Recorder()).run()
    runs = tmp_path / "runs"
    fake_running(runs / "killed", pid=dead_pid(), host=socket.gethostname(), pid_started=None)
    fake_running(runs / "alive", **process_identity())
    fake_running(runs / "elsewhere", pid=dead_pid(), host=socket.gethostname() + "-other")  # cannot tell: kept
    rows = {r.name: r for r in list_runs(runs)}
    assert rows["killed"].status == "interrupted" and rows["killed"].problem is None
    assert rows["alive"].status == "running" and rows["elsewhere"].status == "running"
    table = CliRunner().invoke(cli, ["runs", "--runs-dir", str(runs)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "interrupted" in table.output

    result = CliRunner().invoke(cli, ["resume", "killed", "--runs-dir", str(runs), "--steps", "6", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    assert events[0]["start_step"] == 4 and events[-1]["event"] == "finished" and events[-1]["step"] == 6
    assert {r.name: r for r in list_runs(runs)}["killed"].status == "finished"


def test_a_reused_pid_does_not_count_as_alive():
    me = process_identity()
    if me["pid_started"] is None:
        pytest.skip("no /proc here: only the pid can be checked")
    assert process_alive({**me, "pid_started": str(int(me["pid_started"]) + 1)}) is False
    assert process_alive({**me, "pid": True}) is None and process_alive({}) is None
