"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero.

Messages name the library's own options (``resume=True``, ``batch_rays``), never a command-line
flag. The errors whose advice names options carry the facts as attributes, so that a front end
(the CLI) can word the same advice with its own flags.
"""

from __future__ import annotations

from pathlib import Path


class PvdError(Exception):
    """Base class: a problem with the user's input or environment, with a message saying what was
    wrong and what to do. Never raised for programming errors."""


class SceneError(PvdError):
    """A scene folder, ``transforms.json`` or image that cannot be used."""


class SceneOutOfView(SceneError):
    """No ray of a scene's views crosses its box: the poses cannot be right.

    Attributes:
        views: how many training views the scene has.
    """

    def __init__(self, views: int):
        self.views = views
        super().__init__(
            f"no ray of the {views} training views hits the scene box: check the pose convention "
            "(camera-to-world matrices with OpenGL axes: the camera looks down -Z, +Y up; OpenCV "
            "poses need their y and z axes negated), that the cameras face the scene, their "
            "distance from it (the scene's scale) and the field of view (camera_angle_x)")


class CheckpointError(PvdError):
    """A checkpoint or run directory that is missing, corrupted, of a future format or of the
    wrong architecture."""


class ConfigError(PvdError):
    """An option or configuration value out of range or of the wrong kind."""


class OptionValueError(ConfigError):
    """A value of one option that cannot be used.

    Attributes:
        option: the option's library name (a function parameter or config field, e.g. ``fps``).
        problem: what is wrong, worded to follow the option's name (``"must be positive, got 0"``).
    """

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


def format_bytes(n: float) -> str:
    """``1.5 GiB`` (binary units, from bytes up to exbibytes)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


class NotEnoughMemory(OptionValueError):
    """An option's value whose estimated memory (:mod:`taichi_pvd.memory`) exceeds what the
    device has free.

    Attributes:
        value: the option's value.
        needed, available: the estimate and the free memory, in bytes.
    """

    def __init__(self, option: str, value: object, needed: int, available: int, where: str):
        self.value, self.needed, self.available = value, needed, available
        super().__init__(option, f"{value} needs about {format_bytes(needed)} of memory, more than the "
                                 f"{format_bytes(available)} available {where}: choose a smaller value")


class OptionConflict(ConfigError):
    """Two options that cannot be given together.

    Attributes:
        options: the two options' library names.
    """

    def __init__(self, first: str, second: str):
        super().__init__(f"{first} and {second} contradict each other: choose one")
        self.options = (first, second)


class RunFolderInUse(ConfigError):
    """A new run was asked for in a folder that already holds one.

    Attributes:
        folder: the run folder.
    """

    def __init__(self, folder: Path):
        super().__init__(f"{folder} already holds a run: continue it (resume=True), replace it "
                         "(overwrite=True) or write the new run to another folder")
        self.folder = folder


class NothingToResume(ConfigError):
    """``resume=True`` for a folder that holds no checkpoint.

    Attributes:
        folder: the run folder.
        checkpoint: the checkpoint file name looked for.
    """

    def __init__(self, folder: Path, checkpoint: str):
        super().__init__(f"nothing to resume: {folder} holds no {checkpoint}; "
                         "start a new run with resume=False")
        self.folder = folder
        self.checkpoint = checkpoint


class OutputFolderUnusable(ConfigError):
    """An output folder that cannot be written into (a file, or a folder holding other files).

    Attributes:
        folder: the folder.
        problem: what is wrong with it, worded to follow the folder's name.
    """

    def __init__(self, folder: Path, problem: str):
        super().__init__(f"{folder} {problem}: choose another output folder")
        self.folder = folder
        self.problem = problem


class NoRunFound(CheckpointError):
    """No run folder to pick automatically under a root folder.

    Attributes:
        root: the folder searched.
        model: the architecture looked for (``None``: any).
        scene: the scene name looked for (``None``: any).
    """

    def __init__(self, root: Path, model: str | None = None, scene: str | None = None):
        self.root, self.model, self.scene = root, model, scene
        super().__init__(f"{self.what_is_missing()}: train one first or name the run folder")

    def what_is_missing(self) -> str:
        """``no 'hash' run found under runs/ for scene 'lego'`` (the facts, without advice)."""
        kind = f" {self.model!r}" if self.model else ""
        where = f" for scene {self.scene!r}" if self.scene else ""
        return f"no{kind} run found under {self.root}/{where}"


