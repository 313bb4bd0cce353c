"""Instant-NGP multiresolution hash encoding: Taichi forward/backward kernels and a torch reference.

A point ``x`` in ``[0, 1]^3`` is encoded at ``L`` levels of increasing resolution. At level ``l``
the point lies in a cell of a virtual grid; the ``F`` features stored at the cell's 8 corners
are blended trilinearly. Corner features live in one flat table ``[total_entries, F]``; level
``l`` owns rows ``offsets[l] : offsets[l] + table_sizes[l]``. Coarse levels whose grid fits in
their table are indexed densely, finer ones through a spatial hash. The vertex maths is that of
Instant-NGP (tiny-cuda-nn ``grid.h``)::

    scale_l = base * growth**l - 1,  growth = exp((ln finest - ln base) / (L - 1))
    resolution_l = ceil(scale_l) + 1
    pos = x * scale_l + 0.5;  cell = floor(pos);  frac = pos - cell
    dense index  = (cx + cy * res + cz * res**2) mod table_size
    hashed index = (cx * 1  xor  cy * 2654435761  xor  cz * 805459861) mod table_size   (uint32)

so grid vertices sit at half-integer positions and the corner ``cell + 1`` of a point near 1 may
wrap around (as in tiny-cuda-nn). Kernels compute in float32 and accept float32 tensors only.
"""

import functools
import math
from dataclasses import dataclass

import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.kernels.fast_launch import fast_launch
from taichi_pvd.kernels.cell_math import corner_weight
from taichi_pvd.kernels.index_limits import row_blocks
from taichi_pvd.errors import ConfigError

#: Primes of the spatial hash, per axis (Teschner et al. 2003, as in Instant-NGP).
HASH_PRIMES = (1, 2654435761, 805459861)
_BLOCK_DIM = 128


@dataclass(frozen=True)
class HashGridLayout:
    """Per-level geometry of a multiresolution hash grid (build it with :func:`hash_grid_layout`).

    Attributes:
        n_levels: number of levels ``L``.
        features_per_level: features per table entry ``F``.
        log2_table_size: log2 of the largest per-level table.
        base_resolution: resolution of the coarsest level.
        finest_resolution: target resolution of the finest level.
        scales: per-level ``scale_l`` (vertex position = ``x * scale_l + 0.5``).
        resolutions: per-level grid resolution ``ceil(scale_l) + 1`` (vertices per axis).
        table_sizes: per-level number of table rows.
        offsets: per-level first row in the flat table.
        dense: per-level flag, ``True`` when the level is indexed densely (``res^3 <= size``).
        total_entries: rows of the flat table, ``sum(table_sizes)``.
    """

    n_levels: int
    features_per_level: int
    log2_table_size: int
    base_resolution: int
    finest_resolution: int
    scales: tuple[float, ...]
    resolutions: tuple[int, ...]
    table_sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    dense: tuple[bool, ...]
    total_entries: int

    @property
    def output_dim(self) -> int:
        """Width of the encoding, ``n_levels * features_per_level``."""
        return self.n_levels * self.features_per_level


