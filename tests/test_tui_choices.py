"""The Model pane's settings with a fixed set of values are menus built from the engine's Setting
choices: picked with the keyboard, sent in the StartTraining config, left with Escape, remembered."""

from __future__ import annotations

from textual.widgets import Input, Select

from engine.models.registry import ARCHS, model_settings
from engine.worker import protocol as P
from tests.test_tui import make_app, sent, sync, wait_for

SIZE = (80, 24)


async def model_form(pilot, app, arch: str) -> None:
    await wait_for(pilot, lambda: app.pane("data").counts is not None, what="the corpus")
    await pilot.press("2")
    model = app.pane("model")
    await wait_for(pilot, lambda: model.params_shown is not None, what="the form")
    if model.arch != arch:
        app.query_one("#archs").index = list(ARCHS).index(arch)
        await wait_for(pilot, lambda: model.arch == arch and model.counted_for == arch, what=f"the {arch} form")


def test_every_setting_with_choices_is_a_menu_of_exactly_those_choices():
    async def check(arch: str) -> None:
        app, _ = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await model_form(pilot, app, arch)
            for setting in model_settings(arch):
                widget = app.query_one(f"#hp-{setting.name}")
                if setting.choices:
                    assert isinstance(widget, Select), setting.name
                    assert [value for _, value in widget._options] == list(setting.choices)
                    assert widget.value == setting.default
                else:
                    assert not isinstance(widget, Select), setting.name

    import asyncio

    for arch in [a for a in ARCHS if any(s.choices for s in model_settings(a))]:
        asyncio.run(check(arch))


@sync
async def test_pick_positions_with_the_keyboard_escape_then_t_trains_with_it():
    app, engine = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await model_form(pilot, app, "transformer")
        positions = app.query_one("#hp-positions", Select)
        assert positions.value == "learned"
        positions.focus()
        await pilot.press("enter", "down", "enter")  # open the menu, move to the next choice, take it
        await wait_for(pilot, lambda: positions.value == "sinusoidal", what="the picked value")
        await pilot.press("escape")
        assert not isinstance(app.focused, Input | Select)
        await pilot.press("t")
        await wait_for(pilot, lambda: sent(engine, P.StartTraining), what="training to start")
        assert sent(engine, P.StartTraining)[0].config["model"]["positions"] == "sinusoidal"


@sync
async def test_a_picked_choice_is_remembered_across_sessions():
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await model_form(pilot, app, "seq2seq")
        app.query_one("#hp-attention", Select).value = "dot"
        await pilot.pause(0.2)
        await app.action_quit()
    app2, _ = make_app()
    async with app2.run_test(size=SIZE) as pilot:
        await model_form(pilot, app2, "seq2seq")
        assert app2.query_one("#hp-attention", Select).value == "dot"
        assert app2.pane("model").model_overrides()["attention"] == "dot"
