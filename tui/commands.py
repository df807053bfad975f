"""The command palette's entries, built from the bindings: "Show <pane>" for every pane, every app key
and every key a pane binds (run on that pane). Nothing is restated by hand, so the palette, the footer
and the help screen (tui.help) always agree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class KeyEntry:
    """One action a user can take: where it lives (``pane`` id or "" for the app) and its binding."""

    pane: str
    pane_title: str
    binding: Binding


def key_entries(app: Any) -> Iterator[KeyEntry]:
    """Every binding of the app and of each pane (panes in tab order), without duplicates."""
    from tui.app import PANES

    for b in app.BINDINGS:
        if isinstance(b, Binding) and b.description:
            yield KeyEntry("", "", b)
    for spec in PANES:
        pane = app.pane(spec.id)
        seen: set[str] = set()
        for cls in type(pane).__mro__:
            for b in cls.__dict__.get("BINDINGS", ()):
                if isinstance(b, Binding) and b.description and b.action not in seen:
                    seen.add(b.action)
                    yield KeyEntry(spec.id, spec.title, b)


def key_text(binding: Binding) -> str:
    return binding.key_display or binding.key.split(",")[0].replace("question_mark", "?")


class KeysProvider(Provider):
    """Palette commands from the bindings: "Show <pane>" and every key action."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        from tui.app import PANES

        app = self.app
        out: list[tuple[str, str, Callable[[], Any]]] = []
        for spec in PANES:
            out.append((f"Show {spec.title}", f"Switch to the {spec.title} pane ({spec.key})",
                        partial(app.action_show_tab, spec.id)))
        for entry in key_entries(app):
            b = entry.binding
            if entry.pane:
                title = f"{entry.pane_title}: {b.description}"
                out.append((title, f"key {key_text(b)} on the {entry.pane_title} pane",
                            partial(_run_on_pane, app, entry.pane, b.action)))
            else:
                out.append((b.tooltip or b.description, f"key {key_text(b)}", partial(app.run_action, b.action)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


async def _run_on_pane(app: Any, pane_id: str, action: str) -> None:
    app.action_show_tab(pane_id)
    await app.pane(pane_id).run_action(action)
