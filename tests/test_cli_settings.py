"""Architecture-specific settings on the CLI: named flags, ``--set KEY=VALUE``, ``seqplay archs NAME``."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError
from seqplay.commands.train import arch_settings, flag_archs
from tests.train_helpers import corpus
from tests.train_helpers import run_cli as run


def test_named_flags_and_set_pairs_are_typed_against_the_arch_config():
    got = arch_settings("rnn", {"nonlinearity": "relu", "identity_init": True, "residual": None},
                        ("layers=3", "dropout=0.25", "tie-weights=yes"))
    assert got == {"nonlinearity": "relu", "identity_init": True, "layers": 3, "dropout": 0.25, "tie_weights": True}
    assert arch_settings("mlm", {"encoder": "lstm"}, ("mask_prob=0.3",)) == {"encoder": "lstm", "mask_prob": 0.3}
    assert arch_settings("seq2seq", {"bidirectional": False, "cell": "gru"}, ()) == {"bidirectional": False, "cell": "gru"}
    assert flag_archs("order") == ["ngram"] and flag_archs("nonlinearity") == ["rnn"]
    assert set(flag_archs("tie_weights")) == {"rnn", "ugrnn", "gru", "lstm", "transformer"}


@pytest.mark.parametrize("arch, flags, sets, message", [
    ("lstm", {"order": 3}, (), "--order applies to ngram only"),
    ("gru", {"nonlinearity": "relu"}, (), "--nonlinearity applies to rnn only"),
    ("transformer", {"bidirectional": True}, (), "--bidirectional/--unidirectional applies to seq2seq only"),
    ("lstm", {}, ("foo=1",), "lstm has no setting 'foo'"),
    ("lstm", {}, ("cell=gru",), "cell is fixed by --arch"),
    ("lstm", {}, ("nonlinearity=relu",), "lstm has no setting 'nonlinearity'"),  # rnn-only field
    ("rnn", {}, ("layers=two",), "layers must be a positive whole number"),
    ("rnn", {}, ("residual=maybe",), "residual must be true or false"),
    ("ngram", {}, ("order",), "--set takes KEY=VALUE"),
])
def test_flags_an_arch_does_not_have_are_refused(arch, flags, sets, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        arch_settings(arch, flags, sets)


def test_unknown_setting_error_lists_the_arch_settings(capsys, tmp_path):
    code, _, err = run(capsys, "train", corpus(tmp_path), "--arch", "ngram", "--set", "width=3")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: ngram has no setting 'width'") and "order, discount" in err
    code, _, err = run(capsys, "train", corpus(tmp_path), "--arch", "mlm", "--set", "mask_prob=1.5")
    assert code == 2 and "mask-prob must be in (0, 1)" in err


def test_train_applies_order_and_set_to_the_model(capsys, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = run(capsys, "train", corpus(tmp_path), "--arch", "ngram", "--order", "3", "--set", "discount=0.5",
                         "--runs-dir", str(runs), "--run-name", "ng", "--steps", "1", "--json", "--threads", "1")
    assert code == 0, err
    saved = json.loads((runs / "ng" / "config.json").read_text())
    assert saved["model"] == {"order": 3, "discount": 0.5}
    from engine.runs.checkpoint import load_model

    loaded = load_model(str(runs / "ng"))
    assert loaded.model.config.order == 3 and loaded.model.config.discount == 0.5


def test_archs_name_shows_settings_with_their_flags(capsys):
    code, out, _ = run(capsys, "archs", "seq2seq", "--json")
    row = json.loads(out)
    settings = {s["name"]: s for s in row["settings"]}
    assert code == 0 and row["equation"].startswith("h_bar")
    assert {k: settings["attention"][k] for k in ("name", "type", "default", "flag", "choices")} == {
        "name": "attention", "type": "str", "default": "additive", "flag": "--attention",
        "choices": ["none", "additive", "dot", "bilinear"]}
    assert settings["dropout"]["min"] == 0.0 and settings["dropout"]["max"] == 1.0 and settings["dropout"]["help"]
    assert settings["bidirectional"]["type"] == "bool" and "vocab_size" not in settings
    code, out, _ = run(capsys, "archs", "lstm", "--json")
    row = json.loads(out)
    assert row["fixed"] == {"cell": "lstm"} and "cell" not in {s["name"] for s in row["settings"]}
    code, out, _ = run(capsys, "archs", "mlm")
    assert code == 0 and "mask_prob" in out and "--set mask_prob=..." in out
    code, _, err = run(capsys, "archs", "nope")
    assert code == 2 and err.startswith("error: unknown architecture 'nope'")
