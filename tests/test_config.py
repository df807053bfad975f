"""Settings described once: every config field carries its metadata, and the CLI, a JSON config and
``validate()`` refuse the same values with the same one-line message."""

import json
import math

import pytest

from engine.errors import ConfigError
from engine.generation.settings import SamplingSettings
from engine.models.registry import ARCHS, TransformerConfig, make_config, model_settings
from engine.settings import settings_of
from engine.training.config import TrainConfig
from seqplay.cli import main


def cli_error(capsys, *args: str) -> str:
    """The one stderr line of a refused `seqplay ...` (exit code 2), without its ``error: ``."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err[len("error: "):].strip()


def refused(make) -> str:
    with pytest.raises(ConfigError) as err:
        make()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_round_trip_of_every_default_config():
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    for info in ARCHS.values():
        cfg = info.make_config(65)
        assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_every_field_carries_help_and_numbers_carry_bounds():
    classes = [TrainConfig, SamplingSettings, *{info.config_cls for info in ARCHS.values()}]
    for cls in classes:
        for s in settings_of(cls):
            if cls is SamplingSettings and s.name in ("logit_bias", "banned", "order", "stop"):
                continue  # lists and maps: checked by validate() itself
            assert s.help, (cls.__name__, s.name)
            if s.kind in (int, float) and s.name not in ("forget_bias",):
                assert s.lo is not None, (cls.__name__, s.name)


def test_validate_refuses_what_the_cli_used_to_refuse_alone():
    message = refused(lambda: TrainConfig(warmup=-5, weight_decay=-1, checkpoint_every=0).validate())
    assert message.startswith("warmup must be a whole number from 0")
    assert "weight-decay must be >= 0" in refused(lambda: TrainConfig(weight_decay=-1).validate())
    assert "checkpoint-every must be a positive whole number" in refused(lambda: TrainConfig(checkpoint_every=0).validate())


@pytest.mark.parametrize("data, words", [
    ({"width": "abc"}, "width must be a positive whole number up to 65536, got 'abc'"),
    ({"layers": True}, "layers must be a positive whole number up to 65536, got True"),
    ({"heads": 2.5}, "heads must be a positive whole number up to 65536, got 2.5"),
    ({"tie_weights": "yes"}, "tie-weights must be true or false, got 'yes'"),
    ({"bogus": 1}, "unknown TransformerConfig setting(s) bogus"),
])
def test_model_config_refuses_wrong_types_and_unknown_names(data, words):
    assert words in refused(lambda: TransformerConfig.from_dict(data))


def test_train_config_refuses_wrong_types_but_takes_ints_for_floats():
    assert TrainConfig.from_dict({"lr": 1, "clip": None}).lr == 1
    assert refused(lambda: TrainConfig.from_dict({"lr": "x"})).startswith("lr (learning rate) must be positive and finite")
    assert "must be a JSON object" in refused(lambda: TrainConfig.from_dict(["lr", 1]))


# flag, text on the command line, config field, the value a JSON config holds, words of the message
SAME = [
    ("--weight-decay", "-1", "weight_decay", -1, "weight-decay must be >= 0 and finite (or leave it out: 0.1 for AdamW), got -1"),
    ("--weight-decay", "nan", "weight_decay", math.nan, "weight-decay must be >= 0 and finite (or leave it out: 0.1 for AdamW), got nan"),
    ("--lr", "inf", "lr", math.inf, "lr (learning rate) must be positive and finite"),
    ("--clip", "nan", "clip", math.nan, "clip must be positive and finite"),
    ("--seed", "-1", "seed", -1, "seed must be a whole number from 0 to 4294967295, got -1"),
    ("--seed", str(2**70), "seed", 2**70, f"got {2**70}"),
    ("--threads", "1000000", "threads", 1_000_000, "threads must be a positive whole number up to 1024"),
    ("--vocab-size", "1000000000", "vocab_size", 10**9, "vocab-size must be a whole number from 2 to 1000000"),
    ("--grad-accum", "1000000000", "grad_accum", 10**9, "grad-accum must be a positive whole number up to 1024"),
    ("--steps", "0", "steps", 0, "steps must be a positive whole number up to 1000000000 (or leave it out: no step limit)"),
    ("--time", "nan", "time_budget", math.nan, "time-budget (--time) must be in (0, 10000000]"),
    ("--time", "0", "time_budget", 0, "time-budget (--time) must be in (0, 10000000]"),
    ("--warmup", "-5", "warmup", -5, "warmup must be a whole number from 0"),
    ("--val-fraction", "0.95", "val_fraction", 0.95, "val-fraction must be in (0, 0.9)"),
    ("--batch-size", "x", "batch_size", "x", "batch-size must be a positive whole number"),
]


@pytest.mark.parametrize("flag, text, name, value, words", SAME, ids=[f"{f} {t}" for f, t, *_ in SAME])
def test_cli_json_and_validate_refuse_with_the_same_message(capsys, flag, text, name, value, words):
    from_cli = cli_error(capsys, "train", "grammar", flag, text)
    from_json = refused(lambda: TrainConfig.from_dict(json.loads(json.dumps({name: value}))).validate())
    from_validate = refused(lambda: TrainConfig(**{name: value}).validate())
    assert words in from_validate
    assert from_cli == from_json == from_validate


def test_model_settings_refuse_the_same_on_the_cli_and_in_json(capsys):
    from_cli = cli_error(capsys, "train", "grammar", "--arch", "mlm", "--set", "mask_prob=1.5")
    from_json = refused(lambda: make_config("mlm", 65, **json.loads('{"mask_prob": 1.5}')).validate())
    assert from_cli == from_json and from_cli.startswith("mask-prob must be in (0, 1), got 1.5")
    from_cli = cli_error(capsys, "train", "grammar", "--arch", "rnn", "--dropout", "nan")
    assert from_cli == refused(lambda: make_config("rnn", 65, dropout=math.nan).validate())
    for arch in ("transformer", "lstm"):  # a shared flag is parsed by the chosen arch's own setting
        for text, value in (("0", 0), ("two", "two")):
            from_cli = cli_error(capsys, "train", "grammar", "--arch", arch, "--layers", text)
            from_json = refused(lambda arch=arch, value=value: ARCHS[arch].config_cls.from_dict(
                {"layers": value}).validate())
            assert from_cli == from_json, (arch, text)


def test_sampling_settings_refuse_non_finite_values():
    for bad in ({"presence_penalty": math.inf}, {"frequency_penalty": math.nan}, {"temperature": math.inf},
                {"repetition_penalty": math.inf}, {"seed": -1}, {"seed": 2**70}, {"max_tokens": 0}):
        message = refused(lambda bad=bad: SamplingSettings(**bad).validate())
        assert next(iter(bad)).replace("_", "-") in message


def test_each_arch_lists_exactly_its_own_settings():
    names = {arch: [s.name for s in model_settings(arch)] for arch in ARCHS}
    assert not {"nonlinearity", "identity_init", "cell", "vocab_size"} & set(names["lstm"])
    assert "forget_bias" in names["lstm"] and "forget_bias" not in names["gru"]
    assert {"nonlinearity", "identity_init"} <= set(names["rnn"]) and "forget_bias" not in names["rnn"]
    assert "cell" in names["seq2seq"] and names["ngram"] == ["order", "discount"]
    for arch in ARCHS:  # defaults are the arch's own, and every setting builds a valid config
        cfg = ARCHS[arch].make_config(65)
        for s in model_settings(arch):
            assert s.default == getattr(cfg, s.name)
            d = s.to_dict()
            assert {"name", "label", "type", "default", "min", "max", "choices", "help"} <= set(d)
    row = {s.name: s.to_dict() for s in model_settings("rnn")}["nonlinearity"]
    assert row["choices"] == ["tanh", "relu"] and row["archs"] == ["rnn"] and row["type"] == "str"


def test_parse_gives_the_form_the_same_words_as_json():
    width = {s.name: s for s in model_settings("transformer")}["width"]
    assert width.parse(" 64 ") == 64
    with pytest.raises(ConfigError) as from_text:
        width.parse("abc")
    assert str(from_text.value) == refused(lambda: TransformerConfig.from_dict({"width": "abc"}))
    steps = {s.name: s for s in settings_of(TrainConfig)}["steps"]
    assert steps.parse("") is None and steps.parse("5") == 5
