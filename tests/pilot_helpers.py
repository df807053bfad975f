"""What every Pilot test of the app needs: running an async test, and waiting for a condition."""

from __future__ import annotations

import asyncio
import functools


def sync(fn):
    """Run an async test with asyncio.run (no async pytest plugin is installed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def dialog_closed(pilot, timeout: float = 10.0) -> None:
    """Wait until no modal dialog is on top: a dialog's result callback runs before its screen is popped,
    so a key pressed straight after it could still land in the dialog."""
    from textual.screen import ModalScreen

    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ModalScreen), timeout, "the dialog to close")
