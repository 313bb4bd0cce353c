"""Occupancy grid for empty-space skipping: an EMA of density per cell and its packed bitfield.

The world-space box ``aabb`` [2, 3] is cut into ``R^3`` equal cells. Cell ``(ix, iy, iz)`` has
the flat index ``(ix * R + iy) * R + iz`` (plain x-major order, z fastest), so
``density.view(R, R, R)[ix, iy, iz]`` is that cell. The bitfield stores cell ``c`` in bit
``c % 8`` (least significant first) of byte ``c // 8``; the marcher
(:mod:`taichi_pvd.kernels.marching`) reads it in the same layout.

Update rule (Instant-NGP): every cell is re-evaluated during the warm-up steps; afterwards
``R^3 / 4`` uniformly random cells and ``R^3 / 4`` random currently occupied cells are, each at
a uniformly jittered point inside the cell, and ``density = max(density * decay, sigma)`` for the
sampled cells. A cell is occupied when its EMA exceeds the threshold, by default
``min(0.9 * mean EMA, 0.01 / min_step_size)``: Instant-NGP's minimal optical thickness 0.01 over
one step of ``min_step_size = sqrt(3) * max box extent / 1024`` (about 5.91 for a unit cube, the
value ngp_pl uses), or 90% of the grid's mean density when that is lower. The margin below the
mean keeps a field that is still nearly flat (every cell within 10% of the mean, as a freshly
initialised model and one early in training are) whole: at the mean itself, such a field loses
most of its cells to small variations, and cells without samples get no gradient to grow back
(on forward-facing scenes in NDC the grid emptied at the first updates).

A *contracted* grid covers the box ``[-2, 2]^3`` of contracted coordinates of an unbounded scene
(:mod:`taichi_pvd.kernels.contraction`): its cell centres are field coordinates, and the marcher
contracts world samples before looking them up. Densities stay per world unit, but one minimal
step of contracted length spans ``radial_stretch`` world units outside the unit cube (``r^2`` at
world distance ``r``), so a cell there is occupied when its density times its centre's stretch
exceeds the threshold: the same minimal optical thickness per minimal contracted step as inside.
The mean in the default threshold is taken over the cells of the unit cube only (stretch 1), as
Instant-NGP takes it over its innermost cascade: the shell's densities, per world unit, say
little of the field's scale, and their stretched values (thousands near the outer faces) would
put the threshold above a freshly initialised field and empty the unit cube before it learns.

Packing and unpacking the bitfield are a handful of elementwise torch operations (R^3 values,
once every few training steps), which run on any device, also from a state-dict load hook;
the per-ray work lives in the Taichi marching kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from taichi_pvd.data.contracted_space import CONTRACTED_HALF_SIZE
from taichi_pvd.errors import ConfigError, TrainingDiverged
from taichi_pvd.kernels.contraction import radial_stretch

#: Instant-NGP's minimal optical thickness of an occupied cell over one minimal step.
MIN_OPTICAL_THICKNESS = 0.01
#: The default threshold is at most this fraction of the grid's mean (stretched) density, so that a
#: nearly flat field keeps its cells (see the module notes).
MEAN_FRACTION = 0.9
#: Minimal steps across the box's largest extent, times sqrt(3) (Instant-NGP's NERF_STEPS).
STEPS_ACROSS_BOX = 1024
#: Points handed to ``density_fn`` at once by :meth:`OccupancyGrid.update`.
UPDATE_CHUNK = 1 << 18

DensityFn = Callable[[torch.Tensor], torch.Tensor]


def pack_bitfield(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean mask [M] (M a multiple of 8) into bytes [M / 8] uint8, bit ``c % 8`` of
    byte ``c // 8`` holding ``mask[c]``."""
    shifts = torch.arange(8, device=mask.device, dtype=torch.uint8)
    bits = mask.reshape(-1, 8).to(torch.uint8) << shifts
    return bits.sum(dim=1, dtype=torch.uint8)


