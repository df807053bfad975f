"""The experiment card (one portable folder) and replay from it, step by step."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from engine.errors import CheckpointError, DataError
from engine.runs.card import read_card, replay, write_card
from engine.training.trainer import Trainer
from tests.train_helpers import TEXT, Recorder, run_cli, tiny_config


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    cfg = tiny_config(tmp, steps=20, eval_every=10, sample_every=10, sample_tokens=20)
    fin = Trainer(cfg, Recorder()).run()
    return write_card(fin.run_dir, out=tmp / "card", sample_tokens=30)


def copy_card(card_dir, tmp_path):
    return shutil.copytree(card_dir, tmp_path / "card")


def test_card_records_data_settings_machine_and_curves(card_dir):
    card = read_card(card_dir)
    assert card["data"]["sha256"] == hashlib.sha256(TEXT.encode()).hexdigest() and card["data"]["chars"] == len(TEXT)
    vocab = json.loads((card_dir / "tokenizer.json").read_text())
    assert vocab["kind"] == "char" and sorted(vocab["chars"]) == sorted(set(TEXT))
    assert card["tokenizer"]["vocab_size"] == len(set(TEXT)) + 1
    assert card["train_config"]["steps"] == 20 and card["train_config"]["batch_size"] == 4 and card["seeds"]["training"] == 1337
    assert card["model_config"]["width"] == 32 and card["arch"] == "transformer"
    env = card["training_environment"]
    assert env["threads"] == 1 and env["device"] == "cpu" and env["torch"] == card["libraries"]["torch"]
    curves = json.loads((card_dir / "curves.json").read_text())
    assert [r["step"] for r in curves["train"]] == list(range(1, 21)) and [r["step"] for r in curves["eval"]] == [10, 20]
    rows = list(csv.DictReader(open(card_dir / "train.csv")))
    assert len(rows) == 20 and float(rows[4]["loss"]) == curves["train"][4]["loss"]
    for name in ("loss.svg", "lr.svg"):
        svg = ET.parse(card_dir / name).getroot()
        lines = [e for e in svg.iter() if e.tag.endswith("polyline")]
        assert lines and len(lines[0].get("points").split()) >= 20


def test_card_samples_are_fixed_seed_and_carry_their_settings(card_dir, tmp_path):
    samples = json.loads((card_dir / "samples.json").read_text())
    assert [s["step"] for s in samples["training"]] == [10, 20]
    final = samples["final"]
    assert [s["settings"]["seed"] for s in final] == [0, 1, 2] and all(s["settings"]["max_tokens"] == 30 for s in final)
    assert read_card(card_dir)["sampler"] == final[0]["settings"]
    run = read_card(card_dir)["run"]
    again = write_card(card_dir.parent / "runs" / run, out=tmp_path / "again", sample_tokens=30)
    assert json.loads((again / "samples.json").read_text())["final"] == final


def test_replay_matches_step_for_step(card_dir, tmp_path):
    rows = []
    report = replay(card_dir, runs_dir=str(tmp_path / "runs"), on_row=rows.append)
    assert report.mode == "exact" and report.matched and report.max_diff == 0.0
    assert [r.step for r in rows if r.what == "train"] == list(range(1, 21))
    assert [r.step for r in rows if r.what == "eval"] == [10, 20]


def test_replay_reports_the_step_where_the_curve_differs(capsys, card_dir, tmp_path):
    card = copy_card(card_dir, tmp_path)
    curves = json.loads((card / "curves.json").read_text())
    curves["train"][6]["loss"] += 1e-6  # step 7
    (card / "curves.json").write_text(json.dumps(curves))
    code, out, _ = run_cli(capsys, "replay", str(card), "--steps", "9", "--json", "--runs-dir", str(tmp_path / "runs"))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and lines[-1]["first_mismatch"]["step"] == 7 and lines[-1]["compared"] == 9
    assert [p["step"] for p in lines[:-1] if not p["match"]] == [7]


def test_other_machine_kind_uses_the_stated_tolerance(card_dir, tmp_path):
    card = copy_card(card_dir, tmp_path)
    data = json.loads((card / "card.json").read_text())
    data["training_environment"]["cpu"] = "another CPU"
    (card / "card.json").write_text(json.dumps(data))
    report = replay(card, runs_dir=str(tmp_path / "runs"), steps=4)
    assert report.mode == "tolerance" and "another CPU" in report.why and report.tolerance == 0.01
    assert report.matched and len(report.rows) == 4


def test_replay_refuses_other_data_and_takes_a_moved_corpus(capsys, card_dir, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(TEXT.replace("cat", "cow"))
    code, _, err = run_cli(capsys, "replay", str(card_dir), "--corpus", str(other))
    assert code == 2 and err.startswith("error: ") and "not the card's data" in err and len(err.strip().splitlines()) == 1
    moved = tmp_path / "moved.txt"
    moved.write_text(TEXT)
    report = replay(card_dir, corpus=str(moved), runs_dir=str(tmp_path / "runs"), steps=3)
    assert report.matched and report.mode == "exact"


def test_not_a_card_is_one_line(capsys, tmp_path):
    (tmp_path / "card.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a seqplay experiment card"):
        read_card(tmp_path)
    code, _, err = run_cli(capsys, "replay", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err


def test_card_needs_readable_data(tmp_path):
    fin = Trainer(tiny_config(tmp_path, steps=2, eval_every=2), Recorder()).run()
    (tmp_path / "tiny.txt").unlink()
    with pytest.raises(DataError, match="--corpus"):
        write_card(fin.run_dir)
