"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""


class PvdError(Exception):
    """Base class: a problem with the user's input or environment, with a message saying what was
    wrong and what to do. Never raised for programming errors."""


class SceneError(PvdError):
    """A scene folder, ``transforms.json`` or image that cannot be used."""


class CheckpointError(PvdError):
    """A checkpoint or run directory that is missing, corrupted, of a future format or of the
    wrong architecture."""


class ConfigError(PvdError):
    """An option or configuration value out of range or of the wrong kind."""


class TrainingDiverged(PvdError):
    """NaN or Inf appeared in a loss or in parameters; the last good checkpoint is kept."""
