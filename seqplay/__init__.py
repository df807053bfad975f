"""The ``seqplay`` command: opens the TUI (``tui``) or runs the engine (``engine``) headless."""

__version__ = "0.1.0"
