"""Each kernel with a hand-written backward, beside Taichi's own autodiff of its forward kernel.

A :class:`GradientCase` holds random inputs of one kernel (on the backend's device) and two
callables that return the same gradients, each into buffers of its own allocated once and
zeroed at each call: ``handwritten()`` runs the module's backward kernel,
``autodiff()`` runs ``forward_kernel.grad(...)`` (Taichi's reverse mode, reading the upstream
gradient from the output tensors' ``.grad`` and accumulating into the inputs' ``.grad``).
``tests/test_taichi_autodiff.py`` compares the two; ``benchmarks/autodiff_vs_handwritten.py``
times them.

Hash encoding, grid interpolation, VM interpolation and SH encoding are differentiated as the
library writes them. The compositing forward kernels march each ray in a ``while`` loop that
stops at early termination, with the transmittance a local updated at every sample; Taichi's
reverse mode rejects ``while`` loops and, in Taichi 1.7.4, returns wrong gradients for a local
mutated in a loop of data-dependent length. The compositing cases therefore differentiate a
restatement made of loops Taichi handles (:func:`_optical_depth_in_front`,
:func:`_composite_samples`, :func:`_sample_weights`): the optical depth in front of each sample
summed into a global buffer, then ``w = exp(-depth in front) * (1 - exp(-sigma dt))`` per
sample, for the samples the library's forward kernel composited (its ``n_used``). Its forward
values equal the library's to float32 rounding (the test checks that too).
"""

from dataclasses import dataclass
from typing import Callable

import taichi as ti
import torch

from taichi_pvd.kernels import compositing, grid_interpolation, hash_encoding, sh_encoding, vm_interpolation

Gradients = dict[str, torch.Tensor]

_F32_1D = ti.types.ndarray(dtype=ti.f32, ndim=1)
_F32_2D = ti.types.ndarray(dtype=ti.f32, ndim=2)
_I32_1D = ti.types.ndarray(dtype=ti.i32, ndim=1)


@dataclass
class GradientCase:
    """Random inputs of one kernel and two ways to get their gradients (see the module notes)."""

    name: str
    handwritten: Callable[[], Gradients]
    autodiff: Callable[[], Gradients]
    #: Forward outputs of the kernel Taichi differentiates next to the library's, where the two
    #: kernels differ (the compositing restatement): ``(restated, library)``.
    forward_pair: tuple[torch.Tensor, torch.Tensor] | None = None


