"""Configs read from untrusted JSON: unknown names and wrong types are refused in one line."""

import pytest

from engine.training.config import TrainConfig
from engine.errors import ConfigError
from engine.models.registry import ARCHS, TransformerConfig


def test_round_trip_of_every_default_config():
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    for info in ARCHS.values():
        cfg = info.make_config(65)
        assert type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data, words", [
    ({"width": "abc"}, "width='abc' has the wrong type"),
    ({"layers": True}, "layers=True has the wrong type"),
    ({"heads": 2.5}, "heads=2.5 has the wrong type"),
    ({"tie_weights": "yes"}, "tie_weights='yes' has the wrong type"),
    ({"bogus": 1}, "unknown TransformerConfig setting(s) bogus"),
])
def test_model_config_refuses_wrong_types_and_unknown_names(data, words):
    with pytest.raises(ConfigError) as err:
        TransformerConfig.from_dict(data)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_train_config_refuses_wrong_types_but_takes_ints_for_floats():
    assert TrainConfig.from_dict({"lr": 1, "clip": None}).lr == 1
    with pytest.raises(ConfigError, match="lr='x' has the wrong type"):
        TrainConfig.from_dict({"lr": "x"})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        TrainConfig.from_dict(["lr", 1])
