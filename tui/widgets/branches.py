"""The generation lab's history: every generation is a root, every branch a child, as a tree.

A ``Branch`` holds its whole token sequence (what it inherited from its parent up to the branch point,
then its own tokens), so switching branches never asks the engine again. Token positions count from
the start of the root's text, so numbering is continuous across branches. The cumulative log-prob of
a branch is sum_t log p_raw(x_t | x_<t): the model's log-likelihood of the generated text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.widgets import Tree

from engine.worker.protocol import GeneratedToken


@dataclass
class Branch:
    id: int
    prompt: str
    parent: Branch | None = None
    start: int = 0  # position of this branch's first own token
    tokens: list[GeneratedToken] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    reason: str = ""
    children: list[Branch] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)

    @property
    def logprob(self) -> float:
        return sum(math.log(max(t.raw_prob, 1e-300)) for t in self.tokens)

    @property
    def root(self) -> Branch:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def label(self) -> Text:
        own = len(self.tokens) - self.start
        head = (f"{self.prompt[:18]!r}" if self.parent is None else
                f"↳ at #{self.start} {self.tokens[self.start].text!r}" if own > 0 else f"↳ at #{self.start}")
        out = Text(head)
        out.append(f"  {len(self.tokens)} tok  logp {self.logprob:.1f}", style="dim")
        if self.reason and self.reason not in ("max_tokens", "stop_string", "eot"):
            out.append(f"  {self.reason}", style="dim italic")
        return out


class BranchHistory:
    """All generations and their branches; ``current`` is the one shown; ``undo`` removes the newest."""

    def __init__(self) -> None:
        self.roots: list[Branch] = []
        self.current: Branch | None = None
        self._ids = 0
        self._created: list[Branch] = []

    def _new(self, **kw: Any) -> Branch:
        self._ids += 1
        node = Branch(id=self._ids, **kw)
        self._created.append(node)
        self.current = node
        return node

    def start(self, prompt: str, settings: dict[str, Any], source: str | None) -> Branch:
        node = self._new(prompt=prompt, settings=settings, source=source)
        self.roots.append(node)
        return node

    def branch(self, at: int, settings: dict[str, Any], source: str | None) -> Branch:
        """A child of ``current`` that keeps its first ``at`` tokens."""
        parent = self.current
        if parent is None:
            raise ValueError("nothing to branch from")
        node = self._new(prompt=parent.prompt, parent=parent, start=at, tokens=list(parent.tokens[:at]),
                         settings=settings, source=source)
        parent.children.append(node)
        return node

    def add(self, branch: Branch, tokens: list[GeneratedToken]) -> None:
        branch.tokens.extend(tokens)

    def find(self, branch_id: int) -> Branch | None:
        return next((b for b in self._created if b.id == branch_id), None)

    def undo(self) -> Branch | None:
        """Remove the newest branch (or generation); ``current`` becomes its parent (or the previous one)."""
        if not self._created:
            return None
        node = self._created.pop()
        if node.parent is not None:
            node.parent.children.remove(node)
        else:
            self.roots.remove(node)
        self.current = node.parent or (self.roots[-1] if self.roots else None)
        return node

    def __len__(self) -> int:
        return len(self._created)


class BranchTree(Tree[int]):
    """The history as a Textual tree; selecting a node shows that branch (data = branch id)."""

    DEFAULT_CSS = """
    BranchTree { height: 1fr; min-height: 3; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("generations", **kwargs)
        self.show_root = False
        self.guide_depth = 2

    def show(self, history: BranchHistory) -> None:
        self.clear()
        cursor_node = None

        def add(parent: Any, branch: Branch) -> None:
            nonlocal cursor_node
            label = branch.label()
            if branch is history.current:
                label.stylize("bold reverse", 0, len(label))
            node = parent.add(label, data=branch.id, expand=True, allow_expand=bool(branch.children))
            if branch is history.current:
                cursor_node = node
            for child in branch.children:
                add(node, child)

        for root in history.roots:
            add(self.root, root)
        self.root.expand()
        if cursor_node is not None:
            self.call_after_refresh(self.move_cursor, cursor_node)
