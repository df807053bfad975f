"""A read-only view of generated tokens, each tinted by its probability, with a token cursor."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from engine.worker.protocol import GeneratedToken


def tint(prob: float) -> str:
    """Background colour for a token: red (unlikely) through amber to green (likely)."""
    p = min(max(prob, 0.0), 1.0)
    if p < 0.5:
        r, g = 150, int(40 + 200 * p)
    else:
        r, g = int(150 - 220 * (p - 0.5)), 140
    return f"rgb({max(r, 30)},{g},40)"


def visible(text: str) -> str:
    """Text for the running view: a newline shows as ⏎ and still breaks the line."""
    return text.replace("\n", "⏎\n").replace("\t", "→")


def glyph(text: str) -> str:
    """One token on one line (tables, the info line): ⏎ newline, → tab, ␣ space, ∅ empty."""
    if not text:
        return "∅"
    return text.replace("\n", "⏎").replace("\t", "→").replace(" ", "␣")


def tint_legend() -> Text:
    """What the token colours mean: the probability the sampler gave the chosen token."""
    out = Text("p(chosen): 0 ", style="dim")
    for k in range(11):
        out.append("  ", style=Style.parse(f"on {tint(k / 10)}"))
    out.append(" 1", style="dim")
    return out


class TokenView(Widget, can_focus=True):
    """The prompt, then the generated tokens; left/right move the cursor over tokens."""

    BINDINGS = [
        Binding("left", "move(-1)", "Prev token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("home", "jump(0)", "First token", show=False),
        Binding("end", "jump(-1)", "Last token", show=False),
    ]

    cursor: reactive[int] = reactive(-1)

    class CursorMoved(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prompt = ""
        self.tokens: list[GeneratedToken] = []
        self.follow = True  # the cursor follows the newest token until the user moves it

    def set_prompt(self, prompt: str) -> None:
        self.prompt = prompt
        self.tokens = []
        self.follow = True
        self.cursor = -1
        self.refresh(layout=True)

    def add(self, tokens: list[GeneratedToken]) -> None:
        self.tokens.extend(tokens)
        if self.follow and self.tokens:
            self.cursor = len(self.tokens) - 1
        self.refresh(layout=True)

    def show(self, prompt: str, tokens: list[GeneratedToken], cursor: int | None = None) -> None:
        """Display a branch: its prompt and whole token sequence (shared with the history, not copied)."""
        self.prompt = prompt
        self.tokens = tokens
        self.follow = cursor is None
        self.cursor = len(tokens) - 1 if cursor is None else min(cursor, len(tokens) - 1)
        self.post_message(self.CursorMoved(self.cursor))
        self.refresh(layout=True)

    def grew(self) -> None:
        """The shown sequence got longer (tokens appended to the list ``show`` was given)."""
        if self.follow and self.tokens:
            self.cursor = len(self.tokens) - 1
        self.refresh(layout=True)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens (branching replaces what follows)."""
        del self.tokens[n:]
        self.cursor = min(self.cursor, len(self.tokens) - 1)
        self.refresh(layout=True)

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)

    def current(self) -> GeneratedToken | None:
        if 0 <= self.cursor < len(self.tokens):
            return self.tokens[self.cursor]
        return None

    def action_move(self, delta: int) -> None:
        if self.tokens:
            self.follow = False
            self.cursor = min(max(self.cursor + delta, 0), len(self.tokens) - 1)

    def action_jump(self, where: int) -> None:
        if self.tokens:
            self.cursor = len(self.tokens) - 1 if where < 0 else 0
            self.follow = where < 0

    def watch_cursor(self, index: int) -> None:
        self.post_message(self.CursorMoved(index))
        self.refresh()

    def render(self) -> Text:
        text = Text(visible(self.prompt), style="bold")
        for i, tok in enumerate(self.tokens):
            style = Style.parse(f"on {tint(tok.prob)}")
            if i == self.cursor:
                style = Style.parse("reverse bold")
            text.append(visible(tok.text) or "∅", style=style)
        if not self.prompt and not self.tokens:
            text = Text("Type a prompt and press enter; generated tokens appear here, tinted by probability.",
                        style="dim")
        return text
