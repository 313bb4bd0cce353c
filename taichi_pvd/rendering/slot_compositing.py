"""Front-to-back compositing of packed samples in plain torch operations, for fixed-size
batches: every array keeps its shape from step to step, and nothing waits on the device, so a
step built on it can be captured in a CUDA graph (distillation does so for torch-only students).

The layout differs from :class:`~taichi_pvd.kernels.marching.PackedSamples` only in what each
sample carries: the slot of its ray and the index of its ray's first sample. Padding samples
(``dt = 0``) point at the extra slot ``n_slots`` and add nothing. There is no early termination:
every sample is composited (the Taichi compositor stops where transmittance falls below its
threshold; the samples it skips weigh less than that threshold together).
"""

from __future__ import annotations

import torch


def composite_slots(sigma: torch.Tensor, rgb: torch.Tensor, dt: torch.Tensor, first_sample: torch.Tensor,
                    ray_slot: torch.Tensor, n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite samples into the colour on black and the opacity of their rays.

    Args:
        sigma: [S] density (1 / world unit), >= 0.
        rgb: [S, 3] colour in [0, 1].
        dt: [S] interval length of each sample (world units); 0 for padding.
        first_sample: [S] int64, index of the first sample of each sample's ray (samples of a
            ray are contiguous and ordered front to back).
        ray_slot: [S] int64, each sample's ray in ``0 .. n_slots - 1``; ``n_slots`` for padding.
        n_slots: number of rays.

    Returns:
        ``(rgb [n_slots, 3], opacity [n_slots])`` float32, differentiable in ``sigma`` and
        ``rgb``; a slot without samples gets zeros.
    """
    # Optical depth is accumulated in float64: the running sum over all rays of a batch grows to
    # about 1e6, where float32 would lose the per-ray differences.
    depth = sigma.double() * dt.double()
    before = torch.cumsum(depth, 0) - depth
    transmittance = torch.exp(before[first_sample] - before)
    weight = (transmittance * -torch.expm1(-depth)).float()
    colour = torch.zeros(n_slots + 1, 3, device=rgb.device, dtype=torch.float32)
    colour = colour.index_add(0, ray_slot, weight[:, None] * rgb.float())
    opacity = torch.zeros(n_slots + 1, device=rgb.device, dtype=torch.float32).index_add(0, ray_slot, weight)
    return colour[:n_slots], opacity[:n_slots]
