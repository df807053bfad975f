"""The app's Train uses the fast defaults as ``seqplay train FILE`` does: every Model-pane field the user
has not changed gets the value ``engine.training.presets.fast_defaults`` picks for the corpus (written
into the field), the pre-flight rows under "Before you train" say what was picked, and a typed value
is the user's."""

from __future__ import annotations

from textual.widgets import Input

from engine.models.registry import ARCHS
from engine.training.config import TrainConfig
from engine.training.presets import fast_defaults
from engine.worker import protocol as P
from tests.pilot_helpers import sync
from tests.test_tui import make_app, sent, wait_for

SIZE = (120, 50)
KEYS = ("batch_size", "steps", "lr", "warmup", "schedule", "min_lr_ratio", "weight_decay", "context",
        "eval_every", "sample_every", "time_budget", "model")


async def model_pane(pilot, app):
    await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
    await pilot.press("2")
    model = app.pane("model")
    await wait_for(pilot, lambda: model.params_shown is not None, what="the form")
    return model


async def type_into(pilot, app, field_id: str, text: str) -> None:
    field = app.query_one(f"#{field_id}", Input)
    field.focus()
    await pilot.press("end", *["backspace"] * len(field.value), *text, "escape")
    await pilot.pause()


async def started(pilot, app, engine) -> dict:
    await pilot.press("t")
    await wait_for(pilot, lambda: sent(engine, P.StartTraining), what="training to start")
    return sent(engine, P.StartTraining)[0].config


@sync
async def test_train_starts_what_seqplay_train_would_and_the_fields_show_it():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        model = await model_pane(pilot, app)
        data = app.pane("data")
        want, picked = fast_defaults(TrainConfig(source=data.spec, tokenizer=data.tokenizer, val_fraction=data.val_fraction,
                                                 arch="transformer", steps=2000, device="cpu"),
                                     set(), data.counts.train_tokens, data.counts.val_tokens)
        assert app.query_one("#batch", Input).value == str(want.batch_size) == "16"
        assert app.query_one("#steps", Input).value == str(want.steps)
        assert app.query_one("#lr", Input).value == f"{want.lr:g}"
        assert app.query_one("#hp-dropout", Input).value == f"{want.model['dropout']:g}"
        text = str(app.query_one("#estimate").render())
        assert "fast defaults:" in text and "batch_size" in text and "type a value to override" in text
        assert f"every {want.eval_every:,} steps" in text
        assert {c.name for c in model.picked} == {c.name for c in picked}
        config = await started(pilot, app, engine)
        assert {k: config[k] for k in KEYS} == {k: want.to_dict()[k] for k in KEYS}


@sync
async def test_a_typed_value_is_the_users_and_a_time_budget_leaves_the_steps_to_the_clock():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        model = await model_pane(pilot, app)
        await type_into(pilot, app, "batch", "8")
        await type_into(pilot, app, "time-budget", "40")
        await wait_for(pilot, lambda: app.query_one("#steps", Input).value == "", what="the steps to clear")
        assert "batch_size" not in {c.name for c in model.picked}
        text = str(app.query_one("#estimate").render())
        assert "batch: 8 x 64" in text and "budget: 40 s" in text
        config = await started(pilot, app, engine)
        assert (config["batch_size"], config["steps"], config["time_budget"]) == (8, None, 40.0)
        assert config["lr"] == 3e-3  # the rest is still the recipe's
        remembered = model.remembered()["training"]
        assert remembered["batch"] == "8" and remembered["steps"] == "2000"  # the defaults' value is not kept


@sync
async def test_another_architecture_gets_its_own_defaults_not_the_transformers():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        model = await model_pane(pilot, app)
        assert app.query_one("#batch", Input).value == "16"
        app.query_one("#archs").index = list(ARCHS).index("lstm")
        await wait_for(pilot, lambda: model.arch == "lstm" and model.counted_for == "lstm", what="the lstm form")
        await pilot.pause()
        assert app.query_one("#batch", Input).value == "32"  # the form's default: the recipe is the Transformer's
        config = await started(pilot, app, engine)
        assert config["arch"] == "lstm" and config["batch_size"] == 32 and config["lr"] is None


@sync
async def test_the_models_context_field_wins():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await model_pane(pilot, app)
        await type_into(pilot, app, "hp-context", "32")
        config = await started(pilot, app, engine)
        assert config["context"] is None and config["model"]["context"] == 32