def _differentiable(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().contiguous().requires_grad_()


def _zero(*tensors: torch.Tensor) -> None:
    for t in tensors:
        t.zero_()


def _zero_grads(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.grad is None:
            t.grad = torch.zeros_like(t)
        else:
            t.grad.zero_()


def hash_case(n_points: int, device: torch.device, generator: torch.Generator, **layout_args) -> GradientCase:
    """Hash encoding of ``n_points`` random points (layout from ``layout_args``), table gradient."""
    layout = hash_encoding.hash_grid_layout(**layout_args)
    x = torch.rand(n_points, 3, generator=generator).to(device)
    table = _differentiable((torch.rand(layout.total_entries, layout.features_per_level, generator=generator)
                             - 0.5).to(device))
    scales, meta = hash_encoding._level_tensors(layout, device)
    upstream = torch.randn(n_points, layout.output_dim, generator=generator).to(device)
    out = torch.zeros(n_points, layout.output_dim, device=device, requires_grad=True)
    forward = hash_encoding._hash_encode_forward._kernel
    forward(x, table, scales, meta, out, layout.features_per_level, hash_encoding.POINTS_A_THREAD["forward"])
    out.grad = upstream

    grad = torch.zeros_like(table)

    def handwritten() -> Gradients:
        grad.zero_()
        hash_encoding._hash_encode_backward(x, upstream, scales, meta, grad, layout.features_per_level,
                                            hash_encoding.POINTS_A_THREAD["backward"])
        return {"table": grad}

    def autodiff() -> Gradients:
        _zero_grads(table)
        forward.grad(x, table, scales, meta, out, layout.features_per_level, hash_encoding.POINTS_A_THREAD["forward"])
        return {"table": table.grad}

    return GradientCase("hash_encoding", handwritten, autodiff)


def grid_case(n_points: int, shape: tuple[int, int, int, int], device: torch.device,
              generator: torch.Generator) -> GradientCase:
    """Trilinear interpolation of a random ``shape`` grid at ``n_points`` points, grid gradient."""
    x = torch.rand(n_points, 3, generator=generator).to(device)
    grid = _differentiable(torch.randn(shape, generator=generator).to(device))
    upstream = torch.randn(n_points, shape[3], generator=generator).to(device)
    out = torch.zeros(n_points, shape[3], device=device, requires_grad=True)
    forward = grid_interpolation._grid_forward._kernel
    forward(x, grid, out)
    out.grad = upstream

    grad = torch.zeros_like(grid)

    def handwritten() -> Gradients:
        grad.zero_()
        grid_interpolation._grid_backward(x, upstream, grad)
        return {"grid": grad}

    def autodiff() -> Gradients:
        _zero_grads(grid)
        forward.grad(x, grid, out)
        return {"grid": grid.grad}

    return GradientCase("grid_interpolation", handwritten, autodiff)


def vm_case(n_points: int, resolution: int, channels: int, device: torch.device,
            generator: torch.Generator) -> GradientCase:
    """VM plane x line products at ``n_points`` points, plane and line gradients."""
    x = torch.rand(n_points, 3, generator=generator).to(device)
    planes = _differentiable(torch.randn(3, resolution, resolution, channels, generator=generator).to(device))
    lines = _differentiable(torch.randn(3, resolution, channels, generator=generator).to(device))
    upstream = torch.randn(n_points, 3 * channels, generator=generator).to(device)
    out = torch.zeros(n_points, 3 * channels, device=device, requires_grad=True)
    forward = vm_interpolation._vm_forward._kernel
    forward(x, planes, lines, out)
    out.grad = upstream

    grad_planes, grad_lines = torch.zeros_like(planes), torch.zeros_like(lines)

    def handwritten() -> Gradients:
        _zero(grad_planes, grad_lines)
        vm_interpolation._vm_backward(x, planes.detach(), lines.detach(), upstream, grad_planes, grad_lines)
        return {"planes": grad_planes, "lines": grad_lines}

    def autodiff() -> Gradients:
        _zero_grads(planes, lines)
        forward.grad(x, planes, lines, out)
        return {"planes": planes.grad, "lines": lines.grad}

    return GradientCase("vm_interpolation", handwritten, autodiff)


def sh_case(n_points: int, n_bands: int, device: torch.device, generator: torch.Generator) -> GradientCase:
    """SH encoding of ``n_bands`` bands at random unit directions, direction gradient."""
    d = _differentiable(torch.nn.functional.normalize(torch.randn(n_points, 3, generator=generator), dim=1).to(device))
    upstream = torch.randn(n_points, n_bands * n_bands, generator=generator).to(device)
    out = torch.zeros(n_points, n_bands * n_bands, device=device, requires_grad=True)
    forward = sh_encoding._sh_forward._kernel
    forward(d, out, n_bands)
    out.grad = upstream

    grad = torch.empty_like(d)  # every element written

    def handwritten() -> Gradients:
        sh_encoding._sh_backward(d.detach(), upstream, grad, n_bands)
        return {"d": grad}

    def autodiff() -> Gradients:
        _zero_grads(d)
        forward.grad(d, out, n_bands)
        return {"d": d.grad}

    return GradientCase(f"sh_encoding_{n_bands}_bands", handwritten, autodiff)


# -- compositing: a restatement Taichi can differentiate (see the module notes) ------------------


@ti.kernel
def _optical_depth_in_front(sigmas: _F32_1D, dt: _F32_1D, ray_of: _I32_1D, ray_starts: _I32_1D,
                            optical: _F32_1D):
    for s in range(sigmas.shape[0]):
        for j in range(ray_starts[ray_of[s]], s):
            optical[s] += sigmas[j] * dt[j]


@ti.kernel
def _composite_samples(sigmas: _F32_1D, rgbs: _F32_2D, dt: _F32_1D, t: _F32_1D, ray_of: _I32_1D,
                       ray_starts: _I32_1D, n_used: _I32_1D, optical: _F32_1D, rgb_out: _F32_2D,
                       depth_out: _F32_1D, opacity_out: _F32_1D):
    for s in range(sigmas.shape[0]):
        i = ray_of[s]
        if s - ray_starts[i] < n_used[i]:
            w = ti.exp(-optical[s]) * (1.0 - ti.exp(-sigmas[s] * dt[s]))
            for a in ti.static(range(3)):
                rgb_out[i, a] += w * rgbs[s, a]
            depth_out[i] += w * t[s]
            opacity_out[i] += w


@ti.kernel
def _sample_weights(sigmas: _F32_1D, dt: _F32_1D, ray_of: _I32_1D, ray_starts: _I32_1D, n_used: _I32_1D,
                    optical: _F32_1D, weights: _F32_1D):
    for s in range(sigmas.shape[0]):
        i = ray_of[s]
        if s - ray_starts[i] < n_used[i]:
            weights[s] = ti.exp(-optical[s]) * (1.0 - ti.exp(-sigmas[s] * dt[s]))


@dataclass
class PackedBatch:
    """Random packed samples, some rays empty; on every fourth ray the sample two thirds of the
    way along is opaque, so early termination cuts the samples behind it."""

    sigmas: torch.Tensor
    rgbs: torch.Tensor
    dt: torch.Tensor
    t: torch.Tensor
    ray_starts: torch.Tensor
    ray_counts: torch.Tensor
    ray_of: torch.Tensor


def packed_batch(n_rays: int, max_samples: int, device: torch.device, generator: torch.Generator) -> PackedBatch:
    """:class:`PackedBatch` of ``n_rays`` rays of 0 to ``max_samples`` samples."""
    counts = torch.randint(0, max_samples + 1, (n_rays,), generator=generator, dtype=torch.int32)
    counts[::5] = 0
    starts = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    n_samples = int(counts.sum())
    dt = 0.01 + 0.04 * torch.rand(n_samples, generator=generator)
    sigmas = 10.0 * torch.rand(n_samples, generator=generator)
    opaque = starts[::4] + (2 * counts[::4]) // 3
    sigmas[opaque[counts[::4] > 0].long()] = 1e4
    t = 2.0 + torch.cumsum(dt, 0)
    rgbs = torch.rand(n_samples, 3, generator=generator)
    ray_of = torch.repeat_interleave(torch.arange(n_rays, dtype=torch.int32), counts.long())
    return PackedBatch(*(v.to(device).contiguous() for v in (sigmas, rgbs, dt, t, starts, counts, ray_of)))


def composite_case(n_rays: int, max_samples: int, device: torch.device, generator: torch.Generator,
                   threshold: float = 1e-4) -> GradientCase:
    """Compositing (colour, depth, opacity) of a :func:`packed_batch`, sigma and colour gradients."""
    b = packed_batch(n_rays, max_samples, device, generator)
    rgb = torch.zeros(n_rays, 3, device=device)
    depth, opacity = torch.zeros(n_rays, device=device), torch.zeros(n_rays, device=device)
    n_used = torch.zeros(n_rays, dtype=torch.int32, device=device)
    compositing._composite_forward(b.sigmas, b.rgbs, b.dt, b.t, b.ray_starts, b.ray_counts, threshold,
                                   rgb, depth, opacity, n_used)
    upstream = [torch.randn(v.shape, generator=generator).to(device) for v in (rgb, depth, opacity)]
    sigmas, rgbs, optical = _differentiable(b.sigmas), _differentiable(b.rgbs), _differentiable(torch.zeros_like(b.sigmas))
    outputs = [torch.zeros_like(v).requires_grad_() for v in (rgb, depth, opacity)]
    _optical_depth_in_front(sigmas, b.dt, b.ray_of, b.ray_starts, optical)
    _composite_samples(sigmas, rgbs, b.dt, b.t, b.ray_of, b.ray_starts, n_used, optical, *outputs)
    for out, g in zip(outputs, upstream):
        out.grad = g

    grad_sigmas, grad_rgbs = torch.zeros_like(b.sigmas), torch.zeros_like(b.rgbs)

    def handwritten() -> Gradients:
        _zero(grad_sigmas, grad_rgbs)
        compositing._composite_backward(b.sigmas, b.rgbs, b.dt, b.t, b.ray_starts, n_used, rgb, depth, opacity,
                                        *upstream, grad_sigmas, grad_rgbs)
        return {"sigmas": grad_sigmas, "rgbs": grad_rgbs}

    def autodiff() -> Gradients:
        _zero_grads(sigmas, rgbs, optical)
        _composite_samples.grad(sigmas, rgbs, b.dt, b.t, b.ray_of, b.ray_starts, n_used, optical, *outputs)
        _optical_depth_in_front.grad(sigmas, b.dt, b.ray_of, b.ray_starts, optical)
        return {"sigmas": sigmas.grad, "rgbs": rgbs.grad}

    restated = torch.cat([outputs[0].detach(), outputs[1].detach()[:, None], outputs[2].detach()[:, None]], dim=1)
    library = torch.cat([rgb, depth[:, None], opacity[:, None]], dim=1)
    return GradientCase("compositing", handwritten, autodiff, forward_pair=(restated, library))


def weights_case(n_rays: int, max_samples: int, device: torch.device, generator: torch.Generator,
                 threshold: float = 1e-4) -> GradientCase:
    """Compositing weights of a :func:`packed_batch`, sigma gradient."""
    b = packed_batch(n_rays, max_samples, device, generator)
    weights = torch.zeros_like(b.sigmas)
    n_used = torch.zeros(n_rays, dtype=torch.int32, device=device)
    compositing._weights_forward(b.sigmas, b.dt, b.ray_starts, b.ray_counts, threshold, weights, n_used)
    upstream = torch.randn(b.sigmas.shape, generator=generator).to(device)
    sigmas, optical = _differentiable(b.sigmas), _differentiable(torch.zeros_like(b.sigmas))
    restated = torch.zeros_like(weights, requires_grad=True)
    _optical_depth_in_front(sigmas, b.dt, b.ray_of, b.ray_starts, optical)
    _sample_weights(sigmas, b.dt, b.ray_of, b.ray_starts, n_used, optical, restated)
    restated.grad = upstream

    grad_sigmas = torch.zeros_like(b.sigmas)

    def handwritten() -> Gradients:
        grad_sigmas.zero_()
        compositing._weights_backward(b.sigmas, b.dt, b.ray_starts, n_used, weights, upstream, grad_sigmas)
        return {"sigmas": grad_sigmas}

    def autodiff() -> Gradients:
        _zero_grads(sigmas, optical)
        _sample_weights.grad(sigmas, b.dt, b.ray_of, b.ray_starts, n_used, optical, restated)
        _optical_depth_in_front.grad(sigmas, b.dt, b.ray_of, b.ray_starts, optical)
        return {"sigmas": sigmas.grad}

    return GradientCase("render_weights", handwritten, autodiff, forward_pair=(restated.detach(), weights))
