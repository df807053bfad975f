"""Files from anywhere (issue 15), driven by keys: a typed path completes, the parent entry goes up a
folder, ``~`` is the home folder, and a file opened in one session is in the next session's recent list."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, ListView

from tests.test_tui import make_app, sync, wait_for
from tui.panes.data import FileTree

SIZE = (120, 40)
TEXT = "to be or not to be\nthat is the question\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """A home folder with ``corpora/hamlet.txt`` and ``corpora/sub/`` (HOME points at it)."""
    (tmp_path / "corpora" / "sub").mkdir(parents=True)
    (tmp_path / "corpora" / "hamlet.txt").write_text(TEXT)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


async def ready(pilot, app) -> None:
    await wait_for(pilot, lambda: app.pane("data").stats is not None, what="the first corpus")


async def type_path(pilot, app, text: str) -> Input:
    """Focus the path field, type ``text`` key by key and wait for its completion to be offered."""
    field = app.query_one("#path", Input)
    field.focus()
    await pilot.press(*text)
    await wait_for(pilot, lambda: field.value == text and bool(field._suggestion), what=f"a completion of {text!r}")
    return field


@sync
async def test_a_partial_path_completes_with_right_and_opens_with_enter(home: Path):
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        field = await type_path(pilot, app, f"{home}/corp")
        await pilot.press("right")
        assert field.value == f"{home}/corpora/"
        await pilot.press("h")
        await wait_for(pilot, lambda: bool(field._suggestion), what="a completion of the file name")
        await pilot.press("right")
        assert field.value == f"{home}/corpora/hamlet.txt"
        await pilot.press("enter")
        data = app.pane("data")
        await wait_for(pilot, lambda: data.spec == f"{home}/corpora/hamlet.txt" and data.stats is not None,
                       what="the typed file to load")
        assert data.stats.lines == 2


@sync
async def test_the_parent_entry_and_backspace_go_up_a_folder(home: Path):
    app, _ = make_app(browse_root=str(home / "corpora" / "sub"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        tree = app.query_one("#files", FileTree)
        assert Path(tree.path) == home / "corpora" / "sub"
        await pilot.click("#files-up")
        await wait_for(pilot, lambda: Path(tree.path) == home / "corpora", what="the parent folder")
        assert "~/corpora" in str(app.query_one("#files-root").render())
        tree.focus()
        await pilot.press("backspace")
        await wait_for(pilot, lambda: Path(tree.path) == home, what="the grandparent folder")
        assert str(app.query_one("#files-root").render()).strip() == "~"


@sync
async def test_tilde_is_the_home_folder(home: Path):
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        field = await type_path(pilot, app, "~")
        await pilot.press("right")
        assert field.value == "~/"
        await pilot.press("c")
        await wait_for(pilot, lambda: bool(field._suggestion), what="a completion under ~")
        await pilot.press("right")
        assert field.value == "~/corpora/"
        await pilot.press("enter")  # a folder: the browser shows it
        tree = app.query_one("#files", FileTree)
        await wait_for(pilot, lambda: Path(tree.path) == home / "corpora", what="the browser at ~/corpora")
        field.focus()
        field.value = "~/corpora/hamlet.txt"
        await pilot.press("enter")
        data = app.pane("data")
        await wait_for(pilot, lambda: data.spec == str(home / "corpora" / "hamlet.txt"), what="~ expanded")


@sync
async def test_a_file_opened_in_one_session_is_recent_in_the_next(home: Path):
    path = home / "corpora" / "hamlet.txt"
    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        field = app.query_one("#path", Input)
        field.focus()
        field.value = "~/corpora/hamlet.txt"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.pane("data").spec == str(path), what="the file to load")
        await pilot.press("escape", "1")
        data = app.pane("data")
        data.load("grammar")  # the recent list is remembered, not only the last corpus
        await wait_for(pilot, lambda: data.spec == "grammar" and data.stats is not None, what="grammar again")
        await app.action_quit()
    app2, _ = make_app()
    async with app2.run_test(size=SIZE) as pilot:
        await ready(pilot, app2)
        recent = app2.query_one("#recent", ListView)
        assert [item.name for item in recent.children] == [str(path)]
        assert "~/corpora/hamlet.txt" in str(recent.children[0].query_one("Label").render())
        recent.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app2.pane("data").spec == str(path), what="the recent file to open")
