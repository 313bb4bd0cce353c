"""Ctrl-C and SIGTERM handling: a long run asked to stop finishes its step, saves a resumable
checkpoint, then stops; a save is never cut halfway."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from ..errors import RunTerminated

_stop = threading.Event()
_state = {"depth": 0, "signal": None, "saving": 0, "deferred": False, "interrupted": False}


def stop_requested() -> bool:
    """True once Ctrl-C, SIGTERM or :func:`request_stop` arrived inside
    :func:`graceful_termination`."""
    return _stop.is_set()


def request_stop() -> None:
    """Ask the running loop to save and stop at the end of its current step."""
    _stop.set()


def interrupted_at_once() -> bool:
    """Whether a second Ctrl-C raised KeyboardInterrupt in the middle of a step."""
    return bool(_state["interrupted"])


def interruption() -> KeyboardInterrupt:
    """The exception that stops a run asked to stop: :class:`RunTerminated` after SIGTERM,
    KeyboardInterrupt otherwise."""
    return RunTerminated() if _state["signal"] == signal.SIGTERM else KeyboardInterrupt()


def raise_if_stop_requested() -> None:
    """Raise :func:`interruption` if a stop was asked for (a check between start-up stages)."""
    if _stop.is_set():
        raise interruption()


def _on_signal(signum, frame) -> None:
    if _stop.is_set() and signum == signal.SIGINT:
        if _state["saving"] or _state["interrupted"]:
            # A save is under way, or the run is already on its way to one: answered after it.
            _state["deferred"] = True
            return
        _state["interrupted"] = True
        raise KeyboardInterrupt
    if _state["signal"] is None or signum == signal.SIGTERM:
        _state["signal"] = signum
    _stop.set()


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """A block (a checkpoint save) that a second Ctrl-C does not cut: the KeyboardInterrupt it
    asks for is raised when the block ends, unless the block already ends with an exception."""
    _state["saving"] += 1
    try:
        yield
    finally:
        _state["saving"] -= 1
    if not _state["saving"] and _state["deferred"]:
        _state["deferred"] = False
        raise interruption()


@contextlib.contextmanager
def graceful_termination() -> Iterator[None]:
    """Within this block SIGTERM and a first Ctrl-C request a stop: the loop finishes the
    current step, saves a checkpoint and raises KeyboardInterrupt (:class:`RunTerminated` for
    SIGTERM). Stopping between steps keeps the saved state consistent (a run resumed from it
    continues exactly as if never stopped). A second Ctrl-C raises KeyboardInterrupt at once
    (the loop then saves the state as it is), except during a save (:func:`uninterruptible`),
    which it waits for. A stop asked for during start-up (Taichi's, the scene's) is kept and
    answered at the next check (:func:`raise_if_stop_requested`, the loop's steps).

    Blocks may nest (the CLI's around the library's): the outermost installs the handlers.
    Signals are only handled in the main thread; elsewhere the block only clears old requests.
    """
    if _state["depth"]:
        _state["depth"] += 1
        try:
            yield
        finally:
            _state["depth"] -= 1
        return
    _stop.clear()
    _state.update(signal=None, deferred=False, interrupted=False)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_term = signal.signal(signal.SIGTERM, _on_signal)
    previous_int = signal.signal(signal.SIGINT, _on_signal)
    _state["depth"] = 1
    try:
        yield
    finally:
        _state["depth"] = 0
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
        _stop.clear()
        _state.update(signal=None, deferred=False, interrupted=False)
