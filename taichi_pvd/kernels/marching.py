"""Ray marching through an occupancy grid into packed samples, with empty-space skipping.

Each ray ``o + t d`` is clipped to the grid's box (slab test) and to ``[near, far]``, giving
``[t_min, t_max)``. Candidate samples lie on a fixed lattice, ``t_0 = t_min + jitter * dt(t_min)``:

* ``cone_angle == 0``: ``t_k = t_0 + k * step_size``, ``dt = step_size``;
* ``cone_angle > 0``: ``t_{k+1} = t_k + dt(t_k)``, ``dt(t) = clip(t * cone_angle, step_size,
  max_step_size)`` (Instant-NGP's cone stepping).

A candidate ``t_k < t_max`` is kept iff its position ``o + t_k d`` falls in an occupied cell;
at most ``max_samples_per_ray`` are kept per ray (the first ones along it). Kept samples are
described by their midpoint ``t_k`` and interval length ``dt(t_k)``.

The Taichi marcher skips an empty cell in one jump to the first lattice point at or after the
cell's exit; it confirms the jump by locating the last skipped lattice point, which must still
lie in the same cell. The computed cell index of ``o + t d`` is a monotone function of ``t`` on
every axis (each floating-point operation on the way is monotone), so every lattice point in
between lies in that empty cell too, and the kept samples are exactly those of brute-force
stepping in the same arithmetic. The argument holds in any precision: a jump is taken only
when confirmed in the arithmetic the marcher uses, and cell indices are clamped into the grid,
so no nudging across faces is needed: where rounding puts the confirming point in another cell,
the marcher steps one candidate instead of jumping.

Precision: lattice, box clipping and cell look-ups are computed in float64 on the CPU, like the
brute-force reference (:func:`march_rays_reference`): rounding differences between the two (e.g.
fused multiply-adds) would need a candidate within ~1e-16 of a cell face to change a decision,
and the CPU tests compare samples exactly. On CUDA they are computed in float64 on the
data-centre cards that run it at half of float32's rate (on an H100 float32 marching is the
slower one: it confirms fewer jumps and steps more candidates one by one) and in float32 on the
others, GeForce cards among them, which run float64 at 1/32 to 1/64 of float32's rate
(:func:`default_precision`); ``precision`` chooses either anywhere. Float32 keeps the
reference's samples up to its rounding (``tests/marching_checks.py`` states and checks the
tolerance): each candidate's ``t`` and position within a few float32 units in the last place of
the ray's scale at a constant step (with cone or contracted steps, whose ``t`` is a running sum,
within a relative 2e-3 of ``t``, and contracted positions within 2e-5); a candidate that
rounding moves across a cell face or the ray's end may be kept by one and not the other (none in
random rays; on rays laid along cell faces, one sample in ten). Outputs are float32 in every
case.

Contracted grids (unbounded scenes, ``grid.contracted``): the rays are not clipped to a box,
only to ``[near, far)``, and step through world space with steps that grow with distance: at
world position ``p`` the step is ``max(dt(t), step_size * max(1, |p|_inf)^2)``, always
incremental (``t_{k+1} = t_k + dt_k``). Inside the unit cube that is the rule above; outside,
one step spans about ``step_size`` of contracted length (the world length of a contracted
length there grows as ``|p|^2``, :func:`~taichi_pvd.kernels.contraction.radial_stretch`), i.e.
samples uniform in disparity, so a ray reaches any ``far`` in about ``1 / step_size`` more
steps. Each candidate's world position is contracted (:mod:`taichi_pvd.kernels.contraction`) before
its cell is looked up, and a kept sample's position is its contracted point, the coordinate
fields see; ``t`` and ``dt`` stay world distances, so compositing is unchanged. Empty cells are
skipped by their exit as above only when the whole cell lies strictly inside the unit cube,
where the contraction is the identity (the skipped points then lie inside it too, by the same
monotonicity, and their steps follow the rule above); elsewhere the marcher visits every
candidate.

Two passes, no Python loop over rays or samples: a count kernel, ``torch.cumsum`` for
``ray_starts``, and a fill kernel that marches again and writes the samples.
"""

import math
from dataclasses import dataclass
from typing import Protocol

import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.data.contracted_space import CONTRACTED_HALF_SIZE, INNER_HALF_SIZE
from taichi_pvd.errors import ConfigError
from taichi_pvd.kernels.contraction import contract
from taichi_pvd.kernels.fast_launch import fast_launch

