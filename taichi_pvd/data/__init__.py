"""Data layer: scenes (posed images), camera rays, camera paths, the contracted space of unbounded
scenes and the embedded demo scenes.

Conventions shared by every module here: camera-to-world matrices in the OpenGL/Blender
convention (camera looks down -Z, +Y up), [N, 3, 4]; intrinsics ``(fx, fy, cx, cy)`` in pixels;
pixel centres at ``(column + 0.5, row + 0.5)``; float32 torch tensors.
"""

from taichi_pvd.data.camera_paths import look_at, orbit_path, sphere_poses, spiral_path
from taichi_pvd.data.contracted_space import ContractedSpace
from taichi_pvd.data.demo import (
    demo_scene_path,
    write_demo_scene,
    write_forward_facing_demo,
    write_unbounded_demo,
)
from taichi_pvd.data.llff import load_llff
from taichi_pvd.data.ndc import NdcSpace, ndc_points, ndc_rays
from taichi_pvd.data.rays import RayBatch, RaySampler, generate_rays, image_rays, subpixel_offsets
from taichi_pvd.data.formats import load_scene
from taichi_pvd.data.scene import Scene

__all__ = [
    "ContractedSpace",
    "NdcSpace",
    "RayBatch",
    "RaySampler",
    "Scene",
    "demo_scene_path",
    "generate_rays",
    "image_rays",
    "load_llff",
    "load_scene",
    "look_at",
    "ndc_points",
    "ndc_rays",
    "orbit_path",
    "sphere_poses",
    "spiral_path",
    "subpixel_offsets",
    "write_demo_scene",
    "write_forward_facing_demo",
    "write_unbounded_demo",
]
