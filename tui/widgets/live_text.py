"""``set_text``: ``Static.update`` for text that changes several times a second (training status lines).

``Static.update`` asks for a layout pass of the whole screen every time, which is most of what a live
status line costs while a run trains (about 4 passes a second per line, 50 ms each on a 160 x 48
screen). Here the layout pass happens only when the text needs a different number of lines."""

from __future__ import annotations

from textual.widgets import Static


def set_text(widget: Static, content: str) -> None:
    """Show ``content`` in ``widget``; re-lay out the screen only if its height changes."""
    if not widget.is_mounted or not widget.size.width:
        widget.update(content)  # not laid out yet: the first layout measures it anyway
        return
    before = widget.content_size
    widget.update(content, layout=False)
    if widget.get_content_height(widget.size, widget.app.size, before.width) != before.height:
        widget.refresh(layout=True)
