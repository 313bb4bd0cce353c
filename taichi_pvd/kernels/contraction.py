"""Scene contraction for unbounded scenes (the L-infinity form of MERF and nerfstudio).

A point ``x`` with ``m = |x|_inf = max(|x_1|, |x_2|, |x_3|)`` maps to

    contract(x) = x                                  if m <= 1,
    contract(x) = (2 - 1 / m) * x / m                otherwise,

the identity inside the unit cube ``[-1, 1]^3`` and a squeeze of the rest of space into the
shell between the unit cube and the cube ``[-2, 2]^3`` (``|contract(x)|_inf = 2 - 1 / m``, so
infinity lands on its faces). The map is continuous, keeps each point on its ray from the
origin, and is monotone along it. A radial distance ``r = m > 1`` becomes ``s = 2 - 1 / r``, so one
unit of contracted length there spans ``dr / ds = r^2 = 1 / (2 - s)^2`` world units: the
:func:`radial_stretch` the occupancy grid scales densities by.

Fields of an unbounded scene see contracted coordinates (their box is ``[-2, 2]^3``); rays are
marched in world space and each sample is contracted before the occupancy grid and the field
see it (:mod:`taichi_pvd.kernels.marching`, whose Taichi form of :func:`contract` computes with
the same operations in the same order).

Before contraction the loader normalises an unbounded scene's world so that the training
cameras fit in the unit cube
(:class:`~taichi_pvd.data.contracted_space.ContractedSpace`, which also holds the two cubes'
sizes).
"""

from __future__ import annotations

import torch

from taichi_pvd.data.contracted_space import CONTRACTED_HALF_SIZE, INNER_HALF_SIZE


def contract(x: torch.Tensor) -> torch.Tensor:
    """Contract world points ``x`` [..., 3] (any float dtype) into ``[-2, 2]^3``; same shape and
    dtype. Points with ``|x|_inf <= 1`` are returned unchanged (bit for bit).

    Example:
        >>> contract(torch.tensor([[0.5, -0.25, 0.0], [4.0, 2.0, 0.0]])).tolist()
        [[0.5, -0.25, 0.0], [1.75, 0.875, 0.0]]
    """
    m = x.abs().amax(dim=-1, keepdim=True)
    outside = m > INNER_HALF_SIZE
    safe = torch.where(outside, m, torch.ones_like(m))
    return torch.where(outside, (CONTRACTED_HALF_SIZE - 1.0 / safe) * (x / safe), x)


def radial_stretch(q: torch.Tensor) -> torch.Tensor:
    """World length per unit of contracted length along a ray from the origin, at contracted
    points ``q`` [..., 3] with ``|q|_inf < 2``: 1 inside the unit cube, ``1 / (2 - |q|_inf)^2``
    outside it. Returns [...], same dtype."""
    m = q.abs().amax(dim=-1)
    gap = (CONTRACTED_HALF_SIZE - m).clamp_min(torch.finfo(q.dtype).tiny)
    return torch.where(m > INNER_HALF_SIZE, 1.0 / (gap * gap), torch.ones_like(m))
