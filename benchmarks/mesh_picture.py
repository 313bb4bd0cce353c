"""A picture of an exported mesh, for the README: its faces in their vertex colours, lit from the
camera's side, drawn with matplotlib (no OpenGL needed).

Usage: ``python benchmarks/mesh_picture.py MESH.ply OUT.png [--elevation 25] [--azimuth -60]
[--up z] [--size 900]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from PIL import Image, ImageChops  # noqa: E402

AXES = {"x": 0, "y": 1, "z": 2}


def face_colours(mesh: trimesh.Trimesh, view: np.ndarray) -> np.ndarray:
    """[F, 4] RGBA in [0, 1]: each face's mean vertex colour, shaded by how squarely it faces
    ``view`` (unit vector from the mesh towards the camera)."""
    rgb = mesh.visual.vertex_colors[:, :3].astype(np.float32) / 255.0
    base = rgb[mesh.faces].mean(axis=1)
    shade = 0.35 + 0.65 * np.abs(mesh.face_normals @ view)
    return np.concatenate([base * shade[:, None], np.ones((len(base), 1))], axis=1).clip(0.0, 1.0)


def draw(mesh: trimesh.Trimesh, out: Path, elevation: float, azimuth: float, size: int) -> Path:
    """Draw ``mesh`` (z up) seen from ``elevation`` / ``azimuth`` degrees into a ``size``-pixel
    square PNG at ``out``."""
    el, az = np.radians(elevation), np.radians(azimuth)
    view = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    depth = mesh.triangles_center @ view
    order = np.argsort(depth)
    fig = plt.figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_subplot(projection="3d", computed_zorder=False)
    ax.add_collection3d(Poly3DCollection(mesh.triangles[order], facecolors=face_colours(mesh, view)[order],
                                         linewidths=0))
    lo, hi = mesh.bounds
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=elevation, azim=azimuth)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, transparent=False, facecolor="white")
    plt.close(fig)
    crop_to_content(out)
    return out


def crop_to_content(path: Path, margin: int = 8) -> None:
    """Cut the white around the drawing in the PNG at ``path``, keeping ``margin`` pixels."""
    image = Image.open(path).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box:
        left, top, right, bottom = box
        image.crop((max(0, left - margin), max(0, top - margin), min(image.width, right + margin),
                    min(image.height, bottom + margin))).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mesh", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--elevation", type=float, default=25.0)
    parser.add_argument("--azimuth", type=float, default=-60.0)
    parser.add_argument("--up", choices=sorted(AXES), default="z", help="the mesh's up axis")
    parser.add_argument("--size", type=int, default=900, help="width and height in pixels")
    args = parser.parse_args()
    mesh = trimesh.load(args.mesh, process=False)
    if args.up != "z":
        order = [i for i in range(3) if i != AXES[args.up]] + [AXES[args.up]]
        mesh.vertices = mesh.vertices[:, order]
    print(draw(mesh, args.out, args.elevation, args.azimuth, args.size))


if __name__ == "__main__":
    main()
