"""The seqplay Textual app: Data, Model, Train, Generate and Runs panes around one worker client.

The app never imports torch. It talks to the engine only through the worker protocol
(``engine.worker.protocol``): commands go into an outbox, a thread (``_pump``) sends them to the client,
polls the client's events, batches them (at most ~20 batches a second) and posts ``EngineEvents``.
Handlers on the UI thread route each event to its pane and drop events of jobs the app no longer
follows. ``engine_factory`` builds the client: ``engine.worker.client.WorkerClient`` in real use, a
``tests.fake_engine.FakeEngine`` in tests.

Panes are listed in ``PANES``; a new view (e.g. insight) registers itself with ``register_pane``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.lazy import Lazy
from textual.widgets import Checkbox, Header, Input, Select, TabbedContent, TabPane
from textual.worker import get_current_worker

from engine.errors import SeqplayError
from engine.worker import protocol as P
from tui.commands import KeysProvider
from tui.messages import EngineEvents, EngineFailed, RunOpened, SourceChosen
from tui.widgets.footer import KeysFooter


class EngineClient(Protocol):
    """What the app needs from ``engine.worker.client.WorkerClient`` (and ``tests.fake_engine.FakeEngine``)."""

    def start(self) -> None: ...
    def send(self, cmd: P.Command) -> None: ...
    def poll(self, timeout: float = 0) -> list[P.Event]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class PaneSpec:
    """A tab of the app: ``target`` is "module:Class" of a Widget, imported when the app composes."""

    id: str
    title: str
    key: str
    target: str


PANES: list[PaneSpec] = [
    PaneSpec("data", "Data", "1", "tui.panes.data:DataPane"),
    PaneSpec("model", "Model", "2", "tui.panes.model:ModelPane"),
    PaneSpec("train", "Train", "3", "tui.panes.train:TrainPane"),
    PaneSpec("generate", "Generate", "4", "tui.panes.generate:GeneratePane"),
    PaneSpec("runs", "Runs", "5", "tui.panes.runs:RunsPane"),
    PaneSpec("insight", "Insight", "6", "tui.panes.insight:InsightPane"),
    PaneSpec("lab", "Lab", "7", "tui.panes.lab:LabPane"),
]


def register_pane(spec: PaneSpec) -> None:
    """Add (or replace, by id) a pane; call before the app starts (e.g. at import of tui.panes.x)."""
    PANES[:] = [p for p in PANES if p.id != spec.id] + [spec]


def _load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def default_engine_factory() -> EngineClient:
    from engine.worker.client import WorkerClient

    return WorkerClient()


def _while_mounted(handler: Callable) -> Callable:
    """Skip a handler that arrives while the app is starting or shutting down (panes absent)."""

    @functools.wraps(handler)
    def wrapper(self: SeqplayApp, *args: Any) -> None:
        try:
            handler(self, *args)
        except NoMatches:
            if self.is_running and not self._engine_closing.is_set() and self._panes_ready:
                raise

    return wrapper


FLUSH_INTERVAL = 0.05  # seconds between EngineEvents batches (token streaming wants 30-50 ms)
POLL_TIMEOUT = 0.02
MAX_BATCHES_IN_FLIGHT = 3


class SeqplayApp(App):
    """seqplay: train, watch, sample and compare sequence models in the terminal."""

    CSS_PATH = "app.tcss"
    TITLE = "seqplay"
    ENABLE_COMMAND_PALETTE = True

    # App-wide keys; the keys of one pane live on that pane (e.g. tui.panes.train.TrainPane.BINDINGS).
    BINDINGS = [
        Binding("t", "train", "Train", tooltip="Start training", id="train"),
        Binding("g", "generate", "Generate", tooltip="Generate from the current model", show=False, id="generate"),
        Binding("escape", "leave", "Leave field", show=False, id="leave"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]
    COMMANDS = App.COMMANDS | {KeysProvider}

    def __init__(self, engine_factory: Callable[[], EngineClient] | None = None, source: str | None = None,
                 device: str = "auto", browse_root: str | None = None, remember: bool = True):
        super().__init__()
        self.browse_root = browse_root  # the Data pane's file browser root (default: the working folder)
        self.engine_factory = engine_factory or default_engine_factory
        self.initial_source = source
        self.device = device
        self.train_job: str | None = None  # the training job whose events we follow
        self.awaiting_start = False  # StartTraining sent, Started not yet seen
        self.training_state = "idle"  # idle | starting | running | paused | stopping
        self._bindings_for: tuple | None = None  # the _binding_state the footer last showed
        self.gen_id: str | None = None
        self.model_run: str | None = None  # run folder generation uses when nothing is training
        self.last_run_dir: str | None = None
        self.dropped_events = 0
        self.events_seen = 0
        self._gen_counter = itertools.count(1)
        self._outbox: queue.Queue[P.Command] = queue.Queue()
        self._engine_closing = threading.Event()
        self._pump_done = threading.Event()
        self._pump_done.set()
        self._pump_started = False
        # Back-pressure: at most MAX_BATCHES_IN_FLIGHT unhandled EngineEvents; beyond that the pump stops
        # polling, so a worker faster than the UI can never grow the app's message queue.
        self._batch_slots = threading.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._panes: dict[str, Any] = {}
        self._panes_ready = False
        self._frozen_for: set[str] = set()  # the panes whose widgets _freeze_heap has moved out of the collector's way
        self._save_requested = False
        self.worker_device: str | None = None  # the device the worker reported for the last run
        from tui import memory

        self.memory: dict[str, Any] = memory.load() if remember else {}
        self.remember = remember

    # -- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        self._tabs = TabbedContent(id="tabs")
        with self._tabs:
            for i, spec in enumerate(PANES):
                with TabPane(f"{spec.title} [{spec.key}]", id=f"tab-{spec.id}"):
                    self._panes[spec.id] = _load(spec.target)(id=spec.id)
                    # hidden panes mount after the first paint: the first screen shows in well under 1 s
                    yield self._panes[spec.id] if i == 0 else Lazy(self._panes[spec.id])
        yield KeysFooter()

    def on_mount(self) -> None:
        import asyncio
        import signal

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not on Windows / a thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._terminated)
        self._panes_ready = True
        self.call_after_refresh(self.pane(PANES[0].id).focus_default)  # keys act on a pane from the start
        self.set_timer(1.0, lambda: self._freeze_heap(PANES[0].id))  # the lazy panes have mounted by then
        for spec in PANES:
            self.bind(spec.key, f"show_tab('{spec.id}')", description=spec.title, show=False)
        self._update_subtitle()

    def pane(self, pane_id: str) -> Any:
        """A pane widget by id (works whichever screen is on top)."""
        return self._panes[pane_id]

    def _binding_state(self) -> tuple:
        """What the app's and the Train pane's ``check_action`` read (the footer's keys follow it)."""
        train = self._panes.get("train")
        return (self.train_job, self.awaiting_start, self.training_state, self.last_run_dir, self.model_run,
                train is not None and train.last is not None, train is not None and train.run_dir())

    def _update_subtitle(self) -> None:
        state = self._binding_state()
        if state != self._bindings_for:  # keys that can act changed: the footer recomposes (costly;
            self._bindings_for = state   # once per batch of worker events it took a third of the UI's time)
            self.refresh_bindings()
        parts = []
        if "data" in self._panes:
            parts.append(f"corpus: {self._panes['data'].spec or '-'}")
        if "model" in self._panes:
            parts.append(f"model: {self._panes['model'].arch}")
        if self.train_job:
            parts.append(f"run: {Path(self.last_run_dir or '').name or self.train_job} ({self.training_state})")
        elif self.model_run:
            parts.append(f"run: {Path(self.model_run).name}")
        self.sub_title = "  ·  ".join(parts)

    # -- engine plumbing ---------------------------------------------------------------------------
    def send(self, cmd: P.Command) -> None:
        """Queue a command for the worker (starting the engine thread on first use)."""
        self._outbox.put(cmd)
        if not self._pump_started:
            self._pump_started = True
            self._pump_done.clear()
            self._engine_closing.clear()
            self._pump()

    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def _pump(self) -> None:
        """Own the client: send queued commands, poll events, post them in batches. Never touches widgets."""
        worker = get_current_worker()
        client: EngineClient | None = None
        buffer: list[P.Event] = []
        last_flush = time.monotonic()
        try:
            while not self._engine_closing.is_set() and not worker.is_cancelled:
                now = time.monotonic()
                backlog = False
                if buffer and (client is None or now - last_flush >= FLUSH_INTERVAL):
                    if self._batch_slots.acquire(blocking=False):
                        self.post_message(EngineEvents(buffer))
                        buffer = []
                        last_flush = now
                    else:
                        backlog = True  # the UI has not handled earlier batches: stop reading for now
                try:
                    if client is None:
                        try:
                            cmd = self._outbox.get(timeout=0.1)
                        except queue.Empty:
                            continue
                        self._outbox.put(cmd)
                        try:
                            with _real_stdio():
                                client = self.engine_factory()
                                client.start()
                        except Exception:
                            _drain(self._outbox)  # the commands that needed this engine are void
                            raise
                    while True:
                        try:
                            client.send(self._outbox.get_nowait())
                        except queue.Empty:
                            break
                    if backlog:
                        time.sleep(POLL_TIMEOUT)
                        continue
                    events = client.poll(timeout=POLL_TIMEOUT)
                except Exception as err:  # a broken client must never kill the app
                    message = str(err) if isinstance(err, SeqplayError) else f"engine failed: {err!r}"
                    self.post_message(EngineFailed(message))
                    client = _close_quietly(client)
                    continue
                if events:
                    buffer.extend(events)
                    if any(isinstance(e, P.ErrorEvent) and e.fatal and not e.job for e in events):
                        client = _close_quietly(client)  # the process died; the next command restarts it
        finally:
            if client is not None:
                try:
                    client.send(P.Shutdown())
                except Exception:
                    pass
                _close_quietly(client)
            self._pump_done.set()

    def shutdown_engine(self, timeout: float = 10.0) -> None:
        """Stop the engine thread and the worker process (saving any running job)."""
        self._engine_closing.set()
        self._pump_done.wait(timeout)

    def _terminated(self) -> None:
        """SIGTERM: leave like quit (the terminal is restored; run_app then stops the worker, which
        saves a checkpoint of a training run)."""
        self.save_memory()
        self.exit(return_code=143)

    def save_memory(self) -> None:
        """Write what the next session restores (Data and Model settings, recent files)."""
        if not self.remember or not self._panes_ready:
            return
        from tui import memory

        try:
            self.memory["data"] = self.pane("data").remembered()
            if self.pane("model").is_mounted:
                self.memory["model"] = self.pane("model").remembered()
        except NoMatches:
            return
        memory.save(self.memory)

    def _freeze_heap(self, pane_id: str) -> None:
        """``gc.freeze()`` once per pane, after it is first shown: every object alive now (the widget tree,
        the corpus' statistics) leaves the cyclic collector's generations. Without it each full collection
        walked about 280,000 objects and took about 200 ms, and a pane switch set one off about every
        other press (Textual churns through strips). Once per pane bounds what a freeze keeps alive that
        later becomes garbage; ``on_unmount`` unfreezes."""
        if pane_id not in self._frozen_for:
            self._frozen_for.add(pane_id)
            gc.freeze()

    def on_unmount(self) -> None:
        if self._frozen_for:
            gc.unfreeze()
            self._frozen_for.clear()
        self.save_memory()
        self._engine_closing.set()
        self._panes_ready = False

    @on(EngineFailed)
    @_while_mounted
    def _engine_failed(self, message: EngineFailed) -> None:
        self.notify(message.message, title="Engine", severity="error", timeout=8)
        self._reset_training("idle")
        if self.gen_id:
            self.pane("generate").generation_failed()
            self.gen_id = None
        self.pane("train").snapshot_failed()

    @on(EngineEvents)
    @_while_mounted
    def _engine_events(self, message: EngineEvents) -> None:
        self._batch_slots.release()
        train_events: list[P.Event] = []
        gen_events: list[P.Event] = []
        insight_events: list[P.Event] = []
        snap_events: list[P.Event] = []  # the Train pane's snapshot sample
        snap_gen = self.pane("train").snap_gen
        finished: P.Finished | None = None
        for ev in message.events:
            self.events_seen += 1
            if isinstance(ev, P.LAB_EVENTS):
                continue  # the Lab pane follows its own jobs (below)
            if isinstance(ev, (P.AnalysisProgress, P.AnalysisDone)):
                insight_events.append(ev)  # the Insight pane follows its own job
            elif isinstance(ev, (P.GeneratedToken, P.GenerationDone)):
                if ev.job == self.gen_id:
                    gen_events.append(ev)
                    if isinstance(ev, P.GenerationDone):
                        self.gen_id = None
                elif snap_gen is not None and ev.job == snap_gen:
                    snap_events.append(ev)
                else:
                    self.dropped_events += 1
            elif isinstance(ev, P.ErrorEvent):
                self._error_event(ev)
            elif isinstance(ev, P.Started):
                if self.awaiting_start:
                    self.awaiting_start = False
                    self.train_job = ev.job
                    self.last_run_dir = ev.run_dir
                    self.worker_device = ev.device or self.worker_device
                    self.training_state = "running"
                    train_events.append(ev)
                else:
                    self.dropped_events += 1
            elif self.awaiting_start and isinstance(ev, P.Finished):
                self._finished(ev)  # the job failed before it started
            elif ev.job == self.train_job and self.train_job is not None and finished is None:
                train_events.append(ev)
                if isinstance(ev, P.StateChanged):
                    self.training_state = ev.state
                elif isinstance(ev, P.Finished):
                    finished = ev
                elif isinstance(ev, P.CheckpointWritten) and self._save_requested:
                    self._save_requested = False
                    self.notify(f"checkpoint saved at step {ev.step}", title="Train", timeout=3)
            else:
                self.dropped_events += 1
        if train_events:
            self.pane("train").apply(train_events)
        if finished is not None:  # after the pane took the batch's earlier events (same order in any batching)
            self._finished(finished)
        if gen_events:
            self.pane("generate").apply(gen_events)
        if snap_events:
            self.pane("train").snapshot_sample(snap_events)
        if insight_events:
            self.pane("insight").apply(insight_events)
        lab_events = [ev for ev in message.events if isinstance(ev, P.LAB_EVENTS)]
        if lab_events and "lab" in self._panes:
            self.pane("lab").apply(lab_events)
        if lab_events and "runs" in self._panes:
            self.pane("runs").card_events(lab_events)  # the Runs pane's WriteCard
        self._update_subtitle()

    def _error_event(self, ev: P.ErrorEvent) -> None:
        self.notify(ev.message, title="Worker", severity="error", timeout=8)
        if ev.fatal:
            if self.train_job or self.awaiting_start:
                self._reset_training("idle")
                self.pane("train").finished("error")
            if self.gen_id:
                self.pane("generate").generation_failed()
                self.gen_id = None
            self.pane("train").snapshot_failed()
        elif ev.job and ev.job == self.gen_id:
            self.pane("generate").generation_failed()
            self.gen_id = None
        elif self.awaiting_start and ev.job != self.train_job:
            self._reset_training("idle")  # training could not start
            self.pane("train").finished("error")

    def _finished(self, ev: P.Finished) -> None:
        self.pane("train").finished(ev.reason)
        self.last_run_dir = ev.run_dir or self.last_run_dir
        self.model_run = self.model_run or self.last_run_dir  # a run the user opened stays the model
        self.pane("generate").run_finished(self.last_run_dir)
        self._reset_training("idle")
        self.notify(f"training {ev.reason} at step {ev.step}", title="Train", timeout=4)
        self.pane("runs").refresh_runs()

    def _reset_training(self, state: str) -> None:
        self.train_job = None
        self.awaiting_start = False
        self.training_state = state

    # -- actions ---------------------------------------------------------------------------------
    def action_show_tab(self, pane_id: str) -> None:
        """Show a pane and focus its default widget. Focus moves first: a field focused on another
        pane (also one the command palette gives focus back to) would pull its tab to the front."""
        base = self.screen_stack[0]
        base.set_focus(None)
        self._tabs.active = f"tab-{pane_id}"
        pane = self.pane(pane_id)
        if hasattr(pane, "focus_default"):
            if pane.is_mounted and pane.children:
                pane.focus_default()
            else:  # a lazy pane right after start-up: focus it once it is mounted
                self.call_after_refresh(lambda: pane.focus_default() if pane.children else None)
        if pane_id not in self._frozen_for:
            self.set_timer(0.5, lambda: self._freeze_heap(pane_id))  # after its first show has built it

    def action_leave(self) -> None:
        """Escape: leave a text field or menu for its pane's default focus; else cancel a generation."""
        focused = self.focused
        if isinstance(focused, Input | Select | Checkbox):
            for spec in PANES:
                pane = self.pane(spec.id)
                if pane in focused.ancestors and hasattr(pane, "focus_default"):
                    pane.focus_default()
                    if self.focused is focused:  # the default is this field itself
                        self.screen.set_focus(None)
                    return
            self.screen.set_focus(None)
            return
        self.action_cancel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "train":  # hidden while a run trains: one run at a time (and the footer fits 80 columns)
            return False if (self.train_job or self.awaiting_start) else True
        return True

    async def action_quit(self) -> None:
        """Quit; while a run trains ask first (quitting stops it and saves a checkpoint)."""
        if not (self.train_job or self.awaiting_start):
            self.save_memory()
            self.exit()
            return
        from tui.dialogs import Confirm

        def done(yes: bool | None) -> None:
            if yes:
                self.save_memory()
                self.exit()

        self.push_screen(Confirm("A run is training. Quit? It stops and saves a checkpoint.", "Quit", "Keep training"),
                         done)

    def action_continue_run(self, run_dir: str | None = None) -> None:
        """Continue a finished run for more steps or more time (asked), on the same chart."""
        run_dir = run_dir or self.last_run_dir
        if not run_dir or self.train_job or self.awaiting_start:
            self.notify("nothing to continue: train a run first (t), or pick one on Runs (5)", severity="warning")
            return
        from engine.runs.folders import read_config
        from tui.dialogs import AskMore

        config = read_config(Path(run_dir))
        if config is None:
            self.notify("this run has no config.json; it cannot be continued", severity="error")
            return
        train = self.pane("train")
        step = train.last.step if train.last and run_dir == self.last_run_dir else None
        elapsed = train.last.elapsed if train.last and run_dir == self.last_run_dir else None

        def done(answer: tuple[str, float] | None) -> None:
            if answer is None:
                return
            kind, amount = answer
            extra: dict[str, Any] = {}
            if kind == "steps":
                base = step if step is not None else int(config.get("steps") or 0)
                extra = {"steps": base + int(amount), "time_budget": 0}  # 0: no limit (a time limit would end it)
            else:
                base_t = elapsed if elapsed is not None else float(config.get("time_budget") or 0)
                extra = {"time_budget": base_t + float(amount), "steps": 0}
            self.action_train(resume_from=run_dir, config={**config, **extra},
                              keep_curve=run_dir == self.last_run_dir)

        self.push_screen(AskMore(step, elapsed), done)

    def action_pane(self, pane_id: str, method: str) -> None:
        """Call ``method`` of a pane (command-palette entries for pane actions)."""
        self.action_show_tab(pane_id)
        getattr(self.pane(pane_id), method)()

    def action_help(self) -> None:
        from tui.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_train(self, resume_from: str | None = None, config: dict | None = None,
                     keep_curve: bool = False) -> None:
        if self.train_job or self.awaiting_start:
            self.notify("a run is already training; stop it with x first", severity="warning")
            return
        try:
            if config is None:
                data = self.pane("data")
                config = self.pane("model").train_config(
                    source=data.spec, tokenizer=data.tokenizer, val_fraction=data.val_fraction,
                    device=self.device,
                ).to_dict()
        except SeqplayError as err:
            self.notify(str(err), title="Cannot train", severity="error", timeout=8)
            return
        self.awaiting_start = True
        self.training_state = "starting"
        self.pane("train").reset(config, keep_curve=keep_curve)
        self.send(P.StartTraining(config=config, resume_from=resume_from))
        self.action_show_tab("train")
        self._update_subtitle()

    def _need_training(self) -> bool:
        if self.train_job is None:
            self.notify("nothing is training; press t to start", severity="warning", timeout=3)
            return False
        return True

    def action_pause_resume(self) -> None:
        if self._need_training():
            self.send(P.Resume() if self.training_state == "paused" else P.Pause())

    def action_single_step(self) -> None:
        if self._need_training():
            if self.training_state != "paused":
                self.send(P.Pause())
            self.send(P.SingleStep())

    def action_stop(self) -> None:
        if self._need_training():
            self.training_state = "stopping"
            self.send(P.Stop(save=True))
            self._update_subtitle()

    def action_save(self) -> None:
        if self._need_training():
            self._save_requested = True
            self.send(P.SaveNow())

    def action_set_lr(self) -> None:
        if not self._need_training():
            return
        from tui.dialogs import AskNumber

        current = self.pane("train").current_lr

        def done(value: float | None) -> None:
            if value is not None and self.train_job:
                self.send(P.SetLearningRate(lr=value))
                self.pane("train").lr_changed(value)
                self.notify(f"learning rate -> {value:g}", timeout=3)

        self.push_screen(AskNumber("New learning rate", current, minimum=0.0), done)

    def action_generate(self) -> None:
        self.action_show_tab("generate")
        self.pane("generate").start_generation()

    def action_cancel(self) -> None:
        if self.gen_id:
            self.send(P.CancelGeneration(gen_id=self.gen_id))

    def new_generation_id(self) -> str:
        self.gen_id = f"gen-{next(self._gen_counter)}"
        return self.gen_id

    @on(SourceChosen)
    @_while_mounted
    def _source_chosen(self, message: SourceChosen) -> None:
        data = self.pane("data")
        self.pane("model").set_corpus(data.vocab_size, data.train_tokens)
        self._update_subtitle()

    @on(RunOpened)
    @_while_mounted
    def _run_opened(self, message: RunOpened) -> None:
        if message.action == "continue":
            self.action_continue_run(message.path)
            return
        self.model_run = message.path
        self.notify(f"opened {Path(message.path).name}: generation uses it now", timeout=3)
        self.pane("generate").set_model_label(Path(message.path).name)
        self.action_show_tab("generate")
        self._update_subtitle()

@contextlib.contextmanager
def _real_stdio() -> Iterator[None]:
    """Spawning a process reads sys.stderr.fileno(); Textual swaps in a capture object without one."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = sys.__stdout__ or saved[0], sys.__stderr__ or saved[1]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _close_quietly(client: EngineClient | None) -> None:
    if client is not None:
        try:
            client.close()
        except Exception:
            pass
    return None


def run_app(source: str | None = None, device: str = "auto") -> int:
    """Build and run the app on the real worker (``seqplay`` calls this); the exit code (143 after
    SIGTERM). The terminal is restored when ``run`` returns; the worker is shut down after that."""
    app = SeqplayApp(source=source, device=device)
    try:
        app.run()
    finally:
        app.shutdown_engine()
    return app.return_code or 0
