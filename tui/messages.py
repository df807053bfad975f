"""Messages shared across the app. The engine thread posts these; handlers on the UI thread own state."""

from __future__ import annotations

from textual.message import Message

from engine.worker.protocol import Event


class EngineEvents(Message):
    """A batch of worker events (about 20 batches a second at most; no event is dropped here)."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class EngineFailed(Message):
    """The engine could not be started or talked to; ``message`` is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class SourceChosen(Message):
    """The user picked a corpus or file on the Data pane."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        self.spec = spec


class RunOpened(Message):
    """The user opened a past run (to generate from it or continue training)."""

    def __init__(self, path: str, action: str = "generate") -> None:
        super().__init__()
        self.path = path
        self.action = action
