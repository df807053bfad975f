"""The app's footer: Textual's Footer, rebuilt once however often the bindings changed before it, and
without keeping its old keys alive."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's ``Footer`` schedules one rebuild of all its keys (a recompose) per bindings change, and a
    pane switch changes them three or four times before the next refresh (focus cleared, the tab, the
    pane's default focus). This one schedules a rebuild only when none is pending; the rebuild reads the
    bindings as they are when it runs, so it shows the last state.

    Each key Textual's footer makes is data-bound to the footer's ``compact``: the binding is a watcher
    entry on the footer, dropped only when ``compact`` changes, which it never does here. So every rebuild
    kept its removed keys alive (about 1,400 objects per pane switch, 0.2 MiB; 240 switches grew the app
    by 50 MiB). After a rebuild this drops the entries of keys that have been removed."""

    _rebuild_pending = False

    def bindings_changed(self, screen: Screen) -> None:
        if self._rebuild_pending:
            return
        super().bindings_changed(screen)
        self._rebuild_pending = bool(screen.app.app_focus and self.is_attached and screen is self.screen)

    async def recompose(self) -> None:
        self._rebuild_pending = False
        await super().recompose()
        for entries in getattr(self, "__watchers", {}).values():  # Textual's watcher lists (textual.reactive._watch)
            entries[:] = [(node, callback) for node, callback in entries if not getattr(node, "_closing", False)]