def hash_grid_layout(
    n_levels: int = 16,
    features_per_level: int = 2,
    log2_table_size: int = 19,
    base_resolution: int = 16,
    finest_resolution: int = 2048,
) -> HashGridLayout:
    """Compute the per-level resolutions, table sizes and offsets of an Instant-NGP hash grid.

    ``scale_l = base * (finest / base) ** (l / (L - 1)) - 1`` (the same number as
    ``base * growth**l - 1``, written so that the finest level hits ``finest - 1`` exactly),
    ``resolution_l = ceil(scale_l) + 1``, ``table_size_l = min(resolution_l^3 rounded up to a
    multiple of 8, 2^log2_table_size)``; a level is dense when ``resolution_l^3 <= table_size_l``.

    Raises:
        ConfigError: a value out of range (e.g. ``finest_resolution < base_resolution``).

    Example:
        >>> hash_grid_layout(n_levels=2, log2_table_size=12, base_resolution=4,
        ...                  finest_resolution=32).table_sizes
        (64, 4096)
    """
    if n_levels < 1 or features_per_level < 1:
        raise ConfigError(
            f"hash grid needs n_levels >= 1 and features_per_level >= 1, got {n_levels} and "
            f"{features_per_level}"
        )
    if not 3 <= log2_table_size <= 30:
        raise ConfigError(f"log2_table_size must lie in [3, 30], got {log2_table_size}")
    if base_resolution < 2 or finest_resolution < base_resolution:
        raise ConfigError(
            "hash grid needs 2 <= base_resolution <= finest_resolution, got "
            f"base_resolution={base_resolution}, finest_resolution={finest_resolution}"
        )
    max_size = 1 << log2_table_size
    scales, resolutions, sizes, offsets, dense = [], [], [], [], []
    offset = 0
    for level in range(n_levels):
        exponent = level / (n_levels - 1) if n_levels > 1 else 0.0
        scale = base_resolution * (finest_resolution / base_resolution) ** exponent - 1.0
        resolution = math.ceil(scale) + 1
        n_vertices = resolution**3
        size = min((n_vertices + 7) // 8 * 8, max_size)
        scales.append(scale)
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offset)
        dense.append(n_vertices <= size)
        offset += size
    return HashGridLayout(
        n_levels=n_levels,
        features_per_level=features_per_level,
        log2_table_size=log2_table_size,
        base_resolution=base_resolution,
        finest_resolution=finest_resolution,
        scales=tuple(scales),
        resolutions=tuple(resolutions),
        table_sizes=tuple(sizes),
        offsets=tuple(offsets),
        dense=tuple(dense),
        total_entries=offset,
    )


