"""The help screen (? or F1): what each pane is for, and every key, read from the bindings."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

ABOUT = """\
# seqplay

Train small sequence models on your own text, watch them learn, sample from them and compare runs.
**ctrl+p** opens the command palette (every action below, and themes). **escape** leaves a text field,
so the keys below act again.

**Data**: a built-in corpus, a typed path (→ completes) or the file browser (backspace: parent folder);
statistics and the token counts of the chosen tokenizer. **Model**: an architecture, its equation and
the hyper-parameters it has; the exact parameter count and an estimate of memory, speed and time.
**Train**: loss curves, speed, progress and ETA from whichever limit ends the run, samples (text copied
from the training data is highlighted). **Generate**: tokens tinted by probability. **Runs**: past runs
and their validation curves.
"""


def keys_markdown(app) -> str:
    from tui.app import PANES
    from tui.commands import key_entries, key_text

    rows = ["| key | where | what it does |", "|---|---|---|"]
    rows.append(f"| {' · '.join(s.key for s in PANES)} | everywhere | {' · '.join(s.title for s in PANES)} |")
    for entry in key_entries(app):
        where = entry.pane_title or "everywhere"
        rows.append(f"| {key_text(entry.binding)} | {where} | {entry.binding.tooltip or entry.binding.description} |")
    return "\n".join(rows)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(ABOUT + "\n" + keys_markdown(self.app))

    def action_dismiss(self, result=None) -> None:
        self.dismiss(None)
