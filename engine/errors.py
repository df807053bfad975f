"""Errors a user can act on. ``str(err)`` is one line: what is wrong and what to do about it.

The CLI prints these as ``error: <message>`` with exit code 2 and never a traceback; the worker turns
them into ``ErrorEvent``s; the TUI shows them as notifications.
"""


class SeqplayError(Exception):
    """A problem the user can fix. The message is one line naming the thing and the remedy."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class DataError(SeqplayError):
    """A text file or corpus that cannot be used (missing, binary, empty, unreadable, ...)."""


class ConfigError(SeqplayError):
    """Settings that cannot work (zero sizes, heads not dividing width, absurd sizes, ...)."""


class CheckpointError(SeqplayError):
    """A run folder or checkpoint that is missing, corrupt or not a seqplay checkpoint."""


class TrainingError(SeqplayError):
    """Training cannot go on (loss became NaN/inf, out of memory, ...)."""


class ExportError(SeqplayError):
    """A run that cannot be exported (a model the format cannot express, a missing extra, a failed check)."""
