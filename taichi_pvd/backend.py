"""Backend selection: the one place where Taichi is initialised and the torch device chosen.

Taichi is initialised lazily, on the first call to :func:`init` (every kernel wrapper calls it),
never at import time; importing this module imports neither Taichi nor torch. CUDA is used when
torch sees a GPU, the CPU otherwise; ``arch`` forces one.

Taichi prints a banner of its own: ``[Taichi] version ...`` when it is imported (unless the
environment variable ``ENABLE_TAICHI_HEADER_PRINT`` is ``0`` then) and ``[Taichi] Starting on
arch=...`` in every ``ti.init``. :func:`init` hides the second unless asked to show it;
:func:`set_verbose`, called before Taichi is imported, shows or hides both.

Reproducibility: the backward kernels scatter gradients with float atomic adds, whose order
varies between threads, so two multi-threaded CPU runs with the same seed differ in the last
bits. A *deterministic* backend runs Taichi's CPU kernels on one thread, which fixes that order:
CPU runs with the same seed then give bit-for-bit equal parameters. CUDA atomics have no fixed
order; GPU runs are reproducible only up to rounding.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_state: dict[str, object] = {}

#: GPU memory Taichi pre-allocates for its own use. Kernels take torch tensors directly, so
#: Taichi needs little of its own and the rest stays with torch's caching allocator.
TAICHI_DEVICE_MEMORY_GB = 0.5

#: torch intra-op threads on the CPU backend (``PVD_TORCH_THREADS`` sets another number; with
#: ``OMP_NUM_THREADS`` set, torch's own choice is kept). Taichi's kernels run on Taichi's thread
#: pool, and torch's OpenMP threads keep spinning for a while after each torch op, so two torch
#: threads compete with Taichi's pool for the cores; the small MLPs on packed samples gain little
#: from more threads.
CPU_TORCH_THREADS = 1

#: The environment variable Taichi reads when it is imported: ``0`` hides its version line.
TAICHI_HEADER_ENV = "ENABLE_TAICHI_HEADER_PRINT"


class BackendError(RuntimeError):
    """Raised when the requested backend cannot be used (e.g. ``cuda`` without a GPU)."""


def set_verbose(verbose: bool) -> None:
    """Show (``True``) or hide Taichi's banner lines and its info-level log.

    Sets :data:`TAICHI_HEADER_ENV` for the version line, which Taichi prints when it is imported:
    call this before Taichi is first imported (the CLI does, before running a command). The
    ``Starting on arch=...`` line follows the setting at :func:`init`.
    """
    _state["verbose"] = bool(verbose)
    os.environ[TAICHI_HEADER_ENV] = "1" if verbose else "0"


def _resolve_arch(arch: str | None) -> str:
    import torch

    arch = (arch or os.environ.get("PVD_ARCH") or "auto").lower()
    if arch not in ("auto", "cpu", "cuda"):
        raise BackendError(f"unknown arch {arch!r}: use 'cpu', 'cuda' or 'auto'")
    if arch == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if arch == "cuda" and not torch.cuda.is_available():
        if not _state.get("warned_fallback"):  # once, not at every kernel launch's init()
            _state["warned_fallback"] = True
            warnings.warn("no CUDA GPU is visible to torch: falling back to the CPU", stacklevel=3)
        return "cpu"
    return arch


def _resolve_deterministic(deterministic: bool | None) -> bool:
    if deterministic is None:
        return os.environ.get("PVD_DETERMINISTIC", "0").strip().lower() in ("1", "true", "yes")
    return bool(deterministic)


def _cpu_torch_threads() -> int | None:
    """torch threads to use on the CPU backend, or None to keep torch's choice."""
    raw = os.environ.get("PVD_TORCH_THREADS")
    if raw is None:
        return None if "OMP_NUM_THREADS" in os.environ else CPU_TORCH_THREADS
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise BackendError(f"PVD_TORCH_THREADS must be a positive integer, got {raw!r}")
    return threads


def init(arch: str | None = None, *, seed: int = 0, verbose: bool | None = None,
         deterministic: bool | None = None) -> str:
    """Initialise Taichi once and return the backend in use, ``'cpu'`` or ``'cuda'``.

    Args:
        arch: ``'cpu'``, ``'cuda'`` or ``None``/``'auto'`` (CUDA when torch sees a GPU). The
            environment variable ``PVD_ARCH`` is used when ``arch`` is ``None``. Asking for
            ``'cuda'`` without a GPU warns and falls back to the CPU.
        seed: Taichi's random seed (the kernels draw no random numbers themselves; all sampling
            randomness comes from torch generators).
        verbose: print Taichi's ``Starting on arch=...`` line and its info-level log; ``None``
            follows :func:`set_verbose` (hidden by default).
        deterministic: on the CPU, run Taichi on one thread so that runs with the same seed
            are bit-for-bit reproducible (see the module docstring); no effect on CUDA.
            ``None`` reads the environment variable ``PVD_DETERMINISTIC`` (``1`` turns it on).

    On the CPU, torch is set to :data:`CPU_TORCH_THREADS` intra-op threads (see there).

    A second call with a different ``arch`` raises :class:`BackendError`: Taichi cannot switch
    backend inside one process. Asking for a deterministic backend after Taichi started on
    several CPU threads warns, for the same reason.
    """
    resolved = _resolve_arch(arch)
    wanted_deterministic = _resolve_deterministic(deterministic)
    if "arch" in _state:
        if arch not in (None, "auto") and resolved != _state["arch"]:
            raise BackendError(
                f"Taichi is already running on {_state['arch']}; cannot switch to {resolved} "
                "in the same process"
            )
        if wanted_deterministic and _state["arch"] == "cpu" and not _state["deterministic"]:
            warnings.warn(
                "Taichi already runs on several CPU threads in this process, so this run is "
                "reproducible only up to rounding; start a new process to get bit-for-bit "
                "reproducible CPU runs",
                stacklevel=2,
            )
        return str(_state["arch"])
    import taichi as ti
    import torch

    if verbose is None:
        verbose = bool(_state.get("verbose", False))
    kwargs: dict[str, object] = dict(
        default_fp=ti.f32,
        default_ip=ti.i32,
        random_seed=seed,
        offline_cache=True,
        log_level=ti.INFO if verbose else ti.WARN,
    )
    # ti.init prints "[Taichi] Starting on arch=..." to stdout unconditionally.
    banner = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    if resolved == "cuda":
        with banner:
            ti.init(arch=ti.cuda, device_memory_GB=TAICHI_DEVICE_MEMORY_GB, **kwargs)
        # float32 matrix products (the MLPs when mixed precision is off) run on tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        threads = _cpu_torch_threads()
        if wanted_deterministic:
            kwargs["cpu_max_num_threads"] = 1
        with banner:
            ti.init(arch=ti.cpu, **kwargs)
        if threads is not None:
            torch.set_num_threads(threads)
    _state["arch"] = resolved
    _state["deterministic"] = resolved == "cpu" and wanted_deterministic
    return resolved


def is_deterministic() -> bool:
    """Whether runs on this backend are bit-for-bit reproducible: Taichi on one CPU thread
    (initialising Taichi with the automatic choice if needed)."""
    init()
    return bool(_state["deterministic"])


def arch() -> str:
    """The backend in use (initialising Taichi with the automatic choice if needed)."""
    return init()


def device() -> torch.device:
    """The torch device that matches the Taichi backend: ``cuda`` or ``cpu``."""
    import torch

    return torch.device("cuda" if init() == "cuda" else "cpu")
