"""Taking a trained field out as explicit geometry, for any architecture, through the density
of phi1 (``features(x)[:, 0]``, ``sigma = exp(raw)``):

- :func:`extract_mesh`: marching cubes of sigma over the occupied part of the box, the faces
  the cameras see, vertex colours seen along the surface normal; :func:`write_mesh` writes
  ``.ply``, ``.obj`` or ``.glb``;
- :func:`extract_points`: a coloured point cloud where the rays of views' pixels first reach
  the surface, from the pixels whose rays become opaque there; :func:`write_points` writes
  ``.ply``;
- :func:`write_volume`: sigma and RGB on a regular grid as ``.npz`` (layout in its docstring).

Every position is in the field's coordinates: world units for a bounded scene, the normalised
scene space of an unbounded one (whose inner region ``[-1, 1]^3`` is exported by default), NDC
for a forward-facing one. The density is zero outside the run's occupied occupancy cells, as
rendering sees it. The field is evaluated in chunks; the memory of the host arrays is
estimated before they are allocated.

Marching cubes (``PyMCubes``) and the mesh writer (``trimesh``) are an optional extra:
``pip install "taichi-pvd[export]"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import backend
from .data import generate_rays
from .errors import OptionValueError, PvdError
from .io.runs import LoadedRun
from .kernels.contraction import contract
from .memory import check_fits
from .rendering.view_sets import ViewSet
from .kernels.marching import PackedSamples
from .rendering.volume import march

#: Default density threshold of the mesh surface, sigma in 1 / world unit: where 1% of the
#: light is absorbed over 1/1000 of a 3-unit box (3 mm of a 3 m scene), i.e. the surface that
#: rendering sees as opaque.
DEFAULT_THRESHOLD = 3.35
#: Directions of the colour averaged into the volume's RGB: the four of a regular tetrahedron.
_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float32) / math.sqrt(3.0)
#: Host bytes per voxel while a mesh is extracted (float32 sigma, the float64 copy marching
#: cubes makes, and slack) and while a volume is written (sigma, RGB, the compressed copy).
_MESH_BYTES_PER_VOXEL = 16
_VOLUME_BYTES_PER_VOXEL = 14
#: Points evaluated by the field at once.
CHUNK = 1 << 18

Progress = Callable[[int, int], None]
"""``(done, total)`` callback of a long export."""


class MissingExportLibraries(PvdError):
    """The optional packages of mesh export (PyMCubes, trimesh) are not installed."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__(f"exporting a mesh needs {' and '.join(missing)}: "
                         f'pip install "taichi-pvd[export]" (or pip install {" ".join(missing)})')


def require_mesh_libraries():
    missing = []
    try:
        import mcubes
    except ImportError:
        missing.append("PyMCubes")
        mcubes = None
    try:
        import trimesh
    except ImportError:
        missing.append("trimesh")
        trimesh = None
    if missing:
        raise MissingExportLibraries(missing)
    return mcubes, trimesh


@dataclass
class VoxelGrid:
    """Regular grid points ``lo + voxel_size * (i, j, k)``, ``0 <= (i, j, k) < shape``."""

    lo: np.ndarray
    """[3] float64, the position of point (0, 0, 0)."""
    voxel_size: float
    shape: tuple[int, int, int]

    @property
    def hi(self) -> np.ndarray:
        """[3] float64, the position of the last point."""
        return self.lo + self.voxel_size * (np.array(self.shape) - 1)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64))


def export_box(run: LoadedRun, box: np.ndarray | None = None) -> np.ndarray:
    """The box to export [2, 3] float64 ``(min, max)`` in field coordinates: ``box`` when given,
    else the occupied cells of the run's occupancy grid (one cell of margin) within the field's
    box, or for an unbounded scene within its inner region ``[-1, 1]^3``."""
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(2, 3)
        if not np.all(np.isfinite(box)) or not np.all(box[1] > box[0]):
            raise OptionValueError("box", f"must give max > min on every axis, got {box.tolist()}")
        return box
    grid = run.grid
    region = np.array([[-1.0] * 3, [1.0] * 3]) if grid.contracted else grid.aabb.cpu().numpy().astype(np.float64)
    r = grid.resolution
    occupied = torch.nonzero(grid.occupied_mask().view(r, r, r)).cpu().numpy()
    if len(occupied) == 0:
        return region
    cell = grid.cell_size.cpu().numpy().astype(np.float64)
    lo = grid.aabb[0].cpu().numpy().astype(np.float64)
    occupied_box = np.stack([lo + (occupied.min(0) - 1) * cell, lo + (occupied.max(0) + 2) * cell])
    clipped = np.stack([np.maximum(occupied_box[0], region[0]), np.minimum(occupied_box[1], region[1])])
    return clipped if np.all(clipped[1] > clipped[0]) else region


