"""The embedded demo scene: a few textured primitives, ray cast analytically by this module.

No downloaded data: the scene is rendered here, in torch on the CPU, and written in the
NeRF-Synthetic layout (``transforms_{train,val,test}.json`` + RGBA PNGs in ``train/``, ``val/``,
``test/``), so everything that reads NeRF-Synthetic scenes reads it too. World +Z is up; every object lies inside
[-1, 1]^3 (well within the default scene box [-1.5, 1.5]^3) on a transparent background:

- a sphere with a checker texture and a sharp Blinn-Phong highlight (view-dependent colour),
- a rotated box with a fine checker (cells of 0.08 world units),
- two thin banded rods (radius 0.025) and a thin ring (torus, tube radius 0.035),
- a small striped cone.

Lighting is one fixed directional light, ambient + Lambert + Blinn-Phong; each pixel averages a
2x2 grid of jittered samples (antialiasing).

Two variants photograph the same objects in front of a background: a forward-facing capture
(LLFF layout, a textured wall behind the objects) and an unbounded 360-degree capture
(``transforms.json`` layout marked ``"unbounded": true``: a ring of cameras around the objects
inside a far, self-lit sky sphere).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from taichi_pvd.data.camera_paths import look_at, orbit_path, sphere_poses
from taichi_pvd.data.llff import POSES_BOUNDS, opengl_to_llff
from taichi_pvd.data.rays import generate_rays
from taichi_pvd.errors import ConfigError, OutputFolderUnusable
from taichi_pvd.memory import check_demo_memory

#: Bumped whenever the rendered images change, so cached copies are regenerated.
DEMO_VERSION = 1
#: Horizontal field of view of the demo cameras (that of the NeRF-Synthetic scenes), radians.
CAMERA_ANGLE_X = 0.6911112070083618
#: Distance of the demo cameras from the origin, world units.
CAMERA_RADIUS = 4.0
#: Elevation range of the train/val cameras, degrees (upper hemisphere).
ELEVATION_RANGE_DEG = (5.0, 80.0)
#: Elevation of the test orbit, degrees.
TEST_ELEVATION_DEG = 30.0

#: The back wall of the forward-facing variant: the plane y = WALL_Y, world units.
WALL_Y = 2.0
#: Forward-facing variant: cameras on a planar grid at y = -FF_CAMERA_DISTANCE, world units,
#: spanning FF_GRID_EXTENT (x, z) in total, looking towards FF_FOCUS.
FF_CAMERA_DISTANCE = 3.5
FF_GRID_EXTENT = (1.0, 0.6)
FF_FOCUS = (0.0, 6.0, 0.0)
#: Horizontal field of view of the forward-facing cameras, radians.
FF_ANGLE_X = math.radians(50.0)

#: The unbounded variant: cameras at UB_CAMERA_RADIUS from the origin, elevations within
#: UB_ELEVATION_RANGE_DEG (train/val) or at UB_TEST_ELEVATION_DEG (test orbit), looking at the
#: origin, inside a sky sphere of radius SKY_RADIUS (world units). The loader normalises the
#: camera ring into the unit cube, which puts the sky ~10 normalised units away.
UB_CAMERA_RADIUS = 3.2
UB_ELEVATION_RANGE_DEG = (5.0, 35.0)
UB_TEST_ELEVATION_DEG = 20.0
SKY_RADIUS = 40.0
#: Horizontal field of view of the unbounded demo cameras, radians: wide enough that the sky
#: fills about half of each view around the objects.
UB_ANGLE_X = math.radians(60.0)

_LIGHT = (0.45, -0.35, 0.82)
_AMBIENT, _DIFFUSE = 0.3, 0.7
_EPS = 1e-4
_MISS = math.inf


def _vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=-1)


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _parity(*coords: torch.Tensor) -> torch.Tensor:
    """1.0 where the sum of the integer cells of ``coords`` is odd, else 0.0."""
    return (sum(torch.floor(c) for c in coords) % 2).abs()


def _mix(
    a: tuple[float, float, float], b: tuple[float, float, float], w: torch.Tensor
) -> torch.Tensor:
    ta, tb = _vec(*a), _vec(*b)
    return ta + (tb - ta) * w[..., None]


def _rotation_z(angle_deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _rotation_x(angle_deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch ops on one thread: the renderer's many mid-sized ops gain little from more,
    and threads contending with other processes slow it down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Sphere:
    """Checkered sphere with a strong highlight."""

    centre = _vec(-0.3, -0.25, 0.05)
    radius = 0.5
    specular, shininess = 0.8, 80.0

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        oc = o - self.centre
        b = _dot(oc, d)
        disc = b * b - (_dot(oc, oc) - self.radius**2)
        t = -b - torch.sqrt(disc.clamp_min(0.0))
        return torch.where((disc > 0) & (t > _EPS), t, _MISS)

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = (p - self.centre) / self.radius
        longitude = torch.atan2(n[:, 1], n[:, 0]) / (2 * math.pi) * 16
        latitude = torch.asin(n[:, 2].clamp(-1.0, 1.0)) / math.pi * 8
        return n, _mix((0.85, 0.12, 0.1), (0.95, 0.9, 0.75), _parity(longitude, latitude))


class _Box:
    """Box rotated about Z, with a fine solid checker."""

    centre = _vec(0.45, 0.35, -0.45)
    half = _vec(0.28, 0.25, 0.3)
    rotation = _rotation_z(30.0)
    specular, shininess = 0.15, 20.0
    cell = 0.08

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        lo = (o - self.centre) @ self.rotation
        ld = d @ self.rotation
        ld = torch.where(ld.abs() < 1e-9, torch.full_like(ld, 1e-9), ld)
        t1, t2 = (-self.half - lo) / ld, (self.half - lo) / ld
        t_in = torch.minimum(t1, t2).amax(dim=-1)
        t_out = torch.maximum(t1, t2).amin(dim=-1)
        return torch.where((t_in <= t_out) & (t_in > _EPS), t_in, _MISS)

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp = (p - self.centre) @ self.rotation
        face = (lp.abs() / self.half).argmax(dim=-1, keepdim=True)
        n_local = torch.zeros_like(lp).scatter_(-1, face, 1.0) * torch.sign(lp)
        cells = lp / self.cell
        albedo = _mix(
            (0.1, 0.3, 0.8), (0.95, 0.8, 0.2), _parity(cells[:, 0], cells[:, 1], cells[:, 2])
        )
        return n_local @ self.rotation.T, albedo


class _Rod:
    """Thin capped cylinder from ``a`` to ``b`` with coloured bands along its length."""

    specular, shininess = 0.5, 40.0

    def __init__(
        self,
        a: tuple[float, ...],
        b: tuple[float, ...],
        radius: float,
        bands: int,
        colours: tuple[tuple[float, float, float], tuple[float, float, float]],
    ):
        self.a, self.b = _vec(*a), _vec(*b)
        self.radius, self.bands, self.colours = radius, bands, colours

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        ba = self.b - self.a
        oc = o - self.a
        baba, bard, baoc = _dot(ba, ba), d @ ba, oc @ ba
        k2 = baba - bard * bard
        k1 = baba * _dot(oc, d) - baoc * bard
        k0 = baba * _dot(oc, oc) - baoc * baoc - self.radius**2 * baba
        h = k1 * k1 - k2 * k0
        sqrt_h = torch.sqrt(h.clamp_min(0.0))
        t_body = (-k1 - sqrt_h) / k2.clamp_min(1e-12)
        y = baoc + t_body * bard
        body = (h > 0) & (y > 0) & (y < baba) & (t_body > _EPS)
        cap_level = torch.where(y < 0, torch.zeros_like(y), baba)
        safe_bard = torch.where(bard.abs() < 1e-12, torch.full_like(bard, 1e-12), bard)
        t_cap = (cap_level - baoc) / safe_bard
        cap = (h > 0) & ((k1 + k2 * t_cap).abs() < sqrt_h) & (t_cap > _EPS) & ~body
        return torch.where(body, t_body, torch.where(cap, t_cap, _MISS))

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ba = self.b - self.a
        s = ((p - self.a) @ ba / _dot(ba, ba)).clamp(0.0, 1.0)
        radial = p - self.a - s[:, None] * ba
        axis = ba / ba.norm()
        on_cap = (s <= 1e-6) | (s >= 1.0 - 1e-6)
        cap_normal = torch.where((s < 0.5)[:, None], -axis, axis)
        n = torch.where(on_cap[:, None], cap_normal, _normalize(radial))
        return n, _mix(*self.colours, _parity(s * self.bands))


class _Torus:
    """Thin ring (torus about its local Z axis), found by sphere tracing its exact distance."""

    centre = _vec(-0.35, 0.5, -0.55)
    rotation = _rotation_z(-20.0) @ _rotation_x(60.0)
    major, minor = 0.32, 0.035
    specular, shininess = 0.5, 30.0
    steps = 64

    def _distance(self, lp: torch.Tensor) -> torch.Tensor:
        ring = torch.stack([lp[:, :2].norm(dim=-1) - self.major, lp[:, 2]], dim=-1)
        return ring.norm(dim=-1) - self.minor

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        lo = (o - self.centre) @ self.rotation
        ld = d @ self.rotation
        bound = self.major + self.minor
        b = _dot(lo, ld)
        disc = b * b - (_dot(lo, lo) - bound**2)
        result = torch.full_like(b, _MISS)
        rays = torch.nonzero(disc > 0).squeeze(-1)
        t = (-b - torch.sqrt(disc.clamp_min(0.0)))[rays].clamp_min(0.0)
        t_exit = (-b + torch.sqrt(disc.clamp_min(0.0)))[rays]
        for _ in range(self.steps):
            if rays.numel() == 0:
                break
            dist = self._distance(lo[rays] + t[:, None] * ld[rays])
            hit = dist < 1e-4
            result[rays[hit]] = t[hit]
            alive = ~hit & (t + dist < t_exit)
            rays, t, t_exit = rays[alive], (t + dist)[alive], t_exit[alive]
        return torch.where(result > _EPS, result, _MISS)

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp = (p - self.centre) @ self.rotation
        radial = _normalize(torch.cat([lp[:, :2], torch.zeros_like(lp[:, :1])], dim=-1))
        n_local = _normalize(lp - self.major * radial)
        angle = torch.atan2(lp[:, 1], lp[:, 0])
        hue = torch.stack([angle, angle + 2.1, angle + 4.2], dim=-1)
        albedo = 0.55 + 0.4 * torch.cos(hue)
        return n_local @ self.rotation.T, albedo


class _Cone:
    """Small cone standing on its base, with stripes around its axis."""

    apex = _vec(0.2, -0.65, -0.3)
    height, base_radius = 0.5, 0.22
    specular, shininess = 0.3, 25.0

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        axis = _vec(0.0, 0.0, -1.0)
        cos2 = self.height**2 / (self.height**2 + self.base_radius**2)
        co = o - self.apex
        dv, cv = d @ axis, co @ axis
        qa = dv * dv - cos2
        qb = 2 * (dv * cv - cos2 * _dot(d, co))
        qc = cv * cv - cos2 * _dot(co, co)
        disc = qb * qb - 4 * qa * qc
        root = torch.sqrt(disc.clamp_min(0.0))
        best = torch.full_like(dv, _MISS)
        for t in ((-qb - root) / (2 * qa), (-qb + root) / (2 * qa)):
            along = cv + t * dv
            valid = (disc > 0) & (t > _EPS) & (along >= 0) & (along <= self.height)
            best = torch.where(valid & (t < best), t, best)
        t_base = (self.height - cv) / torch.where(dv.abs() < 1e-12, torch.full_like(dv, 1e-12), dv)
        offset = co + t_base[:, None] * d
        on_base = (offset[:, :2].norm(dim=-1) <= self.base_radius) & (t_base > _EPS)
        return torch.where(on_base & (t_base < best), t_base, best)

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = p - self.apex
        on_base = v[:, 2] < -self.height + 1e-3
        slope = self.base_radius / self.height
        radial = _normalize(torch.cat([v[:, :2], torch.zeros_like(v[:, :1])], dim=-1))
        side = _normalize(radial + slope * _vec(0.0, 0.0, 1.0))
        n = torch.where(on_base[:, None], _vec(0.0, 0.0, -1.0), side)
        stripes = _parity(torch.atan2(v[:, 1], v[:, 0]) / (2 * math.pi) * 12)
        return n, _mix((0.95, 0.45, 0.05), (0.55, 0.1, 0.5), stripes)


class _BackWall:
    """The forward-facing variant's backdrop: the plane ``y = WALL_Y`` with a two-scale checker
    on a colour gradient, so every pixel of a forward-facing view is covered and textured."""

    specular, shininess = 0.05, 10.0

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        safe = torch.where(d[:, 1].abs() < 1e-12, torch.full_like(d[:, 1], 1e-12), d[:, 1])
        t = (WALL_Y - o[:, 1]) / safe
        return torch.where((d[:, 1] > 0) & (t > _EPS), t, _MISS)

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = _vec(0.0, -1.0, 0.0).expand_as(p)
        coarse = _parity(p[:, 0] / 0.5, p[:, 2] / 0.5)
        fine = _parity(p[:, 0] / 0.125, p[:, 2] / 0.125)
        base = _mix((0.25, 0.55, 0.35), (0.85, 0.75, 0.55), (p[:, 0] / 6.0 + 0.5).clamp(0.0, 1.0))
        return n, base * (0.55 + 0.3 * coarse + 0.15 * fine)[:, None]


class _SkySphere:
    """The unbounded variant's backdrop: the inside of a sphere of radius :data:`SKY_RADIUS`
    around the origin, self-lit (no shading), coloured from a sky blue at the zenith to an
    earthy brown below the horizon, with a coarse longitude/latitude checker."""

    specular, shininess = 0.0, 1.0

    def intersect(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        b = _dot(o, d)
        disc = b * b - (_dot(o, o) - SKY_RADIUS**2)
        t = -b + torch.sqrt(disc.clamp_min(0.0))
        return torch.where((disc > 0) & (t > _EPS), t, _MISS)

    def surface(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = -p / SKY_RADIUS
        height = (p[:, 2] / SKY_RADIUS).clamp(-1.0, 1.0)
        longitude = torch.atan2(p[:, 1], p[:, 0]) / (2 * math.pi) * 12
        latitude = torch.asin(height) / math.pi * 6
        sky = _mix((0.95, 0.85, 0.6), (0.3, 0.5, 0.9), height.clamp(0.0, 1.0) ** 0.5)
        ground = _mix((0.55, 0.45, 0.3), (0.3, 0.25, 0.2), (-height).clamp(0.0, 1.0) ** 0.5)
        base = torch.where((height >= 0)[:, None], sky, ground)
        return n, base * (0.7 + 0.3 * _parity(longitude, latitude))[:, None]


_OBJECTS = (
    _Sphere(),
    _Box(),
    _Rod(
        (0.75, -0.35, -0.85), (0.75, -0.35, 0.75), 0.025, 14, ((0.9, 0.9, 0.9), (0.8, 0.05, 0.05))
    ),
    _Rod((-0.85, 0.2, -0.8), (0.1, 0.85, 0.6), 0.025, 10, ((0.1, 0.7, 0.3), (0.05, 0.05, 0.05))),
    _Torus(),
    _Cone(),
)


@_one_torch_thread()
def trace_demo_rays(
    origins: torch.Tensor, directions: torch.Tensor, *, back_wall: bool = False, sky: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shade rays against the demo scene (one bounce, no shadows).

    Args:
        origins: [R, 3] ray origins, world units, float (computed in float64).
        directions: [R, 3] unit ray directions.
        back_wall: add the textured wall of the forward-facing variant (the plane
            ``y = WALL_Y``, facing -Y) behind the objects.
        sky: add the self-lit sky sphere of the unbounded variant (radius
            :data:`SKY_RADIUS` around the origin), which every ray from inside it hits.

    Returns:
        ``(rgb, depth)`` in the inputs' dtype: [R, 3] colour in [0, 1] (0 where the ray misses)
        and [R] distance to the first hit along the ray (``inf`` on a miss).
    """
    dtype = origins.dtype
    origins, directions = origins.double(), directions.double()
    objects = _OBJECTS + ((_BackWall(),) if back_wall else ()) + ((_SkySphere(),) if sky else ())
    distances = torch.stack([obj.intersect(origins, directions) for obj in objects])
    depth, nearest = distances.min(dim=0)
    rgb = torch.zeros_like(origins)
    light = _normalize(_vec(*_LIGHT))
    for index, obj in enumerate(objects):
        rays = torch.nonzero((nearest == index) & torch.isfinite(depth)).squeeze(-1)
        if rays.numel() == 0:
            continue
        d = directions[rays]
        normal, albedo = obj.surface(origins[rays] + depth[rays, None] * d)
        if isinstance(obj, _SkySphere):
            rgb[rays] = albedo.clamp(0.0, 1.0)
            continue
        normal = torch.where((_dot(normal, d) > 0)[:, None], -normal, normal)
        lambert = _dot(normal, light).clamp_min(0.0)
        halfway = _normalize(light - d)
        highlight = _dot(normal, halfway).clamp_min(0.0) ** obj.shininess * (lambert > 0)
        colour = albedo * (_AMBIENT + _DIFFUSE * lambert)[:, None]
        rgb[rays] = (colour + obj.specular * highlight[:, None]).clamp(0.0, 1.0)
    return rgb.to(dtype), depth.to(dtype)


