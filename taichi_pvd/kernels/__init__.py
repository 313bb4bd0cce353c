"""Taichi kernels, each beside its pure-torch reference.

Every kernel module exposes a public function (checks and shapes its inputs, calls a private
``torch.autograd.Function`` whose forward and backward are Taichi kernels taking torch tensors
directly) and a ``*_reference`` function in plain torch that computes the same thing in any
dtype; the tests compare the two, values and gradients, in float64.

The packed sample layout shared by marching and compositing: samples of all rays lie
contiguously, ray ``i`` owning samples ``ray_starts[i] : ray_starts[i] + ray_counts[i]``;
``ray_indices[s]`` names the ray of sample ``s``. A ray with zero samples is allowed everywhere.
"""
