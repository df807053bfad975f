"""The help screen (? or F1): what each pane is for and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# seqplay

Train small sequence models on your own text, watch them learn, sample from them and compare runs.

| key | what it does |
|---|---|
| 1 … 6 | Data · Model · Train · Generate · Runs · Insight |
| t | start training the chosen model on the chosen corpus |
| p | pause / resume training |
| s | single step (pauses first) |
| x | stop training (a checkpoint is saved) |
| ctrl+s | save a checkpoint now |
| l | change the learning rate while it trains |
| y · m · v | Train curve: log scale · smoothing · loss/perplexity |
| g | generate from the current model |
| escape | cancel the generation |
| n | step mode: next token |
| ctrl+t | toggle step mode |
| ← → | move over generated tokens (alternatives show on the right) |
| space · enter · c · o | Runs: select · open · continue training · overlay |
| ctrl+p | command palette: every action, themes |
| ? or F1 | this help · q quits |

**Data**: a built-in corpus or any text file; statistics per tokenizer; the validation split.
**Model**: an architecture, its equation and hyper-parameters; the parameter count updates as you type,
with an estimate of memory, speed and time on this machine.
**Train**: training and validation loss (palette: log scale, smoothing, perplexity), speed, ETA, samples;
text copied verbatim from the training data is highlighted.
**Generate**: tokens tinted by probability (red unlikely, green likely); in step mode pick any
alternative with enter to branch the text.
**Runs**: past runs; overlay validation curves in bits per character.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)

    def action_dismiss(self, result=None) -> None:
        self.dismiss(None)
