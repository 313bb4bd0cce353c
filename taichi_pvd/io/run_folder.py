"""The life of a run folder, in one place: claimed (checked, created, locked, cleaned of what
killed runs left), its earlier run replaced only once the new run has written its first
checkpoint, and given back (a new run that failed before its first checkpoint leaves the folder
as it found it).

A new run into a folder holding an earlier run (``overwrite=True``) moves the earlier run's
files into :data:`REPLACED_DIR` inside the folder just before its first step, and deletes them
once its own first checkpoint is written; if it fails first, they are moved back. A process
killed in between leaves :data:`REPLACED_DIR` behind, and the next claim of the folder finishes
the job: the earlier run is put back unless the new one had written its checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from ..errors import NothingToResume, OptionConflict, OutputFolderUnusable, ResumeMismatch, RunFolderInUse, RunFolderLocked
from .runs import CHECKPOINT_NAME, HISTORY_NAME, METRICS_NAME, SNAPSHOTS_DIR
from .storage import storage_errors

#: The lock file of a run folder (held with ``flock`` while a run writes into the folder).
LOCK_NAME = ".lock"
#: Where the files of an earlier run wait while the run replacing it writes its first checkpoint.
REPLACED_DIR = ".replaced-run"
#: The files and folders that make up a run (what replacing a run removes).
RUN_ENTRIES = (CHECKPOINT_NAME, METRICS_NAME, HISTORY_NAME, SNAPSHOTS_DIR, "eval", "render")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def stale_temporary_files(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.<random>.tmp``) in ``folder`` and its
    snapshots: what a save killed halfway leaves."""
    found = list(folder.glob(".*.tmp"))
    found += list(folder.glob(f"{SNAPSHOTS_DIR}/*/.*.tmp"))
    return [p for p in found if p.is_file()]


class RunFolder:
    """A run folder claimed by one run; see the module docstring. Use :func:`claim_run_folder`."""

    def __init__(self, path: Path, resuming: bool, replacing: bool, created: bool, lock_fd: int):
        self.path = path
        #: Run entries in the folder when it was claimed (left alone by :meth:`_undo`).
        self._found = {name for name in RUN_ENTRIES if (path / name).exists()}
        #: Whether the run continues the folder's checkpoint.
        self.resuming = resuming
        #: Whether an earlier run is to be replaced (``overwrite=True`` over a run).
        self.replacing = replacing
        self.created = created
        self._lock_fd = lock_fd
        self._moved_aside = False
        #: Whether this run has written a checkpoint into the folder.
        self.checkpoint_written = False

    def replace_earlier_run(self) -> None:
        """Move the earlier run's files aside (call once the new run's inputs are checked, just
        before its first step); they are deleted at the first checkpoint, or put back if the
        run fails first."""
        if not self.replacing or self._moved_aside:
            return
        aside = self.path / REPLACED_DIR
        if aside.exists():
            _remove(aside)
        aside.mkdir()
        for name in RUN_ENTRIES:
            if (self.path / name).exists():
                os.replace(self.path / name, aside / name)
        self._moved_aside = True

    def on_checkpoint(self, path: Path) -> None:
        """To be called after each checkpoint written into the folder: the first one ends the
        earlier run's reprieve."""
        if self.checkpoint_written:
            return
        self.checkpoint_written = True
        if self._moved_aside:
            shutil.rmtree(self.path / REPLACED_DIR, ignore_errors=True)
            self._moved_aside = False

    def _undo(self) -> None:
        """After a failure before the first checkpoint: remove what this run wrote and put the
        earlier run back."""
        if self.checkpoint_written or self.resuming:
            return
        found = set() if self._moved_aside else self._found
        for name in RUN_ENTRIES:
            if name not in found and (self.path / name).exists():
                _remove(self.path / name)
        if self._moved_aside:
            _restore_replaced(self.path)
            self._moved_aside = False

    def _release(self, failed: bool) -> None:
        try:
            if failed:
                self._undo()
            if self.created and failed and not any(p.name != LOCK_NAME for p in self.path.iterdir()):
                (self.path / LOCK_NAME).unlink(missing_ok=True)
                self.path.rmdir()
        finally:
            os.close(self._lock_fd)  # releases the flock


def _restore_replaced(folder: Path) -> None:
    aside = folder / REPLACED_DIR
    for entry in aside.iterdir():
        target = folder / entry.name
        if target.exists():
            _remove(target)
        os.replace(entry, target)
    aside.rmdir()