_VEC3D = ti.types.vector(3, ti.f64)
#: Threads per block of the one-thread-per-ray loops: small, so that a batch of 8192 rays
#: spreads over all of an H100's 132 SMs.
_RAYS_PER_BLOCK = 64
#: Stands for "no intersection" / "never" along a ray (finite in float32 and float64: the
#: kernels avoid infinities).
_FAR_AWAY = 1e30


class OccupancyLookup(Protocol):
    """What marching reads of an occupancy grid
    (:class:`~taichi_pvd.rendering.occupancy.OccupancyGrid` is one): ``resolution^3`` cells over
    the box ``bounds``, cell ``(ix, iy, iz)`` at flat index ``(ix * R + iy) * R + iz``, its
    occupancy in bit ``c % 8`` of byte ``c // 8`` of ``bitfield``."""

    resolution: int
    """Cells per axis ``R``."""
    bounds: tuple[tuple[float, ...], tuple[float, ...]]
    """``(min, max)`` corners of the box, world units (contracted coordinates when
    ``contracted``)."""
    contracted: bool
    """Whether samples are contracted before their cell is looked up."""
    bitfield: torch.Tensor
    """[R^3 / 8] uint8 occupancy bits."""

    def occupied_mask(self) -> torch.Tensor:
        """[R^3] bool, the bits of ``bitfield`` in flat cell order."""
        ...


@dataclass
class PackedSamples:
    """Samples of N rays packed contiguously: ray ``i`` owns samples
    ``ray_starts[i] : ray_starts[i] + ray_counts[i]``, in order of increasing ``t``.

    Attributes:
        ray_indices: [S] int32, the ray of each sample.
        ray_starts: [N] int32, first sample of each ray (exclusive cumsum of ``ray_counts``).
        ray_counts: [N] int32, samples of each ray (0 for a ray that misses every occupied cell).
        t: [S] float32, distance of each sample (interval midpoint) along its ray, world units.
        dt: [S] float32, length of each sample's interval, world units.
        positions: [S, 3] float32, world positions ``origin + t * direction`` (their
            contracted points for a contracted grid).
        directions: [S, 3] float32, the (unit) direction of each sample's ray.
    """

    ray_indices: torch.Tensor
    ray_starts: torch.Tensor
    ray_counts: torch.Tensor
    t: torch.Tensor
    dt: torch.Tensor
    positions: torch.Tensor
    directions: torch.Tensor

    @property
    def n_samples(self) -> int:
        """Total number of samples ``S``."""
        return int(self.t.shape[0])