def init_hash_table(
    layout: HashGridLayout,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A fresh table ``[layout.total_entries, layout.features_per_level]`` float32, entries drawn
    uniformly from ``[-1e-4, 1e-4]`` (Instant-NGP's initialisation).

    The values are drawn on the CPU with ``generator`` (a CPU generator, or ``None`` for torch's
    default one) and moved to ``device`` (default: the CPU).
    """
    shape = (layout.total_entries, layout.features_per_level)
    table = torch.rand(shape, generator=generator, dtype=torch.float32) * 2e-4 - 1e-4
    return table.to(device) if device is not None else table


@functools.lru_cache(maxsize=None)
def _level_tensors(
    layout: HashGridLayout, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level parameters as kernel inputs: scales f32 ``[L]`` and i32 ``[L, 4]`` rows of
    ``(resolution, table_size, offset, dense)``, cached per layout and device."""
    scales = torch.tensor(layout.scales, dtype=torch.float32, device=device)
    rows = list(zip(layout.resolutions, layout.table_sizes, layout.offsets, layout.dense))
    meta = [[r, s, o, int(d)] for r, s, o, d in rows]
    return scales, torch.tensor(meta, dtype=torch.int32, device=device)


@ti.func
def _level_cell(x: ti.template(), n, scale):
    """Integer cell (uint32) and fractional position of point ``n`` at a level of ``scale``."""
    p = ti.Vector([ti.math.clamp(x[n, a], 0.0, 1.0) for a in ti.static(range(3))]) * scale + 0.5
    cell = ti.floor(p)
    return ti.cast(ti.cast(cell, ti.i32), ti.u32), p - cell


@ti.func
def _corner_row(corner, resolution, size, dense):
    """Row of a corner (a uint32 3-vector of vertex coordinates) inside its level's table."""
    index = ti.u32(0)
    if dense:
        index = corner[0] + corner[1] * resolution + corner[2] * resolution * resolution
    else:
        index = (
            corner[0] * ti.u32(HASH_PRIMES[0])
            ^ corner[1] * ti.u32(HASH_PRIMES[1])
            ^ corner[2] * ti.u32(HASH_PRIMES[2])
        )
    return ti.cast(index % size, ti.i32)


@ti.func
def _level_params(level_meta: ti.template(), level):
    """``(resolution, table size, first row, dense)`` of a level."""
    return (ti.cast(level_meta[level, 0], ti.u32), ti.cast(level_meta[level, 1], ti.u32),
            level_meta[level, 2], level_meta[level, 3])


@ti.func
def _corner_rows(cell, resolution, size, offset, dense):
    """Table rows [8] (int32) of the corners of ``cell``, corner ``bits`` at index ``bits``."""
    rows = ti.Vector.zero(ti.i32, 8)
    for bits in ti.static(range(8)):
        corner = cell + ti.Vector([(bits >> a) & 1 for a in ti.static(range(3))], ti.u32)
        rows[bits] = offset + _corner_row(corner, resolution, size, dense)
    return rows


@fast_launch
@ti.kernel
def _hash_encode_forward(
    x: ti.types.ndarray(dtype=ti.f32, ndim=2),
    table: ti.types.ndarray(dtype=ti.f32, ndim=2),
    level_scales: ti.types.ndarray(dtype=ti.f32, ndim=1),
    level_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n_features: ti.template(),
    run: ti.template(),
):
    ti.loop_config(block_dim=_BLOCK_DIM)
    for chunk, level in ti.ndrange((x.shape[0] + run - 1) // run, level_scales.shape[0]):
        n_points = x.shape[0]
        scale = level_scales[level]
        resolution, size, offset, dense = _level_params(level_meta, level)
        current = ti.Vector([0, 0, 0], ti.u32)
        loaded = 0
        corners = ti.Matrix.zero(ti.f32, 8, n_features)
        for k in range(run):
            n = chunk * run + k
            if n < n_points:
                cell, frac = _level_cell(x, n, scale)
                if loaded == 0 or (cell != current).any():
                    rows = _corner_rows(cell, resolution, size, offset, dense)
                    for bits in ti.static(range(8)):
                        for f in ti.static(range(n_features)):
                            corners[bits, f] = table[rows[bits], f]
                    current = cell
                    loaded = 1
                acc = ti.Vector.zero(ti.f32, n_features)
                for bits in ti.static(range(8)):
                    w = corner_weight(frac, bits)
                    for f in ti.static(range(n_features)):
                        acc[f] += w * corners[bits, f]
                for f in ti.static(range(n_features)):
                    out[n, level * n_features + f] = acc[f]


@ti.func
def _scatter_corners(grad_table: ti.template(), rows, grads, n_features: ti.template()):
    for bits in ti.static(range(8)):
        for f in ti.static(range(n_features)):
            ti.atomic_add(grad_table[rows[bits], f], grads[bits, f])


@fast_launch
@ti.kernel
def _hash_encode_backward(
    x: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    level_scales: ti.types.ndarray(dtype=ti.f32, ndim=1),
    level_meta: ti.types.ndarray(dtype=ti.i32, ndim=2),
    grad_table: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n_features: ti.template(),
    run: ti.template(),
):
    ti.loop_config(block_dim=_BLOCK_DIM)
    for chunk, level in ti.ndrange((x.shape[0] + run - 1) // run, level_scales.shape[0]):
        n_points = x.shape[0]
        scale = level_scales[level]
        resolution, size, offset, dense = _level_params(level_meta, level)
        current = ti.Vector([0, 0, 0], ti.u32)
        pending = 0
        grads = ti.Matrix.zero(ti.f32, 8, n_features)
        for k in range(run):
            n = chunk * run + k
            if n < n_points:
                cell, frac = _level_cell(x, n, scale)
                if pending == 1 and (cell != current).any():
                    _scatter_corners(grad_table, _corner_rows(current, resolution, size, offset, dense),
                                     grads, n_features)
                    grads = ti.Matrix.zero(ti.f32, 8, n_features)
                current = cell
                pending = 1
                for bits in ti.static(range(8)):
                    w = corner_weight(frac, bits)
                    for f in ti.static(range(n_features)):
                        grads[bits, f] += w * grad_out[n, level * n_features + f]
        if pending == 1:
            _scatter_corners(grad_table, _corner_rows(current, resolution, size, offset, dense), grads, n_features)


#: Consecutive points one thread of the forward and of the backward kernel takes at a level.
#: Packed samples run along their rays, so neighbours often share a cell of the coarser levels:
#: the forward kernel reads that cell's corners once, the backward kernel adds their summed
#: gradients to the table once.
POINTS_A_THREAD = {"forward": 1, "backward": 1}


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, level_scales, level_meta, n_features):
        width = level_scales.shape[0] * n_features
        out = torch.empty((x.shape[0], width), dtype=torch.float32, device=x.device)
        for rows in row_blocks(x.shape[0], width):
            _hash_encode_forward(x[rows], table.detach(), level_scales, level_meta, out[rows], n_features,
                                 POINTS_A_THREAD["forward"])
        ctx.save_for_backward(x, level_scales, level_meta)
        ctx.table_shape = table.shape
        ctx.n_features = n_features
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None, None
        x, level_scales, level_meta = ctx.saved_tensors
        grad_table = torch.zeros(ctx.table_shape, dtype=torch.float32, device=x.device)
        grad_out = grad_out.contiguous()
        for rows in row_blocks(x.shape[0], grad_out.shape[1]):
            _hash_encode_backward(
                x[rows], grad_out[rows], level_scales, level_meta, grad_table, ctx.n_features,
                POINTS_A_THREAD["backward"],
            )
        return None, grad_table, None, None, None


def _check_inputs(x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout) -> None:
    arch = backend.init()
    if x.dtype != torch.float32 or table.dtype != torch.float32:
        raise TypeError(f"hash_encode takes float32 x and table, got {x.dtype} and {table.dtype}")
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"hash_encode: x must have shape [N, 3], got {list(x.shape)}")
    expected = [layout.total_entries, layout.features_per_level]
    if list(table.shape) != expected:
        raise ValueError(
            f"hash_encode: table must have shape {expected} for this layout, "
            f"got {list(table.shape)}"
        )
    if not table.is_contiguous():
        raise ValueError(
            "hash_encode: table must be contiguous (call .contiguous() once, at creation)"
        )
    if x.device != table.device or x.device.type != arch:
        raise ValueError(
            f"hash_encode: x ({x.device}) and table ({table.device}) must both be on the backend's "
            f"device ({arch})"
        )


def hash_encode(x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout) -> torch.Tensor:
    """Multiresolution hash encoding of points (Instant-NGP), trilinear over each level's cell.

    Args:
        x: ``[N, 3]`` float32 positions, normalised to ``[0, 1]^3`` (values outside are clamped).
            ``x`` receives no gradient.
        table: ``[layout.total_entries, layout.features_per_level]`` float32, contiguous,
            on the backend's device; differentiable (backward: a Taichi scatter kernel).
        layout: the grid geometry from :func:`hash_grid_layout`.

    Returns:
        ``[N, layout.output_dim]`` float32, level-major: level ``l``'s ``F`` features are columns
        ``l * F : (l + 1) * F``.

    Raises:
        TypeError: a tensor that is not float32.
        ValueError: a wrong shape, a non-contiguous table or tensors off the backend's device.

    Example:
        >>> layout = hash_grid_layout()
        >>> table = init_hash_table(layout).requires_grad_()
        >>> hash_encode(torch.rand(4, 3), table, layout).shape
        torch.Size([4, 32])
    """
    _check_inputs(x, table, layout)
    level_scales, level_meta = _level_tensors(layout, x.device)
    return _HashEncode.apply(
        x.detach().contiguous(), table, level_scales, level_meta, layout.features_per_level
    )


def _corner_rows_reference(
    corner: torch.Tensor, layout: HashGridLayout, level: int
) -> torch.Tensor:
    res, size = layout.resolutions[level], layout.table_sizes[level]
    if layout.dense[level]:
        index = corner[:, 0] + corner[:, 1] * res + corner[:, 2] * res * res
    else:
        index = (
            (corner[:, 0] * HASH_PRIMES[0])
            ^ (corner[:, 1] * HASH_PRIMES[1])
            ^ (corner[:, 2] * HASH_PRIMES[2])
        ) & 0xFFFFFFFF
    return layout.offsets[level] + index % size


def hash_encode_reference(
    x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout
) -> torch.Tensor:
    """Pure-torch :func:`hash_encode` in the dtype of ``x`` and ``table`` (use float64 to check the
    kernel); differentiable w.r.t. ``table`` through torch autograd. Same shapes as
    :func:`hash_encode`; runs on any device, slowly."""
    x = x.clamp(0.0, 1.0)
    columns = []
    for level in range(layout.n_levels):
        pos = x * layout.scales[level] + 0.5
        cell = torch.floor(pos)
        frac = pos - cell
        cell = cell.long()
        acc = torch.zeros(x.shape[0], layout.features_per_level, dtype=table.dtype, device=x.device)
        for bits in range(8):
            step = [(bits >> a) & 1 for a in range(3)]
            w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            for a in range(3):
                w = w * (frac[:, a] if step[a] else 1.0 - frac[:, a])
            corner = cell + torch.tensor(step, device=x.device)
            rows = _corner_rows_reference(corner, layout, level)
            acc = acc + w[:, None] * table[rows]
        columns.append(acc)
    return torch.cat(columns, dim=1)
