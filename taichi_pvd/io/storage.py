"""The one place where the file system's refusals become user errors: a full disk, a read-only
mount, a missing permission, a file where a folder is needed. Everything the library writes
(checkpoints, metrics, history, images, videos, plots) goes through :func:`storage_errors` at
its public entry points, so each such failure is one :class:`OutputNotWritable`, never a
traceback; and new files get the permissions the user's umask asks for.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

from ..errors import OutputNotWritable, PvdError

#: errno -> (the reason in words, what to do). Only errors the user can fix; anything else
#: stays a bug.
_USER_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space or write to another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or write to another disk"),
    errno.EROFS: ("the file system is read-only", "write to a folder on a writable disk"),
    errno.EACCES: ("permission denied", "write to a folder you may write into"),
    errno.EPERM: ("operation not permitted", "write to a folder you may write into"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EEXIST: ("a file is in the way", "choose another path"),
    errno.EISDIR: ("it is a folder, not a file", "choose a file name"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (torch.save reports a
    full disk as ``RuntimeError: unexpected pos`` with the OSError only in the chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def storage_error(exc: BaseException, path: str | os.PathLike | None = None) -> OutputNotWritable | None:
    """The :class:`OutputNotWritable` that ``exc`` (or an exception in its chain) stands for, or
    None when it is not a file-system refusal the user can fix. ``path`` names what was being
    written where the system's error does not."""
    for link in _chain(exc):
        if isinstance(link, OutputNotWritable):
            return link
        if isinstance(link, PvdError):
            return None  # already a user error that says what to do
        if isinstance(link, OSError) and link.errno in _USER_ERRORS:
            reason, advice = _USER_ERRORS[link.errno]
            named = link.filename if link.filename is not None else path
            return OutputNotWritable(None if named is None else Path(os.fsdecode(named)), reason, link.errno, advice)
    return None


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike | None = None) -> Iterator[None]:
    """Within this block, a file-system refusal the user can fix (see :func:`storage_error`)
    raises :class:`OutputNotWritable` instead."""
    try:
        yield
    except Exception as exc:
        converted = storage_error(exc, path)
        if converted is None or converted is exc:
            raise
        raise converted from exc


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(fd: int) -> None:
    """Give a file made by :func:`tempfile.mkstemp` (always mode 0600) the mode an ordinary new
    file gets: 0666 less the umask."""
    os.fchmod(fd, 0o666 & ~umask())
