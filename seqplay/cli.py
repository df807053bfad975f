"""The ``seqplay`` console script.

``seqplay`` opens the TUI on the default corpus, ``seqplay FILE`` opens it on a file, and
``seqplay COMMAND ...`` runs the same engine headless. Each command lives in ``seqplay/commands/`` and
is imported only when it runs, so ``seqplay --help`` and the TUI start without importing torch.
Errors the user can fix (``engine.errors.SeqplayError``) print as one line and exit with code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute"; the order is the order of ``seqplay --help``.
COMMANDS: dict[str, str] = {
    "corpora": "seqplay.commands.data:corpora",
    "inspect": "seqplay.commands.data:inspect_cmd",
    "archs": "seqplay.commands.models:archs",
    "train": "seqplay.commands.train:train",
    "resume": "seqplay.commands.train:resume",
    "runs": "seqplay.commands.train:runs",
    "generate": "seqplay.commands.generate:generate",
    "compare": "seqplay.commands.compare:compare",
    "gradients": "seqplay.commands.insight:gradients",
    "attention": "seqplay.commands.insight:attention",
    "gates": "seqplay.commands.insight:gates",
    "surprisal": "seqplay.commands.insight:surprisal",
    "table": "seqplay.commands.insight:table",
    "memorization": "seqplay.commands.insight:memorization",
    "bench": "seqplay.commands.bench:bench",
    "timeline": "seqplay.commands.timeline:timeline",
    "export": "seqplay.commands.export:export",
    "card": "seqplay.commands.card:card",
    "replay": "seqplay.commands.card:replay",
}

SHORT_HELP: dict[str, str] = {
    "corpora": "List the built-in corpora.",
    "inspect": "Show statistics and a preview of a file or corpus.",
    "archs": "List the model architectures.",
    "train": "Train a model on a file or corpus (headless).",
    "resume": "Continue a run exactly where it stopped.",
    "runs": "List past runs.",
    "generate": "Generate text from a run or checkpoint.",
    "compare": "Same-randomness A/B of two settings, checkpoints or runs.",
    "gradients": "Gradient norm through time (vanishing/exploding gradients).",
    "attention": "Attention weights over a prompt.",
    "gates": "Gate activations and hidden units over a text.",
    "surprisal": "Per-token loss of a model over a text.",
    "table": "The perplexity table of every run on a corpus.",
    "memorization": "How much of a text is copied from the training text.",
    "bench": "Run the benchmark suite.",
    "timeline": "One same-seed sample from every snapshot of a run.",
    "export": "Export a run to Hugging Face transformers (GPT-2) or ONNX.",
    "card": "Write a run's experiment card (settings, data hash, machine, curves, samples).",
    "replay": "Retrain from an experiment card and check the curve step by step.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            # Listing help must not fail because one command cannot be imported.
            if ctx.resilient_parsing or "--help" in sys.argv:
                return click.Command(name, help=SHORT_HELP.get(name, ""))
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps (for training started from the TUI).")
@click.version_option(package_name="seqplay")
@click.pass_context
def cli(ctx: click.Context, device: str) -> int | None:
    """seqplay: a terminal playground for sequence models.

    Run `seqplay` to open the app on the default built-in corpus, or `seqplay FILE` to open it on a
    text file. The commands below run the same engine headless.
    """
    if ctx.invoked_subcommand is None:
        from engine.settings import setting_of
        from engine.training.config import TrainConfig
        from tui.app import run_app

        setting_of(TrainConfig, "device").check(device)  # the same words as `seqplay train --device`

        return run_app(source=(ctx.obj or {}).get("source"), device=device)


def _split_source(argv: list[str]) -> tuple[list[str], str | None]:
    """``seqplay FILE [options]`` -> (options, FILE): a first positional that is not a command."""
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            continue
        if i > 0 and argv[i - 1] == "--device":
            continue
        if arg in COMMANDS:
            return argv, None
        return argv[:i] + argv[i + 1 :], arg
    return argv, None


def _check_source(source: str) -> None:
    """``seqplay X``: X must be a file or a built-in corpus; else it is a mistyped or unknown command
    (one line, exit code 2) rather than the app opened on nothing."""
    import difflib
    import os

    from corpora import CORPORA
    from engine.errors import ConfigError

    if os.path.exists(source) or source.split(":", 1)[0] in CORPORA:
        return
    close = difflib.get_close_matches(source, list(COMMANDS), n=1, cutoff=0.6)
    if close:
        raise ConfigError(f"no such command {source!r}; did you mean {close[0]!r}?")
    raise ConfigError(f"no such command, file or corpus {source!r}; see `seqplay --help` for the commands "
                      "and `seqplay corpora` for the built-in corpora")


def main(argv: list[str] | None = None) -> None:
    from engine.errors import SeqplayError

    args, source = _split_source(list(sys.argv[1:] if argv is None else argv))
    try:
        if source is not None:
            _check_source(source)
        code = cli.main(args=args, prog_name="seqplay", standalone_mode=False, obj={"source": source})
    except SeqplayError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as err:  # a bad flag, choice or missing argument: one line too, with where to look
        where = f"`{err.ctx.command_path} --help`" if err.ctx is not None else "`seqplay --help`"
        click.echo(f"error: {' '.join(err.format_message().split()).rstrip('.')}; see {where}", err=True)
        sys.exit(2)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