@dataclass(frozen=True)
class _Geometry:
    """Grid geometry in Python floats (float64), shared by the kernel and the reference."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    inv_cell: tuple[float, float, float]
    cell_size: tuple[float, float, float]
    resolution: int
    contracted: bool


def _geometry(grid: OccupancyLookup) -> _Geometry:
    lo, hi = grid.bounds
    r = grid.resolution
    return _Geometry(
        lo=tuple(lo), hi=tuple(hi),
        inv_cell=tuple(r / (b - a) for a, b in zip(lo, hi)),
        cell_size=tuple((b - a) / r for a, b in zip(lo, hi)),
        resolution=r,
        contracted=grid.contracted,
    )


# -- Taichi kernels -----------------------------------------------------------------------------


@ti.func
def _ray_box(o, d, lo, hi, real: ti.template()):
    """Slab test: ``(t_enter, t_exit)``, with ``t_enter > t_exit`` when the line misses."""
    t_enter = real(-_FAR_AWAY)
    t_exit = real(_FAR_AWAY)
    for a in ti.static(range(3)):
        if d[a] != 0.0:
            t1 = (lo[a] - o[a]) / d[a]
            t2 = (hi[a] - o[a]) / d[a]
            t_enter = ti.max(t_enter, ti.min(t1, t2))
            t_exit = ti.min(t_exit, ti.max(t1, t2))
        elif o[a] < lo[a] or o[a] > hi[a]:
            t_enter = real(_FAR_AWAY)
            t_exit = real(-_FAR_AWAY)
    return t_enter, t_exit


@ti.func
def _cell_of(p, lo, inv_cell, resolution, real: ti.template()):
    """Integer cell coordinates of position ``p``, clamped into the grid."""
    top = ti.cast(resolution - 1, real)
    c = ti.Vector([0, 0, 0], dt=ti.i32)
    for a in ti.static(range(3)):
        c[a] = ti.cast(ti.floor(ti.min(ti.max((p[a] - lo[a]) * inv_cell[a], 0.0), top)), ti.i32)
    return c


@ti.func
def _contract_point(p):
    """Taichi form of :func:`~taichi_pvd.kernels.contraction.contract` for one 3-vector ``p``."""
    m = ti.max(ti.abs(p[0]), ti.abs(p[1]), ti.abs(p[2]))
    q = p
    if m > INNER_HALF_SIZE:
        q = (CONTRACTED_HALF_SIZE - 1.0 / m) * (p / m)
    return q


@ti.func
def _lookup_point(p, contracted):
    """The grid coordinate of world position ``p``: ``p`` itself, or its contraction."""
    q = p
    if contracted:
        q = _contract_point(p)
    return q


@ti.func
def _inside_identity_region(c, lo, cell_size, real: ti.template()):
    """Whether cell ``c`` lies strictly inside the unit cube, where contraction is the identity."""
    inside = True
    for a in ti.static(range(3)):
        cell_lo = lo[a] + ti.cast(c[a], real) * cell_size[a]
        cell_hi = lo[a] + ti.cast(c[a] + 1, real) * cell_size[a]
        if cell_lo <= -INNER_HALF_SIZE or cell_hi >= INNER_HALF_SIZE:
            inside = False
    return inside


@ti.func
def _is_occupied(bitfield: ti.template(), c, resolution):
    idx = (c[0] * resolution + c[1]) * resolution + c[2]
    return (ti.cast(bitfield[idx >> 3], ti.i32) >> (idx & 7)) & 1


@ti.func
def _cell_exit(o, d, lo, cell_size, c, real: ti.template()):
    """Distance along the ray at which it leaves cell ``c`` (geometrically)."""
    t_exit = real(_FAR_AWAY)
    for a in ti.static(range(3)):
        if d[a] != 0.0:
            face = c[a] + 1 if d[a] > 0.0 else c[a]
            t_exit = ti.min(t_exit, (lo[a] + ti.cast(face, real) * cell_size[a] - o[a]) / d[a])
    return t_exit


@ti.func
def _step_at(t, step_size, cone_angle, max_step_size):
    dt = step_size
    if cone_angle > 0.0:
        dt = ti.min(ti.max(t * cone_angle, step_size), max_step_size)
    return dt


@ti.func
def _contracted_step(dt, p, step_size):
    """Step ``dt`` at world position ``p``, lengthened outside the unit cube to about
    ``step_size`` of contracted length (see the module notes)."""
    m = ti.max(ti.abs(p[0]), ti.abs(p[1]), ti.abs(p[2]), INNER_HALF_SIZE)
    return ti.max(dt, step_size * m * m)


@ti.func
def _march_ray(i, origins: ti.template(), directions: ti.template(), near: ti.template(),
               far: ti.template(), jitter: ti.template(), bitfield: ti.template(), lo, hi,
               inv_cell, cell_size, resolution, contracted, step_size, cone_angle, max_step_size,
               limit, start, ray_indices: ti.template(), t_out: ti.template(),
               dt_out: ti.template(), positions: ti.template(), dirs_out: ti.template(),
               fill: ti.template(), real: ti.template()):
    """March ray ``i``: returns the number of kept samples (at most ``limit``); with ``fill``
    also writes them from index ``start`` on. ``contracted`` (0 or 1) selects the contracted
    mode (unclipped rays, contracted look-ups and positions). Computes in ``real`` (``ti.f32``
    or ``ti.f64``), in which the geometry arguments must come."""
    o = ti.Vector([ti.cast(origins[i, a], real) for a in ti.static(range(3))])
    d = ti.Vector([ti.cast(directions[i, a], real) for a in ti.static(range(3))])
    t_enter, t_exit = _ray_box(o, d, lo, hi, real)
    if contracted:
        t_enter = real(-_FAR_AWAY)
        t_exit = real(_FAR_AWAY)
    t_min = ti.max(t_enter, ti.cast(near[i], real))
    t_max = ti.min(t_exit, ti.cast(far[i], real))
    n = 0
    if t_min < t_max:
        dt0 = _step_at(t_min, step_size, cone_angle, max_step_size)
        if contracted:
            dt0 = _contracted_step(dt0, o + t_min * d, step_size)
        t0 = t_min + ti.cast(jitter[i], real) * dt0
        t = t0
        k = 0
        lattice = cone_angle == 0.0 and not contracted
        while n < limit and t < t_max:
            p_world = o + t * d
            p = _lookup_point(p_world, contracted)
            c = _cell_of(p, lo, inv_cell, resolution, real)
            dt = _step_at(t, step_size, cone_angle, max_step_size)
            if contracted:
                dt = _contracted_step(dt, p_world, step_size)
            t_next = t + dt
            if _is_occupied(bitfield, c, resolution):
                if ti.static(fill):
                    s = start + n
                    ray_indices[s] = i
                    t_out[s] = ti.cast(t, ti.f32)
                    dt_out[s] = ti.cast(dt, ti.f32)
                    for a in ti.static(range(3)):
                        positions[s, a] = ti.cast(p[a], ti.f32)
                        dirs_out[s, a] = directions[i, a]
                n += 1
                k += 1
            elif not contracted or _inside_identity_region(c, lo, cell_size, real):
                t_leave = ti.min(_cell_exit(o, d, lo, cell_size, c, real), t_max)
                if lattice:
                    k_jump = k + 1
                    k_exit = ti.ceil((t_leave - t0) / step_size)
                    if k_exit > ti.cast(k + 1, real):
                        k_last = ti.cast(k_exit, ti.i32) - 1
                        p_last = o + (t0 + ti.cast(k_last, real) * step_size) * d
                        if (_cell_of(p_last, lo, inv_cell, resolution, real) == c).all():
                            k_jump = k_last + 1
                    k = k_jump
                else:
                    t_last = t
                    t_after = t_next
                    while t_after < t_leave:
                        t_last = t_after
                        t_after = t_last + _step_at(t_last, step_size, cone_angle, max_step_size)
                    if t_last > t:
                        p_last = _lookup_point(o + t_last * d, contracted)
                        if (_cell_of(p_last, lo, inv_cell, resolution, real) == c).all():
                            t_next = t_after
            if lattice:
                t = t0 + ti.cast(k, real) * step_size
            else:
                t = t_next
    return n


_F32_1D = ti.types.ndarray(dtype=ti.f32, ndim=1)
_F32_2D = ti.types.ndarray(dtype=ti.f32, ndim=2)
_I32_1D = ti.types.ndarray(dtype=ti.i32, ndim=1)
_U8_1D = ti.types.ndarray(dtype=ti.u8, ndim=1)


@fast_launch
@ti.kernel
def _count_kernel(origins: _F32_2D, directions: _F32_2D, near: _F32_1D, far: _F32_1D,
                  jitter: _F32_1D, bitfield: _U8_1D, lo: _VEC3D, hi: _VEC3D, inv_cell: _VEC3D,
                  cell_size: _VEC3D, resolution: ti.i32, contracted: ti.i32, step_size: ti.f64,
                  cone_angle: ti.f64, max_step_size: ti.f64, max_samples: ti.i32,
                  counts: _I32_1D, real: ti.template()):
    ti.loop_config(block_dim=_RAYS_PER_BLOCK)
    for i in range(origins.shape[0]):
        # Counting writes no samples: the output arguments are placeholders, never touched.
        counts[i] = _march_ray(i, origins, directions, near, far, jitter, bitfield, ti.cast(lo, real),
                               ti.cast(hi, real), ti.cast(inv_cell, real), ti.cast(cell_size, real),
                               resolution, contracted, ti.cast(step_size, real), ti.cast(cone_angle, real),
                               ti.cast(max_step_size, real), max_samples, 0, counts, near, near,
                               origins, origins, False, real)


@fast_launch
@ti.kernel
def _fill_kernel(origins: _F32_2D, directions: _F32_2D, near: _F32_1D, far: _F32_1D,
                 jitter: _F32_1D, bitfield: _U8_1D, lo: _VEC3D, hi: _VEC3D, inv_cell: _VEC3D,
                 cell_size: _VEC3D, resolution: ti.i32, contracted: ti.i32, step_size: ti.f64,
                 cone_angle: ti.f64, max_step_size: ti.f64, ray_starts: _I32_1D, counts: _I32_1D,
                 ray_indices: _I32_1D, t_out: _F32_1D, dt_out: _F32_1D, positions: _F32_2D,
                 dirs_out: _F32_2D, real: ti.template()):
    ti.loop_config(block_dim=_RAYS_PER_BLOCK)
    for i in range(origins.shape[0]):
        _march_ray(i, origins, directions, near, far, jitter, bitfield, ti.cast(lo, real), ti.cast(hi, real),
                   ti.cast(inv_cell, real), ti.cast(cell_size, real), resolution, contracted,
                   ti.cast(step_size, real), ti.cast(cone_angle, real), ti.cast(max_step_size, real),
                   counts[i], ray_starts[i], ray_indices, t_out, dt_out, positions, dirs_out,
                   True, real)


# -- public API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rays:
    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    jitter: torch.Tensor


def _per_ray(value: float | torch.Tensor, n: int, device: torch.device, name: str) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=torch.float32, device=device).detach()
    if value.dim() == 0:
        return value.expand(n).contiguous()
    if value.shape != (n,):
        raise ValueError(f"{name} must be a scalar or a [N={n}] tensor, got {tuple(value.shape)}")
    return value.contiguous()


def _check_inputs(origins: torch.Tensor, directions: torch.Tensor, grid: OccupancyLookup,
                  geo: _Geometry, near: float | torch.Tensor, far: float | torch.Tensor,
                  step_size: float,
                  cone_angle: float, max_samples_per_ray: int, jitter: float | torch.Tensor | None,
                  max_step_size: float | None) -> tuple[_Rays, float]:
    if origins.dim() != 2 or origins.shape[1] != 3 or directions.shape != origins.shape:
        raise ValueError(
            f"origins and directions must both be [N, 3], got {tuple(origins.shape)} and "
            f"{tuple(directions.shape)}"
        )
    if not step_size > 0.0 or not math.isfinite(step_size):
        raise ConfigError(f"step_size must be a positive number of world units, got {step_size}")
    if not cone_angle >= 0.0 or not math.isfinite(cone_angle):
        raise ConfigError(f"cone_angle must be >= 0, got {cone_angle}")
    if max_samples_per_ray < 1:
        raise ConfigError(f"max_samples_per_ray must be >= 1, got {max_samples_per_ray}")
    diagonal = math.dist(geo.lo, geo.hi)
    if diagonal / step_size > 2**30:
        raise ConfigError(
            f"step_size {step_size} is too small for a box of diagonal {diagonal}: more than "
            "2^30 steps would cross it; use a larger step"
        )
    if max_step_size is None:
        max_step_size = max(step_size, math.hypot(*geo.cell_size))
    if not max_step_size >= step_size:
        raise ConfigError(f"max_step_size ({max_step_size}) must be >= step_size ({step_size})")
    device = grid.bitfield.device
    n = origins.shape[0]
    rays = _Rays(
        origins=origins.detach().to(device, torch.float32).contiguous(),
        directions=directions.detach().to(device, torch.float32).contiguous(),
        near=_per_ray(near, n, device, "near"),
        far=_per_ray(far, n, device, "far"),
        jitter=_per_ray(0.0 if jitter is None else jitter, n, device, "jitter"),
    )
    return rays, float(max_step_size)


#: Marching arithmetic by ``precision`` name.
_REAL_TYPES = {"float32": ti.f32, "float64": ti.f64}


#: CUDA compute capabilities of the data-centre cards that run float64 at half of float32's rate
#: (P100, V100, A100, H100/H200, B200); the others run it at 1/32 to 1/64.
FULL_FLOAT64_CAPABILITIES = {(6, 0), (7, 0), (8, 0), (9, 0), (10, 0)}


def default_precision(device: torch.device) -> str:
    """The marching arithmetic used when none is asked for: float64 on the CPU and on CUDA cards
    of :data:`FULL_FLOAT64_CAPABILITIES` (there float32 confirms fewer jumps over empty cells
    and is the slower one, see the module notes), float32 on other CUDA cards."""
    if device.type != "cuda":
        return "float64"
    full_rate = torch.cuda.get_device_capability(device) in FULL_FLOAT64_CAPABILITIES
    return "float64" if full_rate else "float32"


def _real_type(precision: str | None, device: torch.device):
    """The Taichi type marching computes in: ``precision``, or :func:`default_precision`."""
    if precision is None:
        precision = default_precision(device)
    if precision not in _REAL_TYPES:
        raise ConfigError(f"marching precision must be one of {sorted(_REAL_TYPES)}, got {precision!r}")
    return _REAL_TYPES[precision]


def march_rays(origins: torch.Tensor, directions: torch.Tensor, grid: OccupancyLookup, *,
               near: float | torch.Tensor, far: float | torch.Tensor, step_size: float,
               cone_angle: float = 0.0, max_samples_per_ray: int = 1024,
               jitter: float | torch.Tensor | None = None,
               max_step_size: float | None = None, precision: str | None = None) -> PackedSamples:
    """March N rays through the occupied cells of ``grid`` into packed samples.

    Args:
        origins: [N, 3] float32 ray origins, world units.
        directions: [N, 3] float32 unit ray directions.
        grid: occupancy grid; its box clips the rays, its bitfield selects the samples. A
            contracted grid (``grid.contracted``) clips nothing and is looked up at the
            contracted sample points (see the module notes).
        near, far: distance range along the rays (world units), scalars or [N].
        step_size: base step ``dt`` in world units (Instant-NGP: ``sqrt(3) * box size / 1024``).
        cone_angle: step growth with distance, ``dt = clip(t * cone_angle, step_size,
            max_step_size)``; 0 for a constant step (with a contracted grid, steps outside the
            unit cube grow further, see the module notes).
        max_samples_per_ray: cap on the samples kept per ray (the first ones along it).
        jitter: in [0, 1), shifting each ray's first sample by ``jitter * dt``: [N], one value
            for every ray, or ``None`` (0).
        max_step_size: largest step with ``cone_angle > 0``; ``None`` for one cell diagonal
            (or ``step_size`` when that is larger).
        precision: ``"float32"`` or ``"float64"``, the arithmetic of the lattice, box clipping
            and cell look-ups; ``None`` for :func:`default_precision` (see the module notes for
            what float32 changes).

    Returns:
        :class:`PackedSamples` on the grid's device, in float32/int32, without gradients.
        With a contracted grid, ``positions`` are the contracted sample points (in
        ``[-2, 2]^3``); ``t`` and ``dt`` are world distances in every case.

    Raises:
        ConfigError: a non-positive ``step_size``, negative ``cone_angle``,
            ``max_samples_per_ray < 1`` or an unknown ``precision``.

    Example:
        >>> from taichi_pvd.rendering.occupancy import OccupancyGrid
        >>> grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=16)
        >>> s = march_rays(torch.tensor([[-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]),
        ...                grid, near=0.0, far=10.0, step_size=0.5)
        >>> s.t.tolist()
        [1.0, 1.5, 2.0, 2.5]
    """
    backend.init()
    geo = _geometry(grid)
    rays, max_step_size = _check_inputs(origins, directions, grid, geo, near, far, step_size,
                                        cone_angle, max_samples_per_ray, jitter, max_step_size)
    n = rays.origins.shape[0]
    device = rays.origins.device
    real = _real_type(precision, device)
    shared = (rays.origins, rays.directions, rays.near, rays.far, rays.jitter,
              grid.bitfield.contiguous(), geo.lo, geo.hi, geo.inv_cell, geo.cell_size,
              geo.resolution, int(geo.contracted), float(step_size), float(cone_angle),
              max_step_size)
    counts = torch.zeros(n, dtype=torch.int32, device=device)
    if n > 0:
        _count_kernel(*shared, int(max_samples_per_ray), counts, real)
    ray_starts = (torch.cumsum(counts, 0, dtype=torch.int32) - counts).contiguous()
    n_samples = int(counts.sum()) if n > 0 else 0
    samples = PackedSamples(
        ray_indices=torch.empty(n_samples, dtype=torch.int32, device=device),
        ray_starts=ray_starts,
        ray_counts=counts,
        t=torch.empty(n_samples, device=device),
        dt=torch.empty(n_samples, device=device),
        positions=torch.empty(n_samples, 3, device=device),
        directions=torch.empty(n_samples, 3, device=device),
    )
    if n_samples > 0:
        _fill_kernel(*shared, ray_starts, counts, samples.ray_indices, samples.t, samples.dt,
                     samples.positions, samples.directions, real)
    return samples


def march_rays_reference(origins: torch.Tensor, directions: torch.Tensor, grid: OccupancyLookup, *,
                         near: float | torch.Tensor, far: float | torch.Tensor, step_size: float,
                         cone_angle: float = 0.0, max_samples_per_ray: int = 1024,
                         jitter: float | torch.Tensor | None = None,
                         max_step_size: float | None = None) -> PackedSamples:
    """Brute-force torch version of :func:`march_rays` (same arguments and result): visits
    every lattice point of every ray, in float64, and keeps those in occupied cells (looked up
    at the contracted point with a contracted grid). For tests and documentation; it loops in
    Python over the lattice index, vectorised over rays."""
    geo = _geometry(grid)
    rays, max_step_size = _check_inputs(origins, directions, grid, geo, near, far, step_size,
                                        cone_angle, max_samples_per_ray, jitter, max_step_size)
    device = rays.origins.device
    o = rays.origins.double()
    d = rays.directions.double()
    lo = torch.tensor(geo.lo, dtype=torch.float64, device=device)
    hi = torch.tensor(geo.hi, dtype=torch.float64, device=device)
    inv_cell = torch.tensor(geo.inv_cell, dtype=torch.float64, device=device)
    r = geo.resolution
    occupied = grid.occupied_mask()

    def step_at(t: torch.Tensor) -> torch.Tensor:
        if cone_angle == 0.0:
            dt = torch.full_like(t, step_size)
        else:
            dt = (t * cone_angle).clamp(min=step_size).clamp(max=max_step_size)
        if geo.contracted:
            m = (o + t[:, None] * d).abs().amax(dim=1).clamp(min=INNER_HALF_SIZE)
            dt = torch.maximum(dt, step_size * m * m)
        return dt

    lattice = cone_angle == 0.0 and not geo.contracted

    moving = d != 0.0
    safe_d = torch.where(moving, d, torch.ones_like(d))
    t1 = (lo - o) / safe_d
    t2 = (hi - o) / safe_d
    inside = (o >= lo) & (o <= hi)
    far_away = torch.full_like(o, _FAR_AWAY)
    t_near_axis = torch.where(moving, torch.minimum(t1, t2),
                              torch.where(inside, -far_away, far_away))
    t_far_axis = torch.where(moving, torch.maximum(t1, t2),
                             torch.where(inside, far_away, -far_away))
    if geo.contracted:
        t_near_axis, t_far_axis = -far_away, far_away
    t_min = torch.maximum(t_near_axis.max(dim=1).values, rays.near.double())
    t_max = torch.minimum(t_far_axis.min(dim=1).values, rays.far.double())
    alive = t_min < t_max
    t0 = torch.where(alive, t_min + rays.jitter.double() * step_at(t_min), torch.zeros_like(t_min))
    t = t0.clone()
    kept = torch.zeros_like(rays.near, dtype=torch.int64)
    records: list[tuple[torch.Tensor, ...]] = []
    k = 0
    while True:
        alive = alive & (t < t_max) & (kept < max_samples_per_ray)
        if not bool(alive.any()):
            break
        p = o + t[:, None] * d
        if geo.contracted:
            p = contract(p)
        c = ((p - lo) * inv_cell).clamp(min=0.0).clamp(max=float(r - 1)).floor().long()
        keep = alive & occupied[(c[:, 0] * r + c[:, 1]) * r + c[:, 2]]
        dt = step_at(t)
        rays_kept = torch.nonzero(keep).squeeze(1)
        records.append((rays_kept, t[keep], dt[keep], p[keep]))
        kept += keep.long()
        k += 1
        # Finished rays stop moving (quadratically growing contracted steps would overflow).
        t = t0 + k * step_size if lattice else torch.where(alive, t + dt, t)
    return _pack(records, kept, rays.directions)


def _pack(records: list[tuple[torch.Tensor, ...]], counts: torch.Tensor,
          directions: torch.Tensor) -> PackedSamples:
    device = directions.device
    if records:
        ray_ids, t, dt, p = (torch.cat(parts) for parts in zip(*records))
    else:
        ray_ids = torch.zeros(0, dtype=torch.int64, device=device)
        t = dt = torch.zeros(0, dtype=torch.float64, device=device)
        p = torch.zeros(0, 3, dtype=torch.float64, device=device)
    order = torch.sort(ray_ids, stable=True).indices
    ray_ids = ray_ids[order]
    counts = counts.to(torch.int32)
    return PackedSamples(
        ray_indices=ray_ids.to(torch.int32),
        ray_starts=(torch.cumsum(counts, 0, dtype=torch.int32) - counts),
        ray_counts=counts,
        t=t[order].float(),
        dt=dt[order].float(),
        positions=p[order].float(),
        directions=directions[ray_ids],
    )
