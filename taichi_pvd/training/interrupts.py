"""SIGTERM handling: a long run asked to stop saves a resumable checkpoint first."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_stop = threading.Event()


def stop_requested() -> bool:
    """True once SIGTERM arrived inside :func:`graceful_termination`."""
    return _stop.is_set()


def request_stop() -> None:
    """Ask the running loop to save and stop at the end of its current step."""
    _stop.set()


@contextlib.contextmanager
def graceful_termination() -> Iterator[None]:
    """Within this block SIGTERM requests a stop (the loop saves a checkpoint and raises
    KeyboardInterrupt) instead of killing the process mid-write. Ctrl-C raises KeyboardInterrupt
    as usual, which the loops also turn into a saved checkpoint."""
    _stop.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop.clear()
