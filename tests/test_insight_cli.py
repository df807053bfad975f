"""`seqplay gradients|attention|gates|surprisal|table|memorization --json` on tiny trained runs."""

import json

import pytest

from engine.training.trainer import Trainer
from seqplay.cli import main
from tests.train_helpers import TEXT, tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An n-gram, a tiny LSTM and a tiny Transformer trained for a few steps on one corpus."""
    tmp = tmp_path_factory.mktemp("insight_runs")
    out = {}
    for arch in ("ngram", "lstm", "transformer"):
        cfg = tiny_config(tmp, arch, steps=12, eval_every=6, run_name=f"{arch}-run")
        finished = Trainer(cfg, emit=lambda e: None).run()
        assert finished.reason == "done", finished
        out[arch] = finished.run_dir
    out["runs_dir"] = str(tmp / "runs")
    out["corpus"] = cfg.source
    return out


def run_json(capsys, *args):
    main([*args, "--json"])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_table(runs, capsys):
    data = run_json(capsys, "table", runs["corpus"], "--runs-dir", runs["runs_dir"])
    (group,) = data["groups"]
    rows = {r["arch"]: r for r in group["rows"]}
    assert set(rows) == {"ngram", "lstm", "transformer"}
    assert rows["ngram"]["baseline"] and group["baseline_bpc"] == rows["ngram"]["val_bpc"]
    for arch in ("lstm", "transformer"):
        r = rows[arch]
        assert r["beats_baseline"] == (r["val_bpc"] < group["baseline_bpc"])
        assert r["tokens_seen"] == 12 * 4 * 16 and r["params"] > 0 and r["wall_time"] > 0
    bpcs = [r["val_bpc"] for r in group["rows"]]
    assert bpcs == sorted(bpcs)


def test_attention_and_gates_and_surprisal(runs, capsys):
    att = run_json(capsys, "attention", runs["transformer"], "--prompt", "the cat sat")
    assert att["tokens"] == list("the cat sat") and len(att["layers"]) == 1
    gates = run_json(capsys, "gates", runs["lstm"], "--text", 'the "cat" sat', "--pattern", "quotes", "--top", "2")
    assert set(gates["gates"]) == {"i", "f", "g", "o"} and len(gates["search"]["best"]) == 2
    sur = run_json(capsys, "surprisal", runs["lstm"], runs["ngram"], "--text", TEXT[:80])
    assert sur["analysis"] == "surprisal_diff" and len(sur["diff"]) == 80


def test_gradients_fresh_and_trained(runs, capsys):
    data = run_json(capsys, "gradients", "--source", runs["corpus"], "--arch", "rnn,lstm", "--distance", "20",
                    "--windows", "2", "--seeds", "1", "--width", "16", "--clip", "0.001")
    assert [c["label"] for c in data["curves"]] == ["rnn", "lstm"]
    assert all(c["clip_scale"] < 1 and len(c["norm"]) == 20 for c in data["curves"])
    trained = run_json(capsys, "gradients", runs["lstm"], "--distance", "20", "--windows", "2")
    assert [c["label"] for c in trained["curves"]] == ["lstm trained", "lstm at init"]


def test_memorization_generates_and_checks(runs, capsys):
    data = run_json(capsys, "memorization", runs["lstm"], "--samples", "2", "--tokens", "30")
    assert len(data["samples"]) == 2 and all(len(s["sample"]) > 0 for s in data["samples"])
    planted = run_json(capsys, "memorization", "--corpus", runs["corpus"], "--text", "ZZ" + TEXT[100:160] + "ZZ")
    assert planted["samples"][0]["span"] == TEXT[100:160]


def test_user_errors_are_one_line(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["attention", runs["lstm"], "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Transformer" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["gates", runs["lstm"], "--text", "the cat", "--pattern", "(["])
    assert exc.value.code == 2 and "regular expression" in capsys.readouterr().err


def test_rendered_output(runs, capsys):
    main(["table", runs["corpus"], "--runs-dir", runs["runs_dir"]])
    out = capsys.readouterr().out
    assert "n-gram baseline" in out and "lstm" in out


def test_ui_side_of_insight_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, tui.panes.insight, engine.insight.params, engine.insight.analyses, engine.insight.render, engine.insight.memorization, engine.insight.table\n"
            "print('torch' in sys.modules, 'textual' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"]
    code = "import sys, engine.insight.gradients, engine.insight.render\nprint('textual' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "False", res.stderr