def voxel_grid(box: np.ndarray, resolution: int) -> VoxelGrid:
    """Grid points covering ``box`` [2, 3] with ``resolution`` points along its longest side
    (and the same spacing along the others)."""
    if resolution < 2:
        raise OptionValueError("resolution", f"must be at least 2, got {resolution}")
    extent = box[1] - box[0]
    voxel = float(extent.max()) / (resolution - 1)
    shape = tuple(int(math.ceil(e / voxel - 1e-9)) + 1 for e in extent)
    return VoxelGrid(np.asarray(box[0], dtype=np.float64), voxel, shape)


def check_grid_fits(grid: VoxelGrid, resolution: int, bytes_per_voxel: int) -> None:
    """Raise :class:`~taichi_pvd.errors.NotEnoughMemory` on ``resolution`` when the host arrays
    of ``grid`` (``bytes_per_voxel`` a point) cannot fit in RAM, before any is allocated."""
    check_fits("resolution", resolution, grid.n_points * bytes_per_voxel, "cpu")


def _field_positions(run: LoadedRun, x: torch.Tensor) -> torch.Tensor:
    """Scene positions -> the positions the field takes (contracted for an unbounded scene)."""
    return contract(x) if run.grid.contracted else x


def occupancy_lookup(run: LoadedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    """``occupied(x)``: [N] bool, whether field positions [N, 3] lie in or next to (26
    neighbours) an occupied cell of the run's occupancy grid, the cells rendering marches; False
    outside the grid. The neighbours keep a surface whole where it grazes a cell whose
    jittered density samples all missed it."""
    grid = run.grid
    r = grid.resolution
    mask = grid.occupied_mask().view(1, 1, r, r, r).float()
    mask = (torch.nn.functional.max_pool3d(mask, 3, stride=1, padding=1) > 0).reshape(-1)
    lo, size = grid.aabb[0], grid.aabb[1] - grid.aabb[0]

    def occupied(x: torch.Tensor) -> torch.Tensor:
        cell = torch.floor((x - lo) / size * r).long()
        inside = ((cell >= 0) & (cell < r)).all(dim=-1)
        cell = cell.clamp(0, r - 1)
        return inside & mask[(cell[:, 0] * r + cell[:, 1]) * r + cell[:, 2]]

    return occupied


def _grid_positions(grid: VoxelGrid, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Positions [stop - start, 3] float32 of the grid points of flat indices ``start..stop``
    (x-major order, z fastest, as ``np.ndarray.reshape(shape)``)."""
    flat = torch.arange(start, stop, device=device, dtype=torch.int64)
    ny, nz = grid.shape[1], grid.shape[2]
    index = torch.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], dim=-1).double()
    lo = torch.as_tensor(grid.lo, device=device)
    return (lo + grid.voxel_size * index).float()


@torch.no_grad()
def sample_density(run: LoadedRun, grid: VoxelGrid, *, chunk: int = CHUNK,
                   on_progress: Progress | None = None) -> np.ndarray:
    """Density sigma (1 / world unit) of the run's field at every point of ``grid``, zero away
    from the occupied cells of its occupancy grid (:func:`occupancy_lookup`: where rendering
    never samples, and where a field such as an mlp's may hold density nobody sees): [nx, ny, nz] float32, ``out[i, j, k]`` at
    ``grid.lo + grid.voxel_size * (i, j, k)``."""
    backend.init()
    device = run.grid.aabb.device
    occupied = occupancy_lookup(run)
    out = np.empty(grid.n_points, dtype=np.float32)
    for start in range(0, grid.n_points, chunk):
        stop = min(start + chunk, grid.n_points)
        x = _field_positions(run, _grid_positions(grid, start, stop, device))
        sigma = torch.exp(run.field.features(x)[:, 0].float()) * occupied(x)
        out[start:stop] = sigma.cpu().numpy()
        if on_progress is not None:
            on_progress(stop, grid.n_points)
    return out.reshape(grid.shape)


@torch.no_grad()
def _raw_density(run: LoadedRun, x: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    return torch.cat([run.field.features(_field_positions(run, x[i:i + chunk]))[:, 0].float()
                      for i in range(0, len(x), chunk)]) if len(x) else x.new_zeros(0)


def _raw_density_at_samples(run: LoadedRun, positions: torch.Tensor) -> torch.Tensor:
    """Raw density [S] float32 at marched samples' ``positions`` [S, 3] (already the field's
    positions: contracted for an unbounded scene)."""
    return torch.cat([run.field.features(positions[j:j + CHUNK])[:, 0].float()
                      for j in range(0, len(positions), CHUNK)])


@torch.no_grad()
def _colour(run: LoadedRun, x: torch.Tensor, directions: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """RGB [N, 3] in [0, 1] at scene positions [N, 3] seen along unit directions [N, 3]."""
    parts = []
    for i in range(0, len(x), chunk):
        features = run.field.features(_field_positions(run, x[i:i + chunk]))
        parts.append(run.field.colour(features, directions[i:i + chunk]).float())
    return torch.cat(parts) if parts else x.new_zeros(0, 3)


def _marched_chunks(run: LoadedRun, origins: torch.Tensor, directions: torch.Tensor, *, near: float, far: float,
                    chunk: int) -> Iterator[tuple[PackedSamples, torch.Tensor, torch.Tensor]]:
    """The rays marched ``chunk`` at a time as rendering marches them (the run's step, through its
    occupied cells): per chunk, its samples, their density sigma [S] (1 / world unit) and a
    distance per ray [chunk] filled with ``inf``, for the caller to fill in."""
    config = run.marching_config()
    for i in range(0, len(origins), chunk):
        o, d = origins[i:i + chunk].contiguous(), directions[i:i + chunk].contiguous()
        samples = march(run.grid, o, d, near=near, far=far, config=config)
        sigma = torch.exp(_raw_density_at_samples(run, samples.positions)) if samples.n_samples else None
        yield samples, sigma, torch.full((len(o),), math.inf, device=o.device)


def _first_crossing(samples: PackedSamples, sigma: torch.Tensor | None, t: torch.Tensor,
                    threshold: float) -> torch.Tensor:
    """``t`` [rays] with each ray's first crossing of ``threshold`` (:func:`surface_distances`)."""
    n = samples.n_samples
    if n:
        index = torch.arange(n, device=t.device)
        above = sigma >= threshold
        first = torch.full((len(t),), n, dtype=torch.int64, device=t.device)
        first.scatter_reduce_(0, samples.ray_indices[above].long(), index[above], reduce="amin")
        rays = torch.nonzero(first < n).squeeze(-1)
        f = first[rays]
        before = (f - 1).clamp_min(0)
        t_f, dt_f = samples.t[f], samples.dt[f]
        adjacent = (f > samples.ray_starts[rays].long()) & (
            t_f - samples.t[before] <= 0.51 * (dt_f + samples.dt[before]))
        t_before = torch.where(adjacent, samples.t[before], t_f - dt_f)
        s_before = torch.where(adjacent, sigma[before], torch.zeros_like(t_f))
        w = ((threshold - s_before) / (sigma[f] - s_before).clamp_min(1e-12)).clamp(0, 1)
        t[rays] = t_before + w * (t_f - t_before)
    return t


def _optical_depth(opacity: float) -> float:
    """The optical depth ``-ln(1 - opacity)`` at which a ray's opacity reaches ``opacity`` in (0, 1)."""
    if not 0 < opacity < 1:
        raise OptionValueError("opacity", f"must lie in (0, 1), got {opacity}")
    return -math.log1p(-opacity)


def _opacity_crossing(samples: PackedSamples, sigma: torch.Tensor | None, t: torch.Tensor,
                      depth: float) -> torch.Tensor:
    """``t`` [rays] with where each ray's optical depth reaches ``depth`` (:func:`opaque_distances`)."""
    n = samples.n_samples
    if n:
        sigma = sigma.double()
        tau = sigma * samples.dt.double()
        total = torch.cumsum(tau, 0)
        rays = samples.ray_indices.long()
        offset = (total - tau)[samples.ray_starts.long().clamp_max(n - 1)][rays]
        after = total - offset
        before = after - tau
        crossing = torch.nonzero((before < depth) & (after >= depth)).squeeze(-1)
        into = ((depth - before[crossing]) / sigma[crossing].clamp_min(1e-12)).float()
        start = samples.t[crossing] - 0.5 * samples.dt[crossing]
        t[rays[crossing]] = start + into.clamp(min=0).minimum(samples.dt[crossing])
    return t


@torch.no_grad()
def surface_distances(run: LoadedRun, origins: torch.Tensor, directions: torch.Tensor, *, near: float,
                      far: float, threshold: float = DEFAULT_THRESHOLD, chunk: int = 1 << 14) -> torch.Tensor:
    """Distance [N] (world units) along each ray to where the density first reaches
    ``threshold``: the rays are marched as rendering marches them (the run's step, through its
    occupied cells), and the crossing is interpolated linearly in sigma between the first sample
    at or above ``threshold`` and the one before it (sigma 0 one step earlier when the ray has
    just entered an occupied cell); ``inf`` where the ray never reaches ``threshold``.

    Args:
        run: a loaded run.
        origins, directions: [N, 3] float32 rays in the space the field is marched in (the
            camera rig's :meth:`~taichi_pvd.data.camera_rig.CameraRig.scene_rays`), unit
            directions, on the run's device.
        near, far: distance range along the rays.
        threshold: density sigma (1 / world unit) of the surface.
        chunk: rays marched at once.
    """
    return torch.cat([_first_crossing(samples, sigma, t, threshold) for samples, sigma, t in
                      _marched_chunks(run, origins, directions, near=near, far=far, chunk=chunk)]
                     or [origins.new_zeros(0)])


@torch.no_grad()
def opaque_distances(run: LoadedRun, origins: torch.Tensor, directions: torch.Tensor, *, near: float,
                     far: float, opacity: float = 0.5, chunk: int = 1 << 14) -> torch.Tensor:
    """Distance [N] (world units) along each ray to where its accumulated opacity
    ``1 - transmittance`` reaches ``opacity`` (the "median depth" for 0.5): the rays are marched
    as rendering marches them, and within the sample where the opacity crosses it the crossing
    is placed exactly for the sample's constant density (optical depth ``-ln(1 - opacity)``
    reached ``(-ln(1 - opacity) - tau_before) / sigma`` into its interval); ``inf`` where the
    ray's total opacity stays below ``opacity``. Faint floaters in front of a surface barely
    move it, unlike the first density crossing of :func:`surface_distances`.

    Args:
        run: a loaded run.
        origins, directions: [N, 3] float32 rays in the space the field is marched in, unit
            directions, on the run's device.
        near, far: distance range along the rays.
        opacity: in (0, 1), the accumulated opacity of the surface.
        chunk: rays marched at once.
    """
    depth = _optical_depth(opacity)
    return torch.cat([_opacity_crossing(samples, sigma, t, depth) for samples, sigma, t in
                      _marched_chunks(run, origins, directions, near=near, far=far, chunk=chunk)]
                     or [origins.new_zeros(0)])


@torch.no_grad()
def _surface_and_opaque_distances(run: LoadedRun, origins: torch.Tensor, directions: torch.Tensor, *, near: float,
                                  far: float, threshold: float, opacity: float = 0.5,
                                  chunk: int = 1 << 14) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`surface_distances` and :func:`opaque_distances` [N] of the same rays, marched and
    evaluated once."""
    depth = _optical_depth(opacity)
    surface, opaque = [], []
    for samples, sigma, t in _marched_chunks(run, origins, directions, near=near, far=far, chunk=chunk):
        surface.append(_first_crossing(samples, sigma, t.clone(), threshold))
        opaque.append(_opacity_crossing(samples, sigma, t, depth))
    empty = origins.new_zeros(0)
    return torch.cat(surface or [empty]), torch.cat(opaque or [empty])


def _view_rays(run: LoadedRun, views: ViewSet, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays [H * W, 3] of view ``i`` through its pixel centres (row-major), in the space the
    field is marched in, on the run's device."""
    device = run.grid.aabb.device
    origins, directions = generate_rays(views.c2w[i:i + 1].to(device), views.intrinsics[i:i + 1].to(device),
                                        views.height, views.width,
                                        lens=None if views.lens is None else views.lens.select(slice(i, i + 1)))
    return run.camera_rig().scene_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))


