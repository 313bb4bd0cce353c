"""taichi-pvd: neural radiance fields of four architectures and Progressive Volume Distillation.

Layers, data flowing one way (``tests/test_layering.py`` holds the code to it): ``data``
(scenes, cameras, rays) -> ``kernels`` (Taichi encodings, interpolation, marching, compositing)
-> ``fields`` (four architectures behind one interface) -> ``rendering`` (volume rendering, the
occupancy grid, view sets) -> ``io`` (checkpoints, run folders) -> ``presets`` -> ``training``
-> ``distill`` -> whole jobs (``evaluation``, ``demo_job``). Importing this package loads
neither Taichi nor torch.
"""

__version__ = "0.1.0"
