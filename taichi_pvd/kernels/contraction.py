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
see it (:mod:`taichi_pvd.kernels.marching`). :func:`contract_point` is the Taichi form used by
the marcher, :func:`contract` its torch reference; both compute in the inputs' precision with
the same operations in the same order.
"""

from __future__ import annotations

import taichi as ti
import torch

#: Half-size of the cube the contraction leaves unchanged, world units.
INNER_HALF_SIZE = 1.0
#: Half-size of the cube that holds every contracted point.
CONTRACTED_HALF_SIZE = 2.0


def contracted_aabb() -> torch.Tensor:
    """[2, 3] float32 box of every contracted point, ``[-2, 2]^3`` (min corner, max corner)."""
    return torch.tensor([[-CONTRACTED_HALF_SIZE] * 3, [CONTRACTED_HALF_SIZE] * 3])


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


@ti.func
def contract_point(p):
    """Taichi form of :func:`contract` for one 3-vector ``p`` (float64 in the marcher)."""
    m = ti.max(ti.abs(p[0]), ti.abs(p[1]), ti.abs(p[2]))
    q = p
    if m > INNER_HALF_SIZE:
        q = (CONTRACTED_HALF_SIZE - 1.0 / m) * (p / m)
    return q