def density_normals(run: LoadedRun, x: torch.Tensor, step: float) -> torch.Tensor:
    """Unit outward normals [N, 3] at scene positions [N, 3]: minus the gradient of the raw
    density, by central differences of ``step`` world units."""
    offsets = torch.eye(3, device=x.device, dtype=x.dtype) * step
    grad = torch.stack([_raw_density(run, x + o) - _raw_density(run, x - o) for o in offsets], dim=-1)
    return -torch.nn.functional.normalize(grad, dim=-1)


@dataclass
class Mesh:
    """A triangle mesh in field coordinates."""

    vertices: np.ndarray
    """[V, 3] float32 positions."""
    faces: np.ndarray
    """[F, 3] int64 vertex indices, counter-clockwise seen from outside."""
    colours: np.ndarray
    """[V, 3] uint8 RGB."""
    normals: np.ndarray
    """[V, 3] float32 unit outward normals (minus the density gradient)."""


def _drop_small_components(n_vertices: int, faces: np.ndarray, keep_largest: bool,
                           min_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """The faces of the largest connected component (``keep_largest``) or of every component
    of at least ``min_faces`` faces: ``(kept, faces)``, the indices [V'] of the vertices they
    use and the faces renumbered into them."""
    import trimesh

    if len(faces) and (keep_largest or min_faces > 1):
        components = trimesh.graph.connected_components(trimesh.graph.face_adjacency(faces),
                                                        nodes=np.arange(len(faces)))
        components = sorted(components, key=len, reverse=True)
        kept = components[:1] if keep_largest else [c for c in components if len(c) >= min_faces]
        faces = faces[np.sort(np.concatenate(kept))] if kept else faces[:0]
    used, faces = np.unique(faces, return_inverse=True)
    return used, faces.reshape(-1, 3)


@torch.no_grad()
def visible_faces(run: LoadedRun, vertices: np.ndarray, faces: np.ndarray, views: ViewSet, *,
                  threshold: float = DEFAULT_THRESHOLD, tolerance: float = 0.0,
                  on_progress: Progress | None = None) -> np.ndarray:
    """[F] bool: the faces of a mesh of the surface ``sigma = threshold`` that some view sees.

    Face ``f`` is seen by a view when its centre projects into the image, it faces the camera
    (its counter-clockwise normal points towards it), and it lies no farther from the camera
    than the surface the pixel's ray reaches first (:func:`surface_distances` at
    ``threshold``) plus ``tolerance`` and two pixels' footprint at that distance. Surfaces no
    camera can see (the inner walls of a solid whose density the views never asked for, its
    unseen underside's inside) are what this drops. With a forward-facing (NDC) run every face
    counts as seen.

    Args:
        vertices: [V, 3] positions, field coordinates; faces: [F, 3] vertex indices.
        views: the cameras (their pixels' rays give the first surface).
        tolerance: world units of slack on the depth test (the mesh's own discretisation).
    """
    seen = np.zeros(len(faces), dtype=bool)
    if run.camera_rig().ndc is not None:
        return ~seen
    device = run.grid.aabb.device
    a, b, c = (torch.as_tensor(vertices[faces[:, i]], dtype=torch.float32, device=device) for i in range(3))
    centres = (a + b + c) / 3
    normals = torch.linalg.cross(b - a, c - a)
    seen_t = torch.zeros(len(faces), dtype=torch.bool, device=device)
    for i in range(len(views)):
        origins, directions = _view_rays(run, views, i)
        depth = surface_distances(run, origins, directions, near=views.near, far=views.far, threshold=threshold)
        c2w = views.c2w[i].to(device)
        fx, fy, cx, cy = views.intrinsics[i].tolist()
        to_camera = c2w[:, 3] - centres
        local = -to_camera @ c2w[:, :3]
        ahead = local[:, 2] < 0
        z = (-local[:, 2]).clamp_min(1e-9)
        u = torch.floor(fx * local[:, 0] / z + cx).long()
        v = torch.floor(cy - fy * local[:, 1] / z).long()
        inside = ahead & (u >= 0) & (u < views.width) & (v >= 0) & (v < views.height)
        pixel = (v.clamp(0, views.height - 1) * views.width + u.clamp(0, views.width - 1))
        distance = to_camera.norm(dim=-1)
        slack = tolerance + 2.0 * distance / fx
        facing = (normals * to_camera).sum(-1) > 0
        seen_t |= inside & facing & (distance <= depth[pixel] + slack)
        if on_progress is not None:
            on_progress(i + 1, len(views))
    return seen_t.cpu().numpy()


def extract_mesh(run: LoadedRun, *, resolution: int, threshold: float = DEFAULT_THRESHOLD,
                 box: np.ndarray | None = None, views: ViewSet | None = None, keep_largest: bool = False,
                 min_component_faces: int = 1, on_progress: Progress | None = None) -> Mesh:
    """The surface ``sigma = threshold`` of the run's field by marching cubes.

    Args:
        run: a loaded run (any architecture).
        resolution: grid points along the longest side of the export box.
        threshold: density sigma (1 / world unit) of the surface; :data:`DEFAULT_THRESHOLD`.
        box: [2, 3] ``(min, max)`` in field coordinates (None: :func:`export_box`).
        views: cameras whose unseen faces are dropped (:func:`visible_faces`); None keeps every
            face.
        keep_largest: keep only the largest connected piece.
        min_component_faces: drop connected pieces of fewer faces (floaters).
        on_progress: ``(done, total)`` over the grid points evaluated, then over the views.

    The density is zero outside the run's occupied cells (:func:`sample_density`).

    Returns:
        A :class:`Mesh` with vertex colours: the field's colour slightly inside the surface,
        seen along the inward normal (as a camera facing the surface sees it).

    Raises:
        NotEnoughMemory: the grid of ``resolution`` would not fit in RAM (checked first).
        OptionValueError: the density never reaches ``threshold`` in the box (no surface).
    """
    mcubes, _ = require_mesh_libraries()
    if not threshold > 0:
        raise OptionValueError("threshold", f"must be a positive density, got {threshold}")
    grid = voxel_grid(export_box(run, box), resolution)
    check_grid_fits(grid, resolution, _MESH_BYTES_PER_VOXEL)
    sigma = sample_density(run, grid, on_progress=on_progress)
    vertices, faces = mcubes.marching_cubes(sigma, float(threshold))
    del sigma
    if not len(faces):
        raise OptionValueError("threshold", f"the field's density never reaches {threshold:g} in the export box, so "
                               "there is no surface: check that the run is trained, or pass a lower --threshold")
    vertices = grid.lo + grid.voxel_size * vertices
    faces = faces.astype(np.int64)
    device = run.grid.aabb.device
    x = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    normals = density_normals(run, x, 0.5 * grid.voxel_size)
    if len(faces):
        a, b, c = (vertices[faces[:, i]] for i in range(3))
        winding = np.cross(b - a, c - a)
        along = (winding * normals.cpu().numpy()[faces].mean(axis=1)).sum()
        if along < 0:
            faces = faces[:, ::-1].copy()
    if views is not None and len(faces):
        faces = faces[visible_faces(run, vertices, faces, views, threshold=threshold,
                                    tolerance=2.0 * grid.voxel_size, on_progress=on_progress)]
    kept, faces = _drop_small_components(len(vertices), faces, keep_largest, min_component_faces)
    vertices, normals, x = vertices[kept], normals[torch.as_tensor(kept, device=device)], x[torch.as_tensor(kept, device=device)]
    inside = x - normals * (0.5 * grid.voxel_size)
    colours = _colour(run, inside, -normals)
    return Mesh(vertices.astype(np.float32), faces,
                (colours.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(),
                normals.cpu().numpy().astype(np.float32))


MESH_SUFFIXES = (".ply", ".obj", ".glb")


#: The file suffixes each kind of export writes.
OUTPUT_SUFFIXES = {"mesh": MESH_SUFFIXES, "points": (".ply",), "volume": (".npz",)}


def check_output(path: str | os.PathLike, kind: str) -> Path:
    """Raise :class:`OptionValueError` on ``out`` when ``path`` has no suffix of ``kind``
    (``mesh``, ``points``, ``volume``) or cannot be written (its folder is missing or read-only,
    or it is a folder), before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES[kind]:
        raise OptionValueError("out", f"must end in {' or '.join(OUTPUT_SUFFIXES[kind])} for {kind} export, got {path.name}")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OptionValueError("out", f"{path} is a folder: give a file name")
    if not folder.is_dir():
        raise OptionValueError("out", f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OptionValueError("out", f"{path} cannot be written: choose another file")
    return path


def write_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` with its vertex colours and normals to ``path`` (``.ply``, ``.obj`` or
    ``.glb``, by its suffix) with trimesh."""
    _, trimesh = require_mesh_libraries()
    path = check_output(path, "mesh")
    alpha = np.full((len(mesh.colours), 1), 255, dtype=np.uint8)
    out = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.normals,
                          vertex_colors=np.concatenate([mesh.colours, alpha], axis=1), process=False)
    _export(out, path)
    return path


def _export(geometry, path: Path) -> None:
    try:
        geometry.export(path)
    except OSError as exc:
        raise OptionValueError("out", f"{path} cannot be written ({exc.strerror or exc})") from exc


@dataclass
class PointCloud:
    """Coloured points in field coordinates."""

    points: np.ndarray
    """[N, 3] float32."""
    colours: np.ndarray
    """[N, 3] uint8 RGB."""


#: How far past the threshold crossing (a fraction of the field box's longest side) a pixel's
#: ray must become opaque for the pixel to give a point: faint floaters, which a ray crosses
#: without becoming opaque, give none.
OPAQUE_WITHIN = 1 / 32


def extract_points(run: LoadedRun, views: ViewSet, *, threshold: float = DEFAULT_THRESHOLD,
                   n_points: int = 1_000_000, box: np.ndarray | None = None, seed: int = 0,
                   on_progress: Progress | None = None) -> PointCloud:
    """A coloured point cloud of the surface the cameras of ``views`` see: one point per pixel,
    where its ray first reaches the density ``threshold`` (:func:`surface_distances`, the
    same surface as the mesh's), provided the ray's accumulated opacity reaches 0.5
    (:func:`opaque_distances`) within :data:`OPAQUE_WITHIN` of the box after it; coloured by
    the field one marching step further in, seen along the ray. Pixels whose ray never becomes
    opaque there give none, points outside the export box (:func:`export_box` of ``box``) are
    dropped, and ``n_points`` of the rest are kept at random (``seed``)."""
    if n_points < 1:
        raise OptionValueError("n_points", f"must be positive, got {n_points}")
    if not threshold > 0:
        raise OptionValueError("threshold", f"must be a positive density, got {threshold}")
    backend.init()
    device = run.grid.aabb.device
    region = torch.as_tensor(export_box(run, box), dtype=torch.float32, device=device)
    step = run.marching_config().step_size(run.grid)
    within = OPAQUE_WITHIN * float((run.field.aabb[1] - run.field.aabb[0]).max())
    points, colours = [], []
    for i in range(len(views)):
        origins, directions = _view_rays(run, views, i)
        t, opaque = _surface_and_opaque_distances(run, origins, directions, near=views.near, far=views.far,
                                                  threshold=threshold)
        hit = torch.isfinite(t) & (opaque - t <= within)
        x = origins[hit] + directions[hit] * t[hit, None]
        inside = ((x >= region[0]) & (x <= region[1])).all(dim=-1)
        x, d = x[inside], directions[hit][inside]
        points.append(x.cpu())
        colours.append(_colour(run, x + d * step, d).clamp(0, 1).cpu())
        if on_progress is not None:
            on_progress(i + 1, len(views))
    xyz = torch.cat(points) if points else torch.zeros(0, 3)
    rgb = torch.cat(colours) if colours else torch.zeros(0, 3)
    if len(xyz) > n_points:
        pick = torch.randperm(len(xyz), generator=torch.Generator().manual_seed(seed))[:n_points]
        xyz, rgb = xyz[pick], rgb[pick]
    return PointCloud(xyz.numpy().astype(np.float32), (rgb * 255).round().to(torch.uint8).numpy())


def write_points(cloud: PointCloud, path: str | os.PathLike) -> Path:
    """Write ``cloud`` as a binary ``.ply`` of coloured vertices with trimesh."""
    _, trimesh = require_mesh_libraries()
    path = check_output(path, "points")
    alpha = np.full((len(cloud.colours), 1), 255, dtype=np.uint8)
    _export(trimesh.PointCloud(cloud.points, colors=np.concatenate([cloud.colours, alpha], axis=1)), path)
    return path


@torch.no_grad()
def write_volume(run: LoadedRun, path: str | os.PathLike, *, resolution: int, box: np.ndarray | None = None,
                 rgb_threshold: float = DEFAULT_THRESHOLD, on_progress: Progress | None = None) -> VoxelGrid:
    """Write the run's density and colour on a regular grid to a compressed ``.npz``.

    Layout (``data = numpy.load(path)``):

    - ``density`` [nx, ny, nz] float32: sigma in 1 / world unit (``exp`` of phi1's raw density)
      at the point ``box[0] + voxel_size * (i, j, k)`` of index ``[i, j, k]`` (x, y, z order),
      zero outside the run's occupied cells (as :func:`sample_density`);
    - ``rgb`` [nx, ny, nz, 3] uint8: the colour there averaged over four directions (a regular
      tetrahedron's), 0 where ``density < rgb_threshold``;
    - ``box`` [2, 3] float64: ``(min, max)`` corners, ``box[1] = box[0] + voxel_size * (shape - 1)``;
    - ``voxel_size`` [] float64: spacing of the points, field units;
    - ``model`` [] str: the architecture; ``rgb_threshold`` [] float64.

    Returns the :class:`VoxelGrid` written.
    """
    path = check_output(path, "volume")
    grid = voxel_grid(export_box(run, box), resolution)
    check_grid_fits(grid, resolution, _VOLUME_BYTES_PER_VOXEL)
    backend.init()
    device = run.grid.aabb.device
    occupied = occupancy_lookup(run)
    density = np.empty(grid.n_points, dtype=np.float32)
    rgb = np.zeros((grid.n_points, 3), dtype=np.uint8)
    directions = torch.as_tensor(_TETRAHEDRON, device=device)
    for start in range(0, grid.n_points, CHUNK):
        stop = min(start + CHUNK, grid.n_points)
        x = _field_positions(run, _grid_positions(grid, start, stop, device))
        features = run.field.features(x)
        sigma = torch.exp(features[:, 0].float()) * occupied(x)
        density[start:stop] = sigma.cpu().numpy()
        solid = torch.nonzero(sigma >= rgb_threshold).squeeze(-1)
        if len(solid):
            f = features[solid]
            colour = sum(run.field.colour(f, d.expand(len(solid), 3).contiguous()).float()
                         for d in directions) / len(directions)
            rgb[start + solid.cpu().numpy()] = (colour.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        if on_progress is not None:
            on_progress(stop, grid.n_points)
    try:
        np.savez_compressed(path, density=density.reshape(grid.shape), rgb=rgb.reshape(*grid.shape, 3),
                            box=np.stack([grid.lo, grid.hi]), voxel_size=np.float64(grid.voxel_size),
                            model=np.str_(run.model), rgb_threshold=np.float64(rgb_threshold))
    except OSError as exc:
        raise OptionValueError("out", f"{path} cannot be written ({exc.strerror or exc})") from exc
    return grid
