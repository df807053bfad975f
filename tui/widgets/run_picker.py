"""A Select of the runs on disk (``engine.runs.folders.list_runs``, read in a thread) and, while a
run trains, the live model. Its value is a run folder path, ``LIVE`` or ``Select.BLANK``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.message import Message
from textual.widgets import Select

LIVE = "live"


class RunPicker(Select[str]):
    """Pick the model an analysis or a generation looks at."""

    class Listed(Message):
        def __init__(self, picker: RunPicker, runs: list[Any]) -> None:
            super().__init__()
            self.picker = picker
            self.runs = runs

    def __init__(self, live: bool = True, **kwargs: Any) -> None:
        super().__init__([], prompt="pick a run", allow_blank=True, compact=True, **kwargs)
        self.offer_live = live
        self.training = False
        self.runs: list[Any] = []
        self._wanted: str | None = None

    def on_mount(self) -> None:
        self.reload()

    def reload(self, training: bool | None = None, want: str | None = None) -> None:
        """Re-read the runs (in a thread); ``want``: the value to select once listed."""
        if training is not None:
            self.training = training
        if want is not None:
            self._wanted = want
        self._list()

    @work(thread=True, exclusive=True, group="run-picker", exit_on_error=False)
    def _list(self) -> None:
        from engine.runs.folders import list_runs

        self.post_message(self.Listed(self, [r for r in list_runs() if r.problem is None]))

    def on_run_picker_listed(self, message: Listed) -> None:
        message.stop()
        self.runs = message.runs
        current = self._wanted or (self.value if isinstance(self.value, str) else None)
        options = [("model being trained (live)", LIVE)] if self.offer_live and self.training else []
        options += [(f"{r.name}  ({r.arch})", str(r.path)) for r in self.runs]
        with self.prevent(Select.Changed):
            self.set_options(options)
        values = {v for _, v in options}
        if current is not None and current not in values:
            current = next((v for v in values if Path(v).name == Path(current).name), None)
        if current is not None:
            self.value = current
            self._wanted = None

    @property
    def choice(self) -> str | None:
        """The picked run path, ``LIVE``, or None."""
        return self.value if isinstance(self.value, str) else None

    def label_of(self, value: str | None) -> str:
        if value == LIVE:
            return "the model being trained"
        return Path(value).name if value else "no run"
