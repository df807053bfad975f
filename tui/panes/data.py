"""Data pane: built-in corpora, a typed path with completion, a file browser that can go up, recent
files; a preview, the corpus statistics and the token counts of the chosen tokenizer and split.

Facts come from the engine: ``engine.data.stats.scan_corpus`` (characters, lines, words, distinct
characters) and ``engine.data.stats.tokenize_counts`` (vocabulary and split sizes, through the
``prepare`` that training uses), both in thread workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, DirectoryTree, Input, Label, ListItem, ListView, Select, Static

from engine.errors import SeqplayError
from engine.training.config import TOKENIZERS
from tui import catalog
from tui.memory import add_recent
from tui.messages import SourceChosen
from tui.widgets.paths import PathSuggester

if TYPE_CHECKING:  # engine.data.stats imports numpy: loaded in the worker thread, after the first paint
    from engine.data.stats import CorpusStats, TokenCounts


class FileTree(DirectoryTree):
    """The file browser; backspace goes to the parent folder."""

    BINDINGS = [Binding("backspace", "parent", "Parent folder", id="files_parent")]

    def action_parent(self) -> None:
        self.path = Path(self.path).expanduser().resolve().parent


class DataPane(Vertical):
    """Pick what to train on and see what it looks like."""

    class Loaded(Message):
        def __init__(self, spec: str, stats: CorpusStats) -> None:
            super().__init__()
            self.spec, self.stats = spec, stats

    class Counted(Message):
        def __init__(self, spec: str, counts: TokenCounts | None, val_fraction: float, error: str = "") -> None:
            super().__init__()
            self.spec, self.counts, self.val_fraction, self.error = spec, counts, val_fraction, error

    class LoadFailed(Message):
        def __init__(self, spec: str, message: str) -> None:
            super().__init__()
            self.spec, self.message = spec, message

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec: str | None = None
        self.stats: CorpusStats | None = None
        self.counts: TokenCounts | None = None
        self.tokenizer = "char"
        self.val_fraction = 0.1
        self.recent: list[str] = []
        self._corpora = catalog.builtin_corpora()

    def compose(self) -> ComposeResult:
        remembered = getattr(self.app, "memory", {}).get("data", {})
        self.tokenizer = remembered.get("tokenizer", "char") if remembered.get("tokenizer") in TOKENIZERS else "char"
        vf = remembered.get("val_fraction", 0.1)
        self.val_fraction = vf if isinstance(vf, float) and 0 < vf < 0.9 else 0.1
        self.recent = [r for r in remembered.get("recent", []) if isinstance(r, str)]
        root = getattr(self.app, "browse_root", None) or Path.cwd()
        with Horizontal():
            with Vertical(id="data-left"):
                yield Label("Built-in corpora", classes="section")
                yield ListView(*[ListItem(Label(f"{name} [dim]{desc}[/]"), name=name)
                                 for name, desc in self._corpora.items()], id="corpora")
                yield Label("Open a file", classes="section")
                yield Input("", placeholder="path (→ completes), e.g. ~/a.txt", id="path", suggester=PathSuggester(),
                            compact=True)
                with Horizontal(id="files-bar"):
                    yield Button("↑ ..", id="files-up", compact=True)
                    yield Static("", id="files-root")
                yield FileTree(root, id="files")
                yield Label("Recent", classes="section")
                yield ListView(*self._recent_items(), id="recent")
            with Vertical(id="data-right"):
                yield Static("loading...", id="data-title", classes="section")
                yield DataTable(id="data-stats", show_cursor=False, zebra_stripes=True)
                with Horizontal(id="data-form"):
                    yield Label("Tokenizer")
                    yield Select([(t, t) for t in TOKENIZERS], value=self.tokenizer, allow_blank=False, id="tokenizer",
                                 compact=True)
                    yield Label("Validation")
                    yield Input(f"{self.val_fraction:g}", id="val-fraction", type="number", compact=True)
                yield Label("Preview", classes="section")
                with VerticalScroll(id="preview-box"):
                    yield Static("", id="preview", markup=False)

    def _recent_items(self) -> list[ListItem]:
        return [ListItem(Label(_short(r)), name=r) for r in self.recent]

    def on_mount(self) -> None:
        table = self.query_one("#data-stats", DataTable)
        table.add_columns("statistic", "value")
        self.watch(self.query_one("#files", FileTree), "path", self._show_root)  # any way up or down
        remembered = getattr(self.app, "memory", {}).get("data", {}).get("source")
        initial = getattr(self.app, "initial_source", None) or remembered
        # after the first paint: generating/reading the corpus holds the GIL for a few hundred ms
        self.call_after_refresh(self.load, initial or catalog.DEFAULT_CORPUS,
                                None if not initial else catalog.DEFAULT_CORPUS)

    def focus_default(self) -> None:
        self.query_one("#corpora").focus()

    @property
    def train_tokens(self) -> int | None:
        """Training tokens of the chosen tokenizer and split (None until counted)."""
        return self.counts.train_tokens if self.counts is not None else None

    @property
    def vocab_size(self) -> int | None:
        """The chosen tokenizer's vocabulary on this corpus (None until counted)."""
        return self.counts.vocab_size if self.counts is not None else None

    def remembered(self) -> dict:
        return {"source": self.spec, "tokenizer": self.tokenizer, "val_fraction": self.val_fraction,
                "recent": self.recent}

    # -- loading ---------------------------------------------------------------------------------
    def load(self, spec: str, fallback: str | None = None) -> None:
        self.query_one("#data-title", Static).update(f"loading {spec} ...")
        self._load_worker(spec, fallback)

    @work(thread=True, exclusive=True, group="data-load", exit_on_error=False)
    def _load_worker(self, spec: str, fallback: str | None) -> None:
        from engine.data.stats import scan_corpus

        try:
            stats = scan_corpus(spec)  # streamed: a 1 GB file keeps a 4M-character sample
        except SeqplayError as err:
            self.post_message(self.LoadFailed(spec, str(err)))
            if fallback:
                self._load_worker(fallback, None)
            return
        except OSError as err:
            self.post_message(self.LoadFailed(spec, f"{spec}: {err.strerror or err}; choose another file"))
            return
        self.post_message(self.Loaded(spec, stats))
        self._count(spec, self.tokenizer, self.val_fraction)

    def _count(self, spec: str, kind: str, val_fraction: float) -> None:
        from engine.data.stats import tokenize_counts

        try:
            counts = tokenize_counts(spec, kind, None, val_fraction)
        except SeqplayError as err:
            self.post_message(self.Counted(spec, None, val_fraction, str(err)))
            return
        except OSError as err:
            self.post_message(self.Counted(spec, None, val_fraction, f"{spec}: {err.strerror or err}"))
            return
        self.post_message(self.Counted(spec, counts, val_fraction))

    @work(thread=True, exclusive=True, group="data-count", exit_on_error=False)
    def _count_worker(self, spec: str, kind: str, val_fraction: float) -> None:
        self._count(spec, kind, val_fraction)

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.spec, self.stats, self.counts = message.spec, message.stats, None
        self.query_one("#data-title", Static).update(message.stats.name)
        self.query_one("#preview", Static).update(message.stats.sample[: catalog.PREVIEW_CHARS] or "(empty)")
        if Path(message.spec).expanduser().is_file():
            self.recent = add_recent(self.recent, str(Path(message.spec).expanduser().resolve()))
            recent = self.query_one("#recent", ListView)
            recent.clear()
            recent.extend(self._recent_items())
        self._show_stats()
        self.post_message(SourceChosen(message.spec))

    @on(Counted)
    def _counted(self, message: Counted) -> None:
        if message.spec != self.spec:
            return
        if message.error:
            self.app.notify(message.error, title="Data", severity="error", timeout=8)
            return
        if message.counts is None or message.counts.tokenizer != self.tokenizer or message.val_fraction != self.val_fraction:
            return  # a count of an earlier choice
        self.counts = message.counts
        self._show_stats()
        self.post_message(SourceChosen(message.spec))

    @on(LoadFailed)
    def _load_failed(self, message: LoadFailed) -> None:
        self.app.notify(message.message, title="Data", severity="error", timeout=8)
        self.query_one("#data-title", Static).update(self.spec or "no corpus loaded")

    def _show_stats(self) -> None:
        s = self.stats
        table = self.query_one("#data-stats", DataTable)
        table.clear()
        if s is None:
            return
        table.add_row("characters", f"{s.chars:,}")
        table.add_row("lines", f"{s.lines:,}")
        table.add_row("words", f"{s.words:,}")
        table.add_row("distinct characters", f"{s.distinct_chars:,}")
        c = self.counts
        if c is None:
            table.add_row(f"tokens ({self.tokenizer})", "counting ...")
            return
        table.add_row(f"tokens ({c.tokenizer})", f"{c.tokens:,}")
        table.add_row("vocabulary", f"{c.vocab_size:,}")
        table.add_row("training tokens", f"{c.train_tokens:,} ({1 - self.val_fraction:.0%})")
        table.add_row("validation tokens", f"{c.val_tokens:,}")

    def _show_root(self, _path: object = None) -> None:
        tree = self.query_one("#files", FileTree)
        self.query_one("#files-root", Static).update(_short(str(Path(tree.path).expanduser().resolve())))

    # -- user input ------------------------------------------------------------------------------
    @on(ListView.Selected, "#corpora")
    @on(ListView.Selected, "#recent")
    def _listed_selected(self, event: ListView.Selected) -> None:
        if event.item.name:
            self.load(event.item.name)

    @on(DirectoryTree.FileSelected)
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.load(str(event.path))

    @on(DirectoryTree.DirectorySelected)
    def _dir_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        self._show_root()

    @on(Button.Pressed, "#files-up")
    def _up(self) -> None:
        self.query_one("#files", FileTree).action_parent()

    @on(Input.Submitted, "#path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if path.is_dir():
            self.query_one("#files", FileTree).path = path.resolve()
            self.query_one("#files", FileTree).focus()
            return
        self.load(str(path) if path.exists() else text)  # a built-in corpus spec also works here

    @on(Select.Changed, "#tokenizer")
    def _tokenizer_changed(self, event: Select.Changed) -> None:
        if str(event.value) == self.tokenizer and self.counts is not None:
            return
        self.tokenizer = str(event.value)
        self.counts = None
        if self.spec and self.stats is not None:
            self._count_worker(self.spec, self.tokenizer, self.val_fraction)
        self._show_stats()
        if self.spec:
            self.post_message(SourceChosen(self.spec))

    @on(Input.Changed, "#val-fraction")
    def _val_changed(self, event: Input.Changed) -> None:
        try:
            value = float(event.value)
        except ValueError:
            value = -1.0
        if 0.0 < value < 0.9:
            event.input.remove_class("invalid")
            if value != self.val_fraction:
                self.val_fraction = value
                self.counts = None
                if self.spec and self.stats is not None:
                    self._count_worker(self.spec, self.tokenizer, self.val_fraction)
                self._show_stats()
        else:
            event.input.add_class("invalid")


def _short(path: str) -> str:
    home = str(Path.home())
    if path == home:
        return "~"
    return "~" + path[len(home):] if path.startswith(home + "/") else path
