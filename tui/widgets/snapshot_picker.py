"""A Select of one run's time-machine snapshots (``engine.runs.snapshot_index.list_snapshots``, torch-free,
read in a thread): blank ("checkpoint") is the run itself (its best checkpoint), then best, last and each step. ``suffix``
is what to append to the run's path: "", "@best", "@last" or "@400"."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.message import Message
from textual.widgets import Select


class SnapshotPicker(Select[str]):
    """Point a job at a snapshot of the run picked beside it."""

    class Listed(Message):
        def __init__(self, picker: SnapshotPicker, run: str | None, snaps: list[Any]) -> None:
            super().__init__()
            self.picker = picker
            self.run = run
            self.snaps = snaps

    def __init__(self, **kwargs: Any) -> None:
        super().__init__([], prompt="checkpoint", allow_blank=True, compact=True, **kwargs)
        self.run: str | None = None
        self.snaps: list[Any] = []

    def load(self, run: str | None) -> None:
        """List the snapshots of ``run`` (None or the live model: none); the pick is kept if still there."""
        self.run = run
        self._list(run)

    @work(thread=True, exclusive=True, group="snapshot-picker", exit_on_error=False)
    def _list(self, run: str | None) -> None:
        from engine.runs.snapshot_index import list_snapshots

        self.post_message(self.Listed(self, run, list_snapshots(run) if run else []))

    def on_snapshot_picker_listed(self, message: Listed) -> None:
        message.stop()
        if message.run != self.run:
            return  # the run changed meanwhile
        self.snaps = message.snaps
        current = self.value if isinstance(self.value, str) else None
        options = []
        if any("best" in s.tags for s in self.snaps):
            options.append(("best snapshot", "@best"))
        if any("last" in s.tags for s in self.snaps):
            options.append(("last snapshot", "@last"))
        options += [(f"step {s.step}", f"@{s.step}") for s in self.snaps]
        with self.prevent(Select.Changed):
            self.set_options(options)
            if current in {v for _, v in options}:
                self.value = current
        self.disabled = not options

    @property
    def suffix(self) -> str:
        """"" (the run itself), "@best", "@last" or "@STEP"."""
        return self.value if isinstance(self.value, str) else ""
