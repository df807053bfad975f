"""Snapshot tests of the Lab pane's three views (A/B, stages, timeline) at 80x24 and 160x48, fed the
FakeEngine's scripted ``LabDone`` results (no torch, no worker).

Update the baselines after an intended change with `pytest tests/test_snapshots_lab.py --snapshot-update`.
"""

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input, OptionList, TabbedContent

from engine.worker import protocol as P
from tests.fake_engine import fake_lab
from tui.panes.lab import LabPane

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
VIEWS = {
    "ab": P.Compare(job="j", run_a="lstm-run", settings_b={"temperature": 1.5}, prompt="once ", seed=7, max_tokens=60),
    "stages": P.StageView(job="j", run="lstm-run", settings={"top_k": 2}, prompt="once ", position=12),
    "timeline": P.Timeline(job="j", run="lstm-run", prompt="", seed=0, max_tokens=60),
}


class LabApp(App):
    """Just the Lab pane, showing one scripted result."""

    def __init__(self, view: str):
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        yield LabPane(id="lab")

    def show(self) -> None:
        pane = self.query_one(LabPane)
        pane.query_one("#lab-tabs", TabbedContent).active = f"lab-{self.view}"
        for box in pane.query(Input):
            box.cursor_blink = False
        cmd = VIEWS[self.view]
        pane.show_done(P.LabDone(job="j", lab=cmd.kind, reason="done", data=fake_lab(cmd), seconds=0.2))
        if self.view == "timeline":
            pane.query_one("#tl-list", OptionList).highlighted = 2


async def _show(pilot) -> None:
    await pilot.pause()
    pilot.app.show()
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("view", list(VIEWS))
def test_lab_view(snap_compare, view, size):
    assert snap_compare(LabApp(view), terminal_size=SIZES[size], run_before=_show)