class ArchitectureMismatch(CheckpointError):
    """A run folder that holds a field of another architecture than the one asked for.

    Attributes:
        folder: the run folder.
        found: the architecture it holds.
        expected: the architecture asked for.
        role: ``"resume"`` (a run to continue) or ``"teacher"`` (a distillation's teacher).
    """

    def __init__(self, folder: Path, found: str, expected: str, role: str):
        self.folder, self.found, self.expected, self.role = folder, found, expected, role
        if role == "teacher":
            advice = f"distil from source={found!r} or give a {expected} run as the teacher"
        else:
            advice = "resume with the same architecture or write the new run to another folder"
        super().__init__(f"{self.what_is_wrong()}: {advice}")

    def what_is_wrong(self) -> str:
        """The facts, without advice."""
        if self.role == "teacher":
            return f"teacher {self.folder} is a {self.found!r} model, not {self.expected!r}"
        return f"{self.folder} holds a {self.found!r} run, not {self.expected!r}"


class TrainingDiverged(PvdError):
    """NaN or Inf appeared in a loss or in parameters; the last good checkpoint is kept."""


class RunDiverged(TrainingDiverged):
    """A run's loss or parameters became NaN or Inf at a step; its last good checkpoint is kept.

    Attributes:
        what: what became non-finite (``"loss became nan"``).
        step: the step at which it was seen.
        run_folder: the run folder holding the last good checkpoint.
    """

    def __init__(self, what: str, step: int, run_folder: Path):
        self.what, self.step, self.run_folder = what, step, run_folder
        super().__init__(f"{self.what_happened()}. Try a lower learning rate (lr) or another seed")

    def what_happened(self) -> str:
        """The facts, without advice."""
        return f"{self.what} at step {self.step}; the last good checkpoint in {self.run_folder} is kept"


class OutputNotWritable(PvdError):
    """A file or folder that could not be written: no space left, a read-only file system, no
    permission, or a file where a folder is needed. Earlier files are left as they were.

    Attributes:
        path: what was being written (``None`` when the system did not say).
        reason: the system's reason, in words (``"no space left on the device"``).
        errno: the system's error number.
    """

    def __init__(self, path: Path | None, reason: str, errno: int, advice: str):
        self.path, self.reason, self.errno = path, reason, errno
        where = f"cannot write {path}" if path is not None else "cannot write the output"
        super().__init__(f"{where}: {reason}; {advice}")


class RunFolderLocked(ConfigError):
    """A run folder that another run (training, distillation) is writing into right now.

    Attributes:
        folder: the run folder.
        holder: what the lock file says of the run holding it (e.g. ``"process 1234"``), or ``""``.
    """

    def __init__(self, folder: Path, holder: str):
        self.folder, self.holder = folder, holder
        by = f" ({holder})" if holder else ""
        super().__init__(f"{folder} is in use by another run{by}: wait for it to finish or write the "
                         "new run to another folder")


class ResumeMismatch(CheckpointError):
    """``resume=True`` with another scene or teacher than the one the run recorded.

    Attributes:
        folder: the run folder.
        what: ``"scene"`` or ``"teacher"``.
        recorded: how the run describes what it was made from (path, architecture).
        given: the same for what was given now.
    """

    def __init__(self, folder: Path, what: str, recorded: str, given: str):
        self.folder, self.what, self.recorded, self.given = folder, what, recorded, given
        super().__init__(f"{self.what_is_wrong()}: resume with the same {what}, or pass force=True "
                         "to continue anyway")

    def what_is_wrong(self) -> str:
        """The facts, without advice."""
        return f"the run in {self.folder} was made from the {self.what} {self.recorded}, not {self.given}"


class ViewerUnavailable(PvdError):
    """The web viewer's optional package (viser) is not installed."""

    def __init__(self):
        super().__init__('the web viewer needs the viser package: pip install -e ".[viewer]" '
                         "(or pip install viser)")


class RunTerminated(KeyboardInterrupt):
    """A run stopped by SIGTERM (rather than Ctrl-C); like :class:`KeyboardInterrupt`, its
    resumable checkpoint was saved first. Not a :class:`PvdError`: nothing was wrong."""


class PlanError(ConfigError):
    """A batch plan (``pvd-ti batch PLAN``) that cannot be run: not TOML, an unknown key,
    architecture or option, a scene whose data is missing, two jobs of the same name.

    Attributes:
        plan: the plan file.
        problem: what is wrong, worded to follow ``plan <file>:``.
    """

    def __init__(self, plan: Path, problem: str):
        super().__init__(f"plan {plan}: {problem}")
        self.plan = plan
        self.problem = problem


class JobGraphError(ConfigError):
    """Jobs whose dependencies cannot be met: a job waiting for one that does not exist, or
    jobs waiting for each other in a cycle."""
