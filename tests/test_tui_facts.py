"""The app shows the engine's facts: the parameter count on the Model pane is the count of the model
the trainer builds, for every architecture and tokenizer, on a corpus with more than 10k distinct
words (where a guessed vocabulary would be wrong); and tui/ never starts a subprocess."""

from __future__ import annotations

import ast
import asyncio
import random
from pathlib import Path

import pytest

from engine.errors import SeqplayError
from engine.models.registry import ARCHS
from engine.training.config import TOKENIZERS
from tests.fake_engine import FakeEngine
from tui.app import SeqplayApp

ROOT = Path(__file__).resolve().parent.parent


def many_words(path: Path, distinct: int = 12_000, seed: int = 0) -> Path:
    """A text of ``distinct`` different made-up words (each used once or more) as tab-separated pairs."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zu", "pe", "do", "gi", "fa", "hu", "be"]
    words: set[str] = set()
    while len(words) < distinct:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    stream = ordered + rng.choices(ordered[:500], k=8_000)
    # "source<TAB>target" lines, so seq2seq trains on the same file as the language models
    lines = [" ".join(stream[i:i + 6]) + "\t" + " ".join(stream[i + 6:i + 12]) + "." for i in range(0, len(stream), 12)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def shown_counts(corpus: Path, tokenizer: str) -> dict[str, tuple[int | str, dict]]:
    """arch -> (count on the Model pane or the error it shows, the TrainConfig the app would start)."""
    app = SeqplayApp(engine_factory=FakeEngine, source=str(corpus), device="cpu", remember=False)
    out: dict[str, tuple[int, dict]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        data = app.pane("data")
        loop = asyncio.get_running_loop()

        async def until(cond, what: str, timeout: float = 60.0) -> None:
            end = loop.time() + timeout
            while not cond():
                assert loop.time() < end, f"timed out waiting for {what}"
                await pilot.pause(0.05)

        await until(lambda: data.counts is not None, "token counts")
        if tokenizer != data.tokenizer:
            app.query_one("#tokenizer").value = tokenizer
            await until(lambda: data.counts is not None and data.counts.tokenizer == tokenizer, f"{tokenizer} counts")
        await pilot.press("2")
        model = app.pane("model")
        archs = app.query_one("#archs")
        await until(lambda: model.is_mounted and model.vocab_size == data.vocab_size, "the model pane")
        for i, name in enumerate(ARCHS):
            archs.index = i
            count = app.query_one("#param-count")
            await until(lambda name=name: model.counted_for == name, f"{name} count")
            try:  # the config the app would start: the form with the fast defaults applied
                config, _ = model.resolved(data.spec, data.tokenizer, data.val_fraction, "cpu")
            except SeqplayError:  # refused: the form's own config, unvalidated, so the trainer refuses it too
                config = model._config(data.spec, data.tokenizer, data.val_fraction, "cpu", model._given())
            out[name] = (model.params_shown if model.params_shown is not None else str(count.render()),
                         config.to_dict())
    return out


def built_count(config: dict, runs: Path) -> int | str:
    """The parameter count of the model the trainer builds, or the error that refuses it."""
    from engine.errors import SeqplayError
    from engine.training.trainer import Trainer

    trainer = Trainer({**config, "runs_dir": str(runs), "steps": 1}, lambda event: None)
    try:
        trainer.setup()
    except SeqplayError as err:
        return str(err)
    return trainer.n_params


def check(tokenizer: str, tmp_path: Path) -> None:
    corpus = many_words(tmp_path / "words.txt")
    shown = asyncio.run(shown_counts(corpus, tokenizer))
    assert set(shown) == set(ARCHS)
    built = {name: built_count(config, tmp_path / "runs") for name, (_count, config) in shown.items()}
    assert {name: count for name, (count, _c) in shown.items()} == built


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_model_pane_count_is_the_trained_models_count(tokenizer, tmp_path):
    check(tokenizer, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", [t for t in TOKENIZERS if t not in ("char", "word")])
def test_model_pane_count_is_the_trained_models_count_byte_bpe(tokenizer, tmp_path):
    check(tokenizer, tmp_path)


def test_corpus_has_over_10k_distinct_words(tmp_path):
    text = many_words(tmp_path / "w.txt").read_text()
    assert len({w.strip(".") for w in text.split()}) > 10_000
    assert all(line.count("\t") == 1 for line in text.splitlines())


SPAWNERS = {("subprocess", name) for name in ("run", "Popen", "call", "check_call", "check_output", "getoutput",
                                               "getstatusoutput")}
SPAWNERS |= {("os", name) for name in ("system", "popen", "spawnl", "spawnv", "spawnvp", "execv", "execvp", "fork",
                                        "posix_spawn", "posix_spawnp")}


def test_tui_starts_no_subprocess():
    """No module of tui/ imports subprocess or calls an os spawn function (the app reaches the engine
    only through the worker protocol)."""
    found = []
    for path in sorted((ROOT / "tui").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name in ("subprocess", "multiprocessing") for a in node.names):
                found.append(f"{path.name}:{node.lineno} import")
            elif isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "multiprocessing"):
                found.append(f"{path.name}:{node.lineno} from-import")
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and (node.value.id, node.attr) in SPAWNERS):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert found == []
