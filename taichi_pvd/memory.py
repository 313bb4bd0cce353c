"""Memory estimates checked before allocating: a size that cannot fit is refused with the
figure, instead of an allocation traceback or the out-of-memory killer.

The estimates are lower bounds of what a run holds at once (buffers, gradients, Adam's two
moments); a size they refuse cannot work, a size they pass may still be tight.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import NotEnoughMemory

if TYPE_CHECKING:
    import torch

#: Bytes a training or distillation ray holds during a step at the least: origins,
#: directions, targets, background, jitter, composited colour, their gradients.
BYTES_PER_TRAINING_RAY = 512
#: Bytes an occupancy grid holds per cell during an update: density, cell index, the
#: update's fresh values and masks, the bitfield.
BYTES_PER_OCCUPANCY_CELL = 24
#: Bytes the demo renderer holds per traced ray (float64 intermediates), measured.
BYTES_PER_DEMO_RAY = 400
#: Bytes a rendered pixel holds at the least: its ray, colour, depth and opacity, their sums
#: over sub-pixel rays, and the frame handed back.
BYTES_PER_RENDERED_PIXEL = 96
#: Copies of every field parameter during training: value, gradient, Adam's two moments.
COPIES_PER_PARAMETER = 4


def available_bytes(device: torch.device | str = "cpu") -> tuple[int, str]:
    """Memory free for a run on ``device`` in bytes, and where (``"on the GPU"``, ``"in RAM"``)."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), "on the GPU"
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "in RAM"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "in RAM"


def check_fits(option: str, value: object, needed: int, device: torch.device | str = "cpu") -> None:
    """Raise :class:`NotEnoughMemory` when ``needed`` bytes (what ``option=value`` costs)
    exceed the memory available on ``device``."""
    available, where = available_bytes(device)
    if needed > available:
        raise NotEnoughMemory(option, value, needed, available, where)


def check_loop_memory(batch_rays: int, device: torch.device | str, grid_resolution: int | None = None) -> None:
    """Refuse a ray batch, or an occupancy grid of ``grid_resolution`` cells per axis, that
    cannot fit on ``device``."""
    check_fits("batch_rays", batch_rays, batch_rays * BYTES_PER_TRAINING_RAY, device)
    if grid_resolution is not None:
        check_fits("grid_resolution", grid_resolution, grid_resolution**3 * BYTES_PER_OCCUPANCY_CELL, device)


def check_field_memory(field_config, device: torch.device | str) -> None:
    """Refuse a field whose parameters (``field_config.parameter_estimate()``, with their
    gradients and Adam's moments) cannot fit on ``device``, naming the option that sizes it."""
    parameters, sizes = field_config.parameter_estimate()
    option, value = next(iter(sizes.items()))
    check_fits(option, value, parameters * 4 * COPIES_PER_PARAMETER, device)


def check_demo_memory(option: str, value: int, pixels: int, samples_per_side: int = 2) -> None:
    """Refuse a demo image size (``option=value``, ``pixels`` per image) whose rendering cannot
    fit in RAM."""
    check_fits(option, value, pixels * samples_per_side**2 * BYTES_PER_DEMO_RAY, "cpu")


def check_render_memory(width: int, height: int, device: torch.device | str) -> None:
    """Refuse a frame size (option ``size``, ``WxH``) whose rendering cannot fit on ``device``."""
    check_fits("size", f"{width}x{height}", width * height * BYTES_PER_RENDERED_PIXEL, device)
