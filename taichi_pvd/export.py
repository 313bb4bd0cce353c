"""Taking a trained field out as explicit geometry, for any architecture, through the density
of phi1 (``features(x)[:, 0]``, ``sigma = exp(raw)``):

- :func:`extract_mesh`: marching cubes of sigma over the occupied part of the box, vertex
  colours seen along the surface normal; :func:`write_mesh` writes ``.ply``, ``.obj`` or
  ``.glb``;
- :func:`extract_points`: a coloured point cloud from depth renders of views;
  :func:`write_points` writes ``.ply``;
- :func:`write_volume`: sigma and RGB on a regular grid as ``.npz`` (layout in its docstring).

Every position is in the field's coordinates: world units for a bounded scene, the normalised
scene space of an unbounded one (whose inner region ``[-1, 1]^3`` is exported by default), NDC
for a forward-facing one. The field is evaluated in chunks; the memory of the host arrays is
estimated before they are allocated.

Marching cubes (``PyMCubes``) and the mesh writer (``trimesh``) are an optional extra:
``pip install "taichi-pvd[export]"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import backend
from .data import generate_rays
from .errors import OptionValueError, PvdError
from .io.runs import LoadedRun
from .kernels.contraction import contract
from .memory import available_bytes
from .rendering.inference import render_views
from .rendering.view_sets import ViewSet

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


def check_fits(grid: VoxelGrid, bytes_per_voxel: int, available: int | None = None) -> None:
    """Raise :class:`OptionValueError` on ``resolution`` when the host arrays of ``grid`` would
    take more than 80% of the available memory (``available`` bytes; None: measured by
    :func:`~taichi_pvd.memory.available_bytes`)."""
    needed = grid.n_points * bytes_per_voxel
    available = available_bytes("cpu")[0] if available is None else available
    if needed > 0.8 * available:
        raise OptionValueError(
            "resolution", f"gives {grid.shape[0]}x{grid.shape[1]}x{grid.shape[2]} voxels, which need about "
            f"{needed / 2**30:.1f} GiB of memory, more than the {available / 2**30:.1f} GiB available: choose a lower one")


def _field_positions(run: LoadedRun, x: torch.Tensor) -> torch.Tensor:
    """Scene positions -> the positions the field takes (contracted for an unbounded scene)."""
    return contract(x) if run.grid.contracted else x


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
    """Density sigma (1 / world unit) of the run's field at every point of ``grid``:
    [nx, ny, nz] float32, ``out[i, j, k]`` at ``grid.lo + grid.voxel_size * (i, j, k)``."""
    backend.init()
    device = run.grid.aabb.device
    out = np.empty(grid.n_points, dtype=np.float32)
    for start in range(0, grid.n_points, chunk):
        stop = min(start + chunk, grid.n_points)
        x = _field_positions(run, _grid_positions(grid, start, stop, device))
        out[start:stop] = torch.exp(run.field.features(x)[:, 0].float()).cpu().numpy()
        if on_progress is not None:
            on_progress(stop, grid.n_points)
    return out.reshape(grid.shape)


@torch.no_grad()
def _raw_density(run: LoadedRun, x: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    return torch.cat([run.field.features(_field_positions(run, x[i:i + chunk]))[:, 0].float()
                      for i in range(0, len(x), chunk)]) if len(x) else x.new_zeros(0)


@torch.no_grad()
def _colour(run: LoadedRun, x: torch.Tensor, directions: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """RGB [N, 3] in [0, 1] at scene positions [N, 3] seen along unit directions [N, 3]."""
    parts = []
    for i in range(0, len(x), chunk):
        features = run.field.features(_field_positions(run, x[i:i + chunk]))
        parts.append(run.field.colour(features, directions[i:i + chunk]).float())
    return torch.cat(parts) if parts else x.new_zeros(0, 3)


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


def _drop_small_components(vertices: np.ndarray, faces: np.ndarray, keep_largest: bool,
                           min_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """The faces of the largest connected component (``keep_largest``) or of every component
    of at least ``min_faces`` faces, with the vertices they use, renumbered."""
    import trimesh

    if len(faces) == 0 or (not keep_largest and min_faces <= 1):
        return vertices, faces
    components = trimesh.graph.connected_components(trimesh.graph.face_adjacency(faces), nodes=np.arange(len(faces)))
    components = sorted(components, key=len, reverse=True)
    kept = components[:1] if keep_largest else [c for c in components if len(c) >= min_faces]
    faces = faces[np.sort(np.concatenate(kept))] if kept else faces[:0]
    used, faces = np.unique(faces, return_inverse=True)
    return vertices[used], faces.reshape(-1, 3)


def extract_mesh(run: LoadedRun, *, resolution: int, threshold: float = DEFAULT_THRESHOLD,
                 box: np.ndarray | None = None, keep_largest: bool = False, min_component_faces: int = 1,
                 on_progress: Progress | None = None, available_memory: int | None = None) -> Mesh:
    """The surface ``sigma = threshold`` of the run's field by marching cubes.

    Args:
        run: a loaded run (any architecture).
        resolution: grid points along the longest side of the export box.
        threshold: density sigma (1 / world unit) of the surface; :data:`DEFAULT_THRESHOLD`.
        box: [2, 3] ``(min, max)`` in field coordinates (None: :func:`export_box`).
        keep_largest: keep only the largest connected piece.
        min_component_faces: drop connected pieces of fewer faces (floaters).
        on_progress: ``(done, total)`` over the grid points evaluated.
        available_memory: host bytes to plan with (None: measured).

    Returns:
        A :class:`Mesh` with vertex colours: the field's colour slightly inside the surface,
        seen along the inward normal (as a camera facing the surface sees it).
    """
    mcubes, _ = require_mesh_libraries()
    if not threshold > 0:
        raise OptionValueError("threshold", f"must be a positive density, got {threshold}")
    grid = voxel_grid(export_box(run, box), resolution)
    check_fits(grid, _MESH_BYTES_PER_VOXEL, available_memory)
    sigma = sample_density(run, grid, on_progress=on_progress)
    vertices, faces = mcubes.marching_cubes(sigma, float(threshold))
    del sigma
    vertices = grid.lo + grid.voxel_size * vertices
    faces = faces.astype(np.int64)
    vertices, faces = _drop_small_components(vertices, faces, keep_largest, min_component_faces)
    device = run.grid.aabb.device
    x = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    normals = density_normals(run, x, 0.5 * grid.voxel_size)
    if len(faces):
        a, b, c = (vertices[faces[:, i]] for i in range(3))
        winding = np.cross(b - a, c - a)
        along = (winding * normals.cpu().numpy()[faces].mean(axis=1)).sum()
        if along < 0:
            faces = faces[:, ::-1].copy()
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


def _unmixed_pixels(hit: torch.Tensor, depth: torch.Tensor, max_depth_jump: float) -> torch.Tensor:
    """[H, W] bool: the pixels of ``hit`` whose four neighbours are hits too, at depths within
    ``max_depth_jump`` times their own (not on a silhouette, where the mean depth of a pixel
    mixes two surfaces and lies between them)."""
    padded_hit = torch.nn.functional.pad(hit[None, None].float(), (1, 1, 1, 1))[0, 0] > 0
    padded_depth = torch.nn.functional.pad(depth[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    keep = hit.clone()
    h, w = hit.shape
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        keep &= padded_hit[dy:dy + h, dx:dx + w]
        keep &= (padded_depth[dy:dy + h, dx:dx + w] - depth).abs() <= max_depth_jump * depth
    return keep


def extract_points(run: LoadedRun, views: ViewSet, *, n_points: int = 1_000_000, min_opacity: float = 0.9,
                   max_depth_jump: float = 0.01, box: np.ndarray | None = None, seed: int = 0,
                   on_progress: Progress | None = None) -> PointCloud:
    """A coloured point cloud from depth renders of ``views``: each pixel whose rendered opacity
    reaches ``min_opacity`` gives the point at its mean depth along its ray, with its colour
    (unmixed from the background), unless a neighbouring pixel is no hit or lies more than
    ``max_depth_jump`` times its depth nearer or farther (a silhouette); points outside the
    export box (:func:`export_box` of ``box``) are dropped, and ``n_points`` of the rest are
    kept at random (``seed``)."""
    if n_points < 1:
        raise OptionValueError("n_points", f"must be positive, got {n_points}")
    if not 0.0 < min_opacity <= 1.0:
        raise OptionValueError("min_opacity", f"must be in (0, 1], got {min_opacity}")
    if not max_depth_jump > 0:
        raise OptionValueError("max_depth_jump", f"must be positive, got {max_depth_jump}")
    backend.init()
    device = run.grid.aabb.device
    region = torch.as_tensor(export_box(run, box), dtype=torch.float32, device=device)
    rig = run.camera_rig()
    background = torch.tensor(views.background if views.background is not None else (1.0, 1.0, 1.0),
                              dtype=torch.float32)
    points, colours = [], []

    def collect(i: int, frame) -> None:
        origins, directions = generate_rays(views.c2w[i:i + 1].to(device), views.intrinsics[i:i + 1].to(device),
                                            views.height, views.width,
                                            lens=None if views.lens is None else views.lens.select(slice(i, i + 1)))
        origins, directions = rig.scene_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
        opacity = torch.from_numpy(frame.opacity).to(device)
        depth = torch.from_numpy(frame.depth).to(device) / opacity.clamp_min(1e-6)
        hit = _unmixed_pixels(opacity >= min_opacity, depth, max_depth_jump).reshape(-1)
        opacity, depth = opacity.reshape(-1), depth.reshape(-1)
        rgb = torch.from_numpy(frame.rgb.reshape(-1, 3))
        x = origins[hit] + directions[hit] * depth[hit, None]
        inside = ((x >= region[0]) & (x <= region[1])).all(dim=-1)
        a = opacity[hit][inside].cpu()[:, None]
        unmixed = ((rgb[hit.cpu()][inside.cpu()] - (1 - a) * background) / a).clamp(0, 1)
        points.append(x[inside].cpu())
        colours.append(unmixed)
        if on_progress is not None:
            on_progress(i + 1, len(views))

    render_views(run, views, on_frame=collect)
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
                 rgb_threshold: float = DEFAULT_THRESHOLD, on_progress: Progress | None = None,
                 available_memory: int | None = None) -> VoxelGrid:
    """Write the run's density and colour on a regular grid to a compressed ``.npz``.

    Layout (``data = numpy.load(path)``):

    - ``density`` [nx, ny, nz] float32: sigma in 1 / world unit (``exp`` of phi1's raw density)
      at the point ``box[0] + voxel_size * (i, j, k)`` of index ``[i, j, k]`` (x, y, z order);
    - ``rgb`` [nx, ny, nz, 3] uint8: the colour there averaged over four directions (a regular
      tetrahedron's), 0 where ``density < rgb_threshold``;
    - ``box`` [2, 3] float64: ``(min, max)`` corners, ``box[1] = box[0] + voxel_size * (shape - 1)``;
    - ``voxel_size`` [] float64: spacing of the points, field units;
    - ``model`` [] str: the architecture; ``rgb_threshold`` [] float64.

    Returns the :class:`VoxelGrid` written.
    """
    path = check_output(path, "volume")
    grid = voxel_grid(export_box(run, box), resolution)
    check_fits(grid, _VOLUME_BYTES_PER_VOXEL, available_memory)
    backend.init()
    device = run.grid.aabb.device
    density = np.empty(grid.n_points, dtype=np.float32)
    rgb = np.zeros((grid.n_points, 3), dtype=np.uint8)
    directions = torch.as_tensor(_TETRAHEDRON, device=device)
    for start in range(0, grid.n_points, CHUNK):
        stop = min(start + CHUNK, grid.n_points)
        x = _field_positions(run, _grid_positions(grid, start, stop, device))
        features = run.field.features(x)
        sigma = torch.exp(features[:, 0].float())
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