def unpack_bitfield(bitfield: torch.Tensor) -> torch.Tensor:
    """Unpack bytes [M / 8] uint8 into a boolean mask [M] (inverse of :func:`pack_bitfield`)."""
    shifts = torch.arange(8, device=bitfield.device, dtype=torch.uint8)
    return ((bitfield[:, None] >> shifts) & 1).reshape(-1).bool()


def _rebuild_after_load(module: OccupancyGrid, incompatible_keys) -> None:
    module.bounds = _bounds(module.aabb)
    module.rebuild_bitfield()


def _bounds(aabb: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    lo, hi = aabb.tolist()
    return tuple(lo), tuple(hi)


class OccupancyGrid(torch.nn.Module):
    """Density EMA and occupancy bitfield of ``resolution^3`` cells over a world-space box.

    Args:
        aabb: [2, 3] box corners ``(min, max)`` in world units, ``max > min`` on every axis
            (for a contracted grid: ``[-2, 2]^3``, the box of contracted coordinates).
        resolution: cells per axis ``R`` (even, so the bitfield packs into whole bytes).
        contracted: whether the grid covers the contracted space of an unbounded scene, so the
            marcher contracts its world samples before the look-up (see the module notes).

    Buffers:
        aabb: [2, 3] float32, persistent.
        density: [R^3] float32 EMA of sigma (1 / world unit) per cell, persistent.
        bitfield_threshold: [] float32, the threshold the bitfield was built with (``-inf``:
            every cell occupied), persistent.
        bitfield: [R^3 / 8] uint8 occupancy, non-persistent: derived from ``density`` and
            ``bitfield_threshold``, rebuilt by :meth:`update`, :meth:`rebuild_bitfield` and
            automatically after :meth:`load_state_dict`.
        cell_stretch: [R^3] float32 world length per unit of contracted length at each cell
            centre for a contracted grid (a scalar 1 otherwise), non-persistent: derived from the
            geometry.

    A new grid has zero density and every cell occupied, so rays are sampled everywhere until
    the first :meth:`update`.

    Example:
        >>> grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=16)
        >>> grid.update(lambda x: 10.0 * (x.norm(dim=-1) < 0.5), step=0)
        >>> 0.0 < grid.occupancy_fraction() < 1.0
        True
    """

    aabb: torch.Tensor
    density: torch.Tensor
    bitfield_threshold: torch.Tensor
    bitfield: torch.Tensor
    cell_stretch: torch.Tensor

    def __init__(self, aabb: torch.Tensor | Sequence[Sequence[float]], resolution: int = 128, *,
                 contracted: bool = False):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32).detach().clone()
        if aabb.shape != (2, 3) or not bool(torch.isfinite(aabb).all()):
            raise ConfigError(
                f"aabb must be a finite [2, 3] tensor (min, max), got {tuple(aabb.shape)}"
            )
        if not bool((aabb[1] > aabb[0]).all()):
            raise ConfigError(f"aabb max must exceed min on every axis, got {aabb.tolist()}")
        if resolution < 2 or resolution % 2:
            raise ConfigError(f"occupancy resolution must be even and >= 2, got {resolution}")
        if contracted and not torch.equal(aabb.abs(), torch.full((2, 3), CONTRACTED_HALF_SIZE)):
            raise ConfigError(
                f"a contracted occupancy grid covers the box of contracted coordinates "
                f"[-{CONTRACTED_HALF_SIZE:g}, {CONTRACTED_HALF_SIZE:g}]^3, got {aabb.tolist()}"
            )
        self.resolution = int(resolution)
        #: Whether the grid covers contracted coordinates (see the module notes).
        self.contracted = bool(contracted)
        n_cells = self.resolution**3
        self.register_buffer("aabb", aabb)
        #: ``(min, max)`` corners as Python floats, so marching needs no device read.
        self.bounds = _bounds(aabb)
        self.register_buffer("density", torch.zeros(n_cells))
        self.register_buffer("bitfield_threshold", torch.tensor(-math.inf))
        self.register_buffer("bitfield", torch.full((n_cells // 8,), 255, dtype=torch.uint8),
                             persistent=False)
        stretch = radial_stretch(self.cell_centres()) if contracted else torch.ones(())
        self.register_buffer("cell_stretch", stretch, persistent=False)
        self.register_load_state_dict_post_hook(_rebuild_after_load)

    @property
    def n_cells(self) -> int:
        """Number of cells, ``R^3``."""
        return self.resolution**3

    @property
    def cell_size(self) -> torch.Tensor:
        """[3] edge lengths of one cell, world units."""
        return (self.aabb[1] - self.aabb[0]) / self.resolution

    @property
    def min_step_size(self) -> float:
        """Instant-NGP's minimal step, ``sqrt(3) * max box extent / 1024`` world units."""
        lo, hi = self.bounds
        return math.sqrt(3.0) * max(b - a for a, b in zip(lo, hi)) / STEPS_ACROSS_BOX

    def cell_coordinates(self, cells: torch.Tensor) -> torch.Tensor:
        """Integer coordinates [M, 3] int64 ``(ix, iy, iz)`` of flat cell indices ``cells`` [M]."""
        r = self.resolution
        return torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1)

    def cell_centres(self) -> torch.Tensor:
        """Positions [R^3, 3] float32 of every cell's centre, in flat cell order (world units, or
        contracted coordinates in a contracted grid)."""
        cells = torch.arange(self.n_cells, device=self.density.device)
        return self.aabb[0] + (self.cell_coordinates(cells) + 0.5) * self.cell_size

    def occupied_mask(self) -> torch.Tensor:
        """[R^3] bool: which cells the bitfield marks occupied, in flat cell order."""
        return unpack_bitfield(self.bitfield)

    def occupancy_fraction(self) -> float:
        """Fraction of cells marked occupied, in [0, 1]."""
        return float(self.occupied_mask().float().mean())

    @torch.no_grad()
    def mark_all_occupied(self) -> None:
        """Mark every cell occupied (the densities are kept; the next :meth:`update` builds the
        bitfield from them again)."""
        self.bitfield_threshold.fill_(-math.inf)
        self.bitfield.fill_(255)

    @torch.no_grad()
    def rebuild_bitfield(self) -> None:
        """Rebuild ``bitfield`` from ``density`` and ``bitfield_threshold`` (cells whose density,
        times ``cell_stretch`` in a contracted grid, exceeds the threshold are occupied), e.g.
        after loading a state dict."""
        self.bitfield.copy_(pack_bitfield(self.density * self.cell_stretch > self.bitfield_threshold))

    @torch.no_grad()
    def copy_from(self, other: OccupancyGrid) -> None:
        """Copy densities, threshold and bitfield of ``other`` (same box and resolution), e.g.
        for a student inheriting its teacher's grid.

        Raises:
            ConfigError: the grids differ in resolution or box.
        """
        if other.resolution != self.resolution:
            raise ConfigError(
                f"cannot copy an occupancy grid of resolution {other.resolution} into one of "
                f"{self.resolution}: build the student's grid with the teacher's resolution"
            )
        if not torch.allclose(other.aabb.to(self.aabb.device), self.aabb):
            raise ConfigError(
                f"cannot copy an occupancy grid over box {other.aabb.tolist()} into one over "
                f"{self.aabb.tolist()}: both models must use the same scene box"
            )
        if other.contracted != self.contracted:
            raise ConfigError(
                "cannot copy an occupancy grid between a contracted (unbounded) scene and a "
                "bounded one: both models must use the same scene space"
            )
        self.density.copy_(other.density)
        self.bitfield_threshold.copy_(other.bitfield_threshold)
        self.bitfield.copy_(other.bitfield)

    @torch.no_grad()
    def update(self, density_fn: DensityFn, *, step: int, decay: float = 0.95,
               threshold: float | None = None, warmup_steps: int = 256,
               generator: torch.Generator | None = None) -> None:
        """Re-evaluate cells with ``density_fn`` and rebuild the bitfield (Instant-NGP's rule).

        Args:
            density_fn: positions [M, 3] float32 in the grid's box (world units, or contracted
                coordinates in a contracted grid) -> sigma [M] (or [M, 1]), 1 / world unit;
                called under ``torch.no_grad`` in chunks of at most 2^18 points.
            step: the training step; before ``warmup_steps`` every cell is evaluated, after it
                ``R^3 / 4`` uniformly random cells plus ``R^3 / 4`` random occupied ones.
            decay: EMA factor in (0, 1]: ``density = max(density * decay, sigma)`` for the
                sampled cells (cells drawn twice take their largest sample).
            threshold: sigma above which a cell is occupied (compared with sigma times
                ``cell_stretch`` in a contracted grid); ``None`` for ``min(0.9 * mean,
                0.01 / min_step_size)``, the mean taken over the unit cube's cells in a
                contracted grid.
            warmup_steps: steps during which every cell is evaluated.
            generator: torch generator on the grid's device for the cell choice and jitter.

        Raises:
            ConfigError: ``decay`` outside (0, 1] or a negative ``warmup_steps``.
            TrainingDiverged: ``density_fn`` returned NaN.
        """
        if not 0.0 < decay <= 1.0:
            raise ConfigError(f"occupancy decay must lie in (0, 1], got {decay}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
        cells = self._cells_to_update(step < warmup_steps, generator)
        sigma = self._evaluate(density_fn, self._jittered_positions(cells, generator))
        if bool(torch.isnan(sigma).any()):
            raise TrainingDiverged(
                "the density function returned NaN while updating the occupancy grid: the "
                "model has diverged; lower the learning rate or resume from a checkpoint"
            )
        sampled = torch.zeros(self.n_cells, dtype=torch.bool, device=cells.device)
        sampled[cells] = True
        fresh = torch.zeros_like(self.density).scatter_reduce_(0, cells, sigma, "amax",
                                                               include_self=False)
        self.density.copy_(torch.where(sampled, torch.maximum(self.density * decay, fresh),
                                       self.density))
        if threshold is None:
            mean = float(self.density[self.cell_stretch.expand_as(self.density) == 1.0].mean())
            threshold = min(MEAN_FRACTION * mean, MIN_OPTICAL_THICKNESS / self.min_step_size)
        self.bitfield_threshold.fill_(threshold)
        self.rebuild_bitfield()

    def _cells_to_update(self, warmup: bool, generator: torch.Generator | None) -> torch.Tensor:
        device = self.density.device
        if warmup:
            return torch.arange(self.n_cells, device=device)
        n = self.n_cells // 4
        uniform = torch.randint(self.n_cells, (n,), device=device, generator=generator)
        occupied = torch.nonzero(self.occupied_mask()).squeeze(1)
        if occupied.numel() == 0:
            return uniform
        pick = torch.randint(occupied.numel(), (n,), device=device, generator=generator)
        return torch.cat([uniform, occupied[pick]])

    def _jittered_positions(self, cells: torch.Tensor,
                            generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(cells.shape[0], 3, device=cells.device, generator=generator)
        return self.aabb[0] + (self.cell_coordinates(cells) + u) * self.cell_size

    def _evaluate(self, density_fn: DensityFn, positions: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, positions.shape[0], UPDATE_CHUNK):
            chunk = positions[start : start + UPDATE_CHUNK]
            sigma = density_fn(chunk)
            if sigma.numel() != chunk.shape[0]:
                raise ValueError(
                    f"density_fn must return one sigma per point: got shape {tuple(sigma.shape)} "
                    f"for {chunk.shape[0]} points"
                )
            out.append(sigma.reshape(-1).float())
        return torch.cat(out)
