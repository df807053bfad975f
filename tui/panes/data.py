"""Data pane: built-in corpora and a file browser, a preview, statistics, tokenizer and validation split."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, DirectoryTree, Input, Label, ListItem, ListView, Select, Static

from engine.training.config import TOKENIZERS
from engine.errors import SeqplayError
from tui import catalog
from tui.messages import SourceChosen


class DataPane(Vertical):
    """Pick what to train on and see what it looks like."""

    class Loaded(Message):
        def __init__(self, spec: str, name: str, preview: str, stats: catalog.TextStats) -> None:
            super().__init__()
            self.spec, self.name, self.preview, self.stats = spec, name, preview, stats

    class TokensCounted(Message):
        def __init__(self, spec: str, kind: str, count: int | None, estimated: bool) -> None:
            super().__init__()
            self.spec, self.kind, self.count, self.estimated = spec, kind, count, estimated

    class LoadFailed(Message):
        def __init__(self, spec: str, message: str) -> None:
            super().__init__()
            self.spec, self.message = spec, message

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec: str | None = None
        self.stats: catalog.TextStats | None = None
        self.tokenizer = "char"
        self.val_fraction = 0.1
        self._corpora = catalog.builtin_corpora()

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="data-left"):
                yield Static("Pick a corpus or a file (enter), then [b]2[/b] to choose a model and [b]t[/b] to train.",
                             id="data-hint")
                yield Label("Built-in corpora", classes="section")
                yield ListView(*[ListItem(Label(f"{name}  [dim]{desc}[/]"), name=name)
                                 for name, desc in self._corpora.items()], id="corpora")
                yield Label("Files (enter opens)", classes="section")
                yield DirectoryTree(getattr(self.app, "browse_root", None) or Path.cwd(), id="files")
            with Vertical(id="data-right"):
                yield Static("loading...", id="data-title", classes="section")
                yield DataTable(id="data-stats", show_cursor=False, zebra_stripes=True)
                with Horizontal(classes="form-row"):
                    yield Label("Tokenizer")
                    yield Select([(t, t) for t in TOKENIZERS], value="char", allow_blank=False, id="tokenizer", compact=True)
                    yield Label("Validation split")
                    yield Input("0.1", id="val-fraction", type="number", compact=True)
                yield Label("Preview", classes="section")
                with VerticalScroll(id="preview-box"):
                    yield Static("", id="preview", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#data-stats", DataTable)
        table.add_columns("statistic", "value")
        initial = getattr(self.app, "initial_source", None)
        # after the first paint: generating/reading the corpus holds the GIL for a few hundred ms
        self.call_after_refresh(self.load, initial or catalog.DEFAULT_CORPUS,
                                None if not initial else catalog.DEFAULT_CORPUS)

    def focus_default(self) -> None:
        self.query_one("#corpora").focus()

    @property
    def train_tokens(self) -> int | None:
        if self.stats is None:
            return None
        n = self.stats.tokens.get(self.tokenizer, self.stats.chars if self.tokenizer in ("char", "byte") else None)
        return None if n is None else int(n * (1 - self.val_fraction))

    # -- loading ---------------------------------------------------------------------------------
    def load(self, spec: str, fallback: str | None = None) -> None:
        self.query_one("#data-title", Static).update(f"loading {spec} ...")
        self._load_worker(spec, fallback)

    @work(thread=True, exclusive=True, group="data-load", exit_on_error=False)
    def _load_worker(self, spec: str, fallback: str | None) -> None:
        try:
            name, text, stats, scale = catalog.scan_text(spec)  # streamed: a 1 GB file keeps a 4M-char sample
        except SeqplayError as err:
            self.post_message(self.LoadFailed(spec, str(err)))
            if fallback:
                self._load_worker(fallback, None)
            return
        except OSError as err:
            self.post_message(self.LoadFailed(spec, f"{spec}: {err.strerror or err}; choose another file"))
            return
        self.post_message(self.Loaded(spec, name, text[: catalog.PREVIEW_CHARS], stats))
        for kind in self._kinds_to_count():
            try:
                count, estimated = catalog.token_count(text, kind, scale)
            except ImportError:
                return  # engine.data.tokenizers has not landed: show characters only
            except Exception:
                count, estimated = None, False
            self.post_message(self.TokensCounted(spec, kind, count, estimated))

    def _kinds_to_count(self) -> list[str]:
        """Cheap tokenizers always; BPE (trained on the text, ~1 s/MB) only once it is chosen."""
        return [k for k in TOKENIZERS if k != "bpe" or self.tokenizer == "bpe"]

    @work(thread=True, exclusive=True, group="data-count", exit_on_error=False)
    def _count_worker(self, spec: str, kind: str) -> None:
        try:
            _name, text, _stats, scale = catalog.scan_text(spec)
            count, estimated = catalog.token_count(text, kind, scale)
        except Exception:
            return
        self.post_message(self.TokensCounted(spec, kind, count, estimated))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.spec, self.stats = message.spec, message.stats
        self.query_one("#data-title", Static).update(f"{message.name}")
        self.query_one("#preview", Static).update(message.preview or "(empty)")
        self._show_stats()
        self.post_message(SourceChosen(message.spec))

    @on(TokensCounted)
    def _tokens_counted(self, message: TokensCounted) -> None:
        if self.stats is None or message.spec != self.spec or message.count is None:
            return
        self.stats.tokens[message.kind] = message.count
        if message.estimated:
            self.stats.tokens[f"{message.kind}~"] = 1
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
        table.add_row("distinct characters", f"{s.vocab:,}")
        for kind in TOKENIZERS:
            if kind in s.tokens:
                approx = " (estimated)" if f"{kind}~" in s.tokens else ""
                table.add_row(f"tokens ({kind})", f"{s.tokens[kind]:,}{approx}")
        n = self.train_tokens
        if n is not None:
            table.add_row("training tokens", f"{n:,} ({1 - self.val_fraction:.0%})")

    # -- user input ------------------------------------------------------------------------------
    @on(ListView.Selected, "#corpora")
    def _corpus_selected(self, event: ListView.Selected) -> None:
        if event.item.name:
            self.load(event.item.name)

    @on(DirectoryTree.FileSelected)
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.load(str(event.path))

    @on(Select.Changed, "#tokenizer")
    def _tokenizer_changed(self, event: Select.Changed) -> None:
        self.tokenizer = str(event.value)
        if self.spec and self.stats is not None and self.tokenizer not in self.stats.tokens:
            self._count_worker(self.spec, self.tokenizer)
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
            self.val_fraction = value
            event.input.remove_class("invalid")
            self._show_stats()
        else:
            event.input.add_class("invalid")