@_one_torch_thread()
def _stratified_pixels(width: int, height: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """[height * k, width * k, 2] float64 pixel coordinates ``(x, y)``: ``k x k`` jittered
    samples in each pixel's stratified sub-cells, row ``y * k + i`` and column ``x * k + j``
    belonging to pixel ``(x, y)`` (for supersampled, anti-aliased renders)."""
    rows, cols = torch.meshgrid(torch.arange(height * k), torch.arange(width * k), indexing="ij")
    jitter = torch.rand((height * k, width * k, 2), generator=generator, dtype=torch.float64)
    return (torch.stack([cols, rows], dim=-1) + jitter) / k


def render_demo_view(
    c2w: torch.Tensor, size: int, *, generator: torch.Generator, samples_per_side: int = 2
) -> np.ndarray:
    """Render one ``size`` x ``size`` RGBA view of the demo scene.

    Args:
        c2w: [3, 4] camera-to-world (OpenGL convention), float32.
        size: image width and height in pixels (field of view :data:`CAMERA_ANGLE_X`).
        generator: CPU generator for the sub-pixel jitter.
        samples_per_side: each pixel averages ``samples_per_side ** 2`` stratified, jittered
            samples.

    Returns:
        [size, size, 4] float32 in [0, 1], straight (not premultiplied) alpha.
    """
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    intrinsics = torch.tensor([[focal, focal, 0.5 * size, 0.5 * size]], dtype=torch.float64)
    k = samples_per_side
    pixels = _stratified_pixels(size, size, k, generator)
    origins, directions = generate_rays(
        c2w[None].double(), intrinsics, size, size, pixels=pixels[None]
    )
    rgb, depth = trace_demo_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
    coverage = torch.isfinite(depth).float()[:, None]
    samples = torch.cat([rgb, coverage], dim=-1).reshape(size, k, size, k, 4)
    premultiplied = samples.mean(dim=(1, 3))
    alpha = premultiplied[..., 3:]
    straight = torch.where(alpha > 0, premultiplied[..., :3] / alpha.clamp_min(1e-8), 0.0)
    return torch.cat([straight.clamp(0.0, 1.0), alpha], dim=-1).float().numpy()


def write_demo_scene(
    out_dir: str | os.PathLike[str],
    *,
    size: int = 128,
    n_train: int = 60,
    n_val: int = 8,
    n_test: int = 16,
    seed: int = 0,
) -> Path:
    """Render the demo scene and write it in the NeRF-Synthetic layout.

    Train and val cameras are random on the upper hemisphere (:data:`ELEVATION_RANGE_DEG`) at
    :data:`CAMERA_RADIUS` from the origin, looking at it; test cameras are an orbit at
    :data:`TEST_ELEVATION_DEG`. Writes ``transforms_{train,val,test}.json`` and
    ``{split}/r_{i}.png`` (RGBA, 8 bits) into ``out_dir``, a new or
    empty folder (see :func:`_into_new_folder`).

    Returns:
        ``out_dir`` as a :class:`Path`. Raises :class:`ConfigError` for a size or view count
        below 1.
    """
    _check_view_counts("demo scene", size=size, n_train=n_train, n_val=n_val, n_test=n_test)
    check_demo_memory("size", size, size * size)
    generator = torch.Generator().manual_seed(seed)
    poses = _orbiting_split_poses(n_train, n_val, n_test, CAMERA_RADIUS, ELEVATION_RANGE_DEG, TEST_ELEVATION_DEG,
                                  generator)
    return _into_new_folder(Path(out_dir), lambda out: _write_rendered_splits(
        out, poses, lambda pose: render_demo_view(pose, size, generator=generator), {"camera_angle_x": CAMERA_ANGLE_X}))


def _into_new_folder(out: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(folder)`` on a temporary folder beside ``out``, then rename it to ``out``:
    a failed or interrupted write leaves nothing behind, and a scene is never written over
    another. ``out`` must not exist or be an empty folder (else :class:`OutputFolderUnusable`).
    Returns ``out``."""
    if out.exists() and not out.is_dir():
        raise OutputFolderUnusable(out, "is a file")
    if out.is_dir() and any(out.iterdir()):
        raise OutputFolderUnusable(out, "already exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write(staging)
        if out.is_dir():
            out.rmdir()
        os.rename(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _orbiting_split_poses(n_train: int, n_val: int, n_test: int, radius: float,
                          elevation_range_deg: tuple[float, float], test_elevation_deg: float,
                          generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Camera-to-world poses per split for a capture around the origin: training and validation
    cameras at random on the sphere of ``radius`` within ``elevation_range_deg`` (drawn with
    ``generator``, training first), test cameras an orbit at ``test_elevation_deg``."""
    return {
        "train": sphere_poses(n_train, radius, elevation_range_deg, generator),
        "val": sphere_poses(n_val, radius, elevation_range_deg, generator),
        "test": orbit_path(n_test, radius, test_elevation_deg, start_azimuth_deg=15.0),
    }


def _check_view_counts(what: str, **counts: object) -> None:
    """Raise :class:`ConfigError` naming ``what`` unless every count (image size, views per
    split) is an int >= 1."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} {name} must be a positive integer, got {value!r}")


def _write_rendered_splits(out: Path, poses: dict[str, torch.Tensor],
                           render_view: Callable[[torch.Tensor], np.ndarray], meta: dict[str, object]) -> None:
    """Write ``{split}/r_{i}.png`` of ``render_view(pose)`` (an [H, W, C] image in [0, 1]) for each
    [3, 4] camera-to-world pose of each split, and ``transforms_{split}.json`` holding ``meta``
    and the frames."""
    for split, c2w in poses.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i, pose in enumerate(c2w):
            image = render_view(pose)
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(out / split / f"r_{i}.png")
            matrix = torch.cat([pose, torch.tensor([[0.0, 0.0, 0.0, 1.0]])]).tolist()
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": matrix})
        (out / f"transforms_{split}.json").write_text(json.dumps({**meta, "frames": frames}, indent=2))


def _demo_scene_folder(size: int, n_train: int, n_val: int, n_test: int, seed: int,
                       cache_dir: str | os.PathLike[str] | None) -> Path:
    """Where :func:`demo_scene_path` keeps the demo scene of these parameters (not rendered here)."""
    params = dict(
        version=DEMO_VERSION, size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed
    )
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(cache_dir or os.environ.get("PVD_CACHE") or Path.home() / ".cache" / "taichi-pvd")
    return base / f"demo-{size}-{digest}"


def demo_scene_path(
    size: int = 128,
    n_train: int = 60,
    n_val: int = 8,
    n_test: int = 16,
    seed: int = 0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The folder of a cached demo scene with these parameters, rendering it on first use.

    The cache lives in ``cache_dir``, else ``$PVD_CACHE``, else ``~/.cache/taichi-pvd``, as
    ``demo-<size>-<hash of the parameters and DEMO_VERSION>``. A scene is written to a temporary
    folder beside it and renamed into place, so a reader never sees a half-written scene and
    concurrent callers are safe.
    """
    target = _demo_scene_folder(size, n_train, n_val, n_test, seed, cache_dir)
    base = target.parent
    if (target / "transforms_test.json").is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
    try:
        write_demo_scene(staging, size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
        os.rename(staging, target)
    except OSError:
        if not (target / "transforms_test.json").is_file():
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def is_embedded_demo_scene(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the folder of the embedded demo scene at its default parameters (the
    scene ``pvd-ti train`` uses without ``--data``, and ``pvd-ti demo`` at its default size):
    :func:`demo_scene_path`'s own defaults."""
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(demo_scene_path).parameters.items()}
    return Path(path).resolve() == _demo_scene_folder(**defaults).resolve()


# -- the forward-facing (LLFF) variant ---------------------------------------------------------


@_one_torch_thread()
def render_forward_facing_view(
    c2w: torch.Tensor, width: int, height: int, *, generator: torch.Generator, samples_per_side: int = 2
) -> tuple[np.ndarray, float, float]:
    """Render one view of the demo objects in front of the back wall (every pixel covered).

    Args:
        c2w: [3, 4] camera-to-world (OpenGL convention).
        width, height: image size in pixels (horizontal field of view :data:`FF_ANGLE_X`).
        generator: CPU generator for the sub-pixel jitter.
        samples_per_side: each pixel averages ``samples_per_side ** 2`` jittered samples.

    Returns:
        ``(rgb, near, far)``: [height, width, 3] float32 in [0, 1], and the smallest and largest
        depth (along the camera's viewing axis, world units) of the surfaces seen.
    """
    focal = 0.5 * width / math.tan(0.5 * FF_ANGLE_X)
    intrinsics = torch.tensor([[focal, focal, 0.5 * width, 0.5 * height]], dtype=torch.float64)
    k = samples_per_side
    pixels = _stratified_pixels(width, height, k, generator)
    pose = c2w.double()
    origins, directions = generate_rays(pose[None], intrinsics, height, width, pixels=pixels[None])
    directions = directions.reshape(-1, 3)
    rgb, depth = trace_demo_rays(origins.reshape(-1, 3), directions, back_wall=True)
    axis_depth = depth * (directions @ -pose[:, 2])
    image = rgb.reshape(height, k, width, k, 3).mean(dim=(1, 3))
    return image.float().numpy(), float(axis_depth.min()), float(axis_depth.max())


def forward_facing_poses(rows: int, cols: int) -> torch.Tensor:
    """[rows * cols, 3, 4] float32 cameras of the forward-facing demo (OpenGL convention): a
    planar ``rows`` x ``cols`` grid (row-major, top row first) at ``y = -FF_CAMERA_DISTANCE``
    spanning :data:`FF_GRID_EXTENT`, world +Z up, all looking towards :data:`FF_FOCUS`."""
    xs = torch.linspace(-0.5, 0.5, cols, dtype=torch.float64) * FF_GRID_EXTENT[0]
    zs = torch.linspace(0.5, -0.5, rows, dtype=torch.float64) * FF_GRID_EXTENT[1]
    z, x = torch.meshgrid(zs, xs, indexing="ij")
    eyes = torch.stack([x, torch.full_like(x, -FF_CAMERA_DISTANCE), z], dim=-1).reshape(-1, 3)
    return look_at(eyes, FF_FOCUS, (0.0, 0.0, 1.0)).float()


def write_forward_facing_demo(
    out_dir: str | os.PathLike[str], *, width: int = 64, height: int = 48, rows: int = 3,
    cols: int = 5, seed: int = 0
) -> Path:
    """Render the demo objects as a forward-facing capture and write it in the LLFF layout.

    Cameras from :func:`forward_facing_poses` photograph the objects in front of a textured
    back wall, like a phone capture of a table top. Writes ``images/image_NNN.png`` (RGB, 8 bits)
    and ``poses_bounds.npy`` ([N, 17] float64: LLFF pose ``[down, right, back, centre, hwf]``
    and each view's near/far content depth, widened by 10%) into ``out_dir``, a new or empty
    folder (see :func:`_into_new_folder`). Load it with :func:`taichi_pvd.data.load_scene`.

    Returns:
        ``out_dir`` as a :class:`Path`. Raises :class:`ConfigError` for a size or grid count
        below 1 (or fewer than 2 views: train needs one beside the test view).
    """
    counts = {"width": width, "height": height, "rows": rows, "cols": cols}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"forward-facing demo {name} must be a positive integer, got {value!r}")
    if rows * cols < 2:
        raise ConfigError("the forward-facing demo needs at least 2 views (rows * cols >= 2)")
    check_demo_memory("width" if width >= height else "height", max(width, height), width * height)
    generator = torch.Generator().manual_seed(seed)
    c2w = forward_facing_poses(rows, cols)
    focal = 0.5 * width / math.tan(0.5 * FF_ANGLE_X)

    def write(out: Path) -> None:
        (out / "images").mkdir(parents=True, exist_ok=True)
        rows_out = []
        for i, pose in enumerate(c2w):
            rgb, near, far = render_forward_facing_view(pose, width, height, generator=generator)
            Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(out / "images" / f"image_{i:03d}.png")
            llff = opengl_to_llff(pose[None].double().numpy())[0]
            hwf = np.array([[height], [width], [focal]], dtype=np.float64)
            matrix = np.concatenate([llff, hwf], axis=1)
            rows_out.append(np.concatenate([matrix.reshape(-1), [0.9 * near, 1.1 * far]]))
        np.save(out / POSES_BOUNDS, np.stack(rows_out))

    return _into_new_folder(Path(out_dir), write)


# -- the unbounded (360-degree) variant ---------------------------------------------------------


@_one_torch_thread()
def render_unbounded_view(
    c2w: torch.Tensor, size: int, *, generator: torch.Generator, samples_per_side: int = 2
) -> np.ndarray:
    """Render one ``size`` x ``size`` view of the demo objects inside the sky sphere.

    Args:
        c2w: [3, 4] camera-to-world (OpenGL convention), world units.
        size: image width and height in pixels (horizontal field of view :data:`UB_ANGLE_X`).
        generator: CPU generator for the sub-pixel jitter.
        samples_per_side: each pixel averages ``samples_per_side ** 2`` jittered samples.

    Returns:
        [size, size, 3] float32 colour in [0, 1] (every pixel covered: no alpha).
    """
    focal = 0.5 * size / math.tan(0.5 * UB_ANGLE_X)
    intrinsics = torch.tensor([[focal, focal, 0.5 * size, 0.5 * size]], dtype=torch.float64)
    k = samples_per_side
    pixels = _stratified_pixels(size, size, k, generator)
    origins, directions = generate_rays(c2w[None].double(), intrinsics, size, size, pixels=pixels[None])
    rgb, _ = trace_demo_rays(origins.reshape(-1, 3), directions.reshape(-1, 3), sky=True)
    return rgb.reshape(size, k, size, k, 3).mean(dim=(1, 3)).float().numpy()


def write_unbounded_demo(
    out_dir: str | os.PathLike[str], *, size: int = 64, n_train: int = 60, n_val: int = 8,
    n_test: int = 16, seed: int = 0
) -> Path:
    """Render the demo objects as an unbounded 360-degree capture in the ``transforms.json``
    layout.

    Train and val cameras are random on the ring of elevations :data:`UB_ELEVATION_RANGE_DEG` at
    :data:`UB_CAMERA_RADIUS` from the origin, test cameras an orbit at
    :data:`UB_TEST_ELEVATION_DEG`, all looking at the objects, which stand in front of the far sky
    sphere. Writes ``transforms_{train,val,test}.json`` (marked ``"unbounded": true`` and
    ``"aabb_scale": 16``) and ``{split}/r_{i}.png`` (RGB, 8 bits) into ``out_dir``, a new or empty
    folder (see :func:`_into_new_folder`). :func:`taichi_pvd.data.load_scene` loads it normalised and contracted.

    Returns:
        ``out_dir`` as a :class:`Path`. Raises :class:`ConfigError` for a size or view count
        below 1 (or fewer than 2 training views: the normalisation needs two camera positions).
    """
    _check_view_counts("unbounded demo", size=size, n_train=n_train, n_val=n_val, n_test=n_test)
    if n_train < 2:
        raise ConfigError("the unbounded demo needs at least 2 training views (n_train >= 2)")
    check_demo_memory("size", size, size * size)
    generator = torch.Generator().manual_seed(seed)
    poses = _orbiting_split_poses(n_train, n_val, n_test, UB_CAMERA_RADIUS, UB_ELEVATION_RANGE_DEG,
                                  UB_TEST_ELEVATION_DEG, generator)
    return _into_new_folder(Path(out_dir), lambda out: _write_rendered_splits(
        out, poses, lambda pose: render_unbounded_view(pose, size, generator=generator),
        {"camera_angle_x": UB_ANGLE_X, "unbounded": True, "aabb_scale": 16}))
