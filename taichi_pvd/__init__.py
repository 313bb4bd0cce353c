"""taichi-pvd: neural radiance fields of four architectures and Progressive Volume Distillation.

Layers, data flowing one way: ``data`` (scenes, cameras, rays) -> ``kernels`` (Taichi encodings,
interpolation, marching, compositing) -> ``fields`` (four architectures behind one interface)
-> ``rendering`` -> ``training`` / ``distill`` -> ``io`` (checkpoints) and ``metrics``.
"""

__version__ = "0.1.0"
