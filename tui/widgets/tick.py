"""A checkbox whose state reads without colour: ✓ when on, blank when off (Textual's shows X in both)."""

from __future__ import annotations

from textual.widgets import Checkbox


class Tick(Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - Textual's name for the glyph inside the box
        return "✓" if self.value else " "
