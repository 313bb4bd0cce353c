"""Reading and writing taichi-pvd files: checkpoints (data only, never pickled code)."""

from taichi_pvd.io.checkpoint import FORMAT_VERSION, Checkpoint, load_checkpoint, save_checkpoint

__all__ = ["FORMAT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]