def _recover(folder: Path) -> None:
    """Finish what a killed run left: its half-written temporary files are removed, and an
    earlier run it was replacing is put back unless it had written its first checkpoint."""
    for tmp in stale_temporary_files(folder):
        tmp.unlink(missing_ok=True)
    aside = folder / REPLACED_DIR
    if aside.is_dir():
        if (folder / CHECKPOINT_NAME).exists():
            shutil.rmtree(aside)
        else:
            _restore_replaced(folder)


def _lock(folder: Path) -> int:
    """Take the folder's lock without waiting; :class:`RunFolderLocked` when another run holds it."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderLocked(folder, holder) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def claim_run_folder(path: str | os.PathLike, *, resume: bool, overwrite: bool) -> Iterator[RunFolder]:
    """Claim ``path`` for a run for as long as the block lasts.

    A folder holding a run is refused (:class:`RunFolderInUse`) unless ``resume`` (continue it:
    :class:`NothingToResume` when there is none) or ``overwrite`` (replace it, see
    :meth:`RunFolder.replace_earlier_run`); a folder another run is writing into is refused
    with :class:`RunFolderLocked`; one that cannot be created with
    :class:`OutputFolderUnusable`. If the block fails before the run's first checkpoint, the
    folder is left as it was found (a folder it created is removed).
    """
    path = Path(path)
    if resume and overwrite:
        raise OptionConflict("resume", "overwrite")
    if path.exists() and not path.is_dir():
        raise OutputFolderUnusable(path, "is a file")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputFolderUnusable(path, "cannot be created: a part of its path is a file") from None
    except FileNotFoundError:
        raise OutputFolderUnusable(path, "cannot be created there") from None
    with storage_errors(path):
        fd = _lock(path)
    folder = None
    try:
        with storage_errors(path):
            _recover(path)
        has_run = (path / CHECKPOINT_NAME).exists()
        if resume and not has_run:
            raise NothingToResume(path, CHECKPOINT_NAME)
        replacing = not resume and (has_run or (path / METRICS_NAME).exists())
        if replacing and not overwrite:
            raise RunFolderInUse(path)
        folder = RunFolder(path, resuming=resume, replacing=replacing, created=created, lock_fd=fd)
    except BaseException:
        os.close(fd)
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        yield folder
    except BaseException:
        folder._release(failed=True)
        raise
    folder._release(failed=False)


# -- resume checks ---------------------------------------------------------------------------------


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex, first 16 digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


#: Files of a scene whose bytes the fingerprint covers (the rest by name and size).
_SMALL_SCENE_FILES = (".json", ".npy", ".txt")


def scene_fingerprint(path: str | os.PathLike) -> str:
    """A fingerprint of a scene's content (a folder, or one transforms .json file): the bytes of
    its small description files (transforms JSON, poses), and the name and size of every other
    file (the images). A scene copied
    elsewhere keeps its fingerprint; another scene, or the same with other poses, does not."""
    path = Path(path)
    if path.is_dir():
        root, files = path, path.rglob("*")
    else:  # one transforms .json file: it and the other transforms files beside it
        root, files = path.parent, [path, *path.parent.glob("transforms*.json")]
    digest = hashlib.sha256()
    for file in sorted({p for p in files if p.is_file() and not p.name.startswith(".")}):
        rel = file.relative_to(root).as_posix()
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if file.suffix.lower() in _SMALL_SCENE_FILES and size <= 1 << 20:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _describe(section: dict[str, Any]) -> str:
    model = f"{section['model']} run " if section.get("model") else ""
    return f"{model}{section.get('path', '(not recorded)')}"


def check_resume_matches(folder: Path, recorded: dict[str, Any], current: dict[str, Any], *, force: bool) -> None:
    """Refuse (:class:`ResumeMismatch`) to resume the run in ``folder``, whose checkpoint config
    is ``recorded``, with other inputs than it recorded: for each section of ``current``
    (``"scene"``, ``"teacher"``: dicts with ``path``, ``fingerprint`` and optionally ``model``)
    the architecture and the fingerprint must match (the path where the run recorded no
    fingerprint). ``force`` skips the check."""
    if force:
        return
    for what, given in current.items():
        kept = recorded.get(what) or {}
        differs = (
            (kept.get("model") is not None and kept.get("model") != given.get("model"))
            or (kept.get("fingerprint") is not None and kept["fingerprint"] != given.get("fingerprint"))
            or (kept.get("fingerprint") is None and kept.get("path") is not None
                and Path(kept["path"]).resolve() != Path(given["path"]).resolve())
        )
        if differs:
            recorded_text = _describe(kept)
            given_text = _describe(given)
            if recorded_text == given_text:
                recorded_text += " (as it was then)"
                given_text = "its present content"
            raise ResumeMismatch(folder, what, recorded_text, given_text)
