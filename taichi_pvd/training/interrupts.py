"""Ctrl-C and SIGTERM handling: a long run asked to stop finishes its step, saves a resumable
checkpoint, then stops."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_stop = threading.Event()


def stop_requested() -> bool:
    """True once Ctrl-C, SIGTERM or :func:`request_stop` arrived inside
    :func:`graceful_termination`."""
    return _stop.is_set()


def request_stop() -> None:
    """Ask the running loop to save and stop at the end of its current step."""
    _stop.set()


def _on_sigint(signum, frame) -> None:
    if _stop.is_set():
        raise KeyboardInterrupt
    _stop.set()


@contextlib.contextmanager
def graceful_termination() -> Iterator[None]:
    """Within this block SIGTERM and a first Ctrl-C request a stop: the loop finishes the
    current step, saves a checkpoint and raises KeyboardInterrupt. Stopping between steps keeps
    the saved state consistent (a run resumed from it continues exactly as if never stopped).
    A second Ctrl-C raises KeyboardInterrupt at once; the loop then saves the state as it is.

    Signals are only handled in the main thread; elsewhere the block only clears old requests.
    """
    _stop.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: _stop.set())
    previous_int = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
        _stop.clear()
