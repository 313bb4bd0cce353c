"""TensoRF vector-matrix (VM) factors: Taichi forward/backward kernels and a torch reference.

Three modes pair a plane with a line along the remaining axis:

    mode 0: plane over axes (0, 1), line along axis 2
    mode 1: plane over axes (0, 2), line along axis 1
    mode 2: plane over axes (1, 2), line along axis 0

``planes[m, i, j, c]`` holds channel ``c`` of mode ``m`` at vertex ``i`` of the mode's first
plane axis and ``j`` of its second; ``lines[m, k, c]`` at vertex ``k`` of its line axis (both
channels-last). A point ``x`` in ``[0, 1]^3`` (clamped) sits at vertex coordinate ``x * (R - 1)``
on every axis (``align_corners=True``; lower vertex ``min(floor, R - 2)``), planes are sampled
bilinearly, lines linearly, and

    out[n, m * C + c] = plane_m(x_u, x_v)[c] * line_m(x_w)[c].

Density is the sum of the output over its columns; appearance goes through a basis matrix (both
done by the caller in torch). Kernels compute in float32 and take float32 only; ``x`` receives
no gradient.
"""

import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.kernels.fast_launch import fast_launch
from taichi_pvd.kernels.cell_math import axis_cell
from taichi_pvd.kernels.index_limits import row_blocks

#: (first plane axis, second plane axis, line axis) of each mode.
VM_MODE_AXES = ((0, 1, 2), (0, 2, 1), (1, 2, 0))
_BLOCK_DIM = 128


@ti.func
def _mode_cells(x: ti.template(), n, m, resolution):
    """Lower vertices (u, v, w) and upper weights of point ``n`` in mode ``m``'s plane and line."""
    iu, fu = axis_cell(x[n, ti.select(m < 2, 0, 1)], resolution)
    iv, fv = axis_cell(x[n, ti.select(m == 0, 1, 2)], resolution)
    iw, fw = axis_cell(x[n, 2 - m], resolution)
    return ti.Vector([iu, iv, iw]), ti.Vector([fu, fv, fw])


@ti.func
def _plane_value(planes: ti.template(), m, c, cell, frac):
    return (
        (1.0 - frac[0]) * (1.0 - frac[1]) * planes[m, cell[0], cell[1], c]
        + frac[0] * (1.0 - frac[1]) * planes[m, cell[0] + 1, cell[1], c]
        + (1.0 - frac[0]) * frac[1] * planes[m, cell[0], cell[1] + 1, c]
        + frac[0] * frac[1] * planes[m, cell[0] + 1, cell[1] + 1, c]
    )


@ti.func
def _line_value(lines: ti.template(), m, c, cell, frac):
    return (1.0 - frac[2]) * lines[m, cell[2], c] + frac[2] * lines[m, cell[2] + 1, c]


@fast_launch
@ti.kernel
def _vm_forward(
    x: ti.types.ndarray(dtype=ti.f32, ndim=2),
    planes: ti.types.ndarray(dtype=ti.f32, ndim=4),
    lines: ti.types.ndarray(dtype=ti.f32, ndim=3),
    out: ti.types.ndarray(dtype=ti.f32, ndim=2),
):
    # Shapes are read inside the loop: Taichi's autodiff takes kernels made of loops only.
    ti.loop_config(block_dim=_BLOCK_DIM)
    for n, m, c in ti.ndrange(x.shape[0], 3, lines.shape[2]):
        n_channels = lines.shape[2]
        cell, frac = _mode_cells(x, n, m, lines.shape[1])
        plane = _plane_value(planes, m, c, cell, frac)
        out[n, m * n_channels + c] = plane * _line_value(lines, m, c, cell, frac)


@fast_launch
@ti.kernel
def _vm_backward(
    x: ti.types.ndarray(dtype=ti.f32, ndim=2),
    planes: ti.types.ndarray(dtype=ti.f32, ndim=4),
    lines: ti.types.ndarray(dtype=ti.f32, ndim=3),
    grad_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad_planes: ti.types.ndarray(dtype=ti.f32, ndim=4),
    grad_lines: ti.types.ndarray(dtype=ti.f32, ndim=3),
):
    resolution, n_channels = lines.shape[1], lines.shape[2]
    ti.loop_config(block_dim=_BLOCK_DIM)
    for n, m, c in ti.ndrange(x.shape[0], 3, n_channels):
        cell, frac = _mode_cells(x, n, m, resolution)
        g = grad_out[n, m * n_channels + c]
        g_plane = g * _line_value(lines, m, c, cell, frac)
        g_line = g * _plane_value(planes, m, c, cell, frac)
        u, v, w = cell[0], cell[1], cell[2]
        ti.atomic_add(grad_planes[m, u, v, c], (1.0 - frac[0]) * (1.0 - frac[1]) * g_plane)
        ti.atomic_add(grad_planes[m, u + 1, v, c], frac[0] * (1.0 - frac[1]) * g_plane)
        ti.atomic_add(grad_planes[m, u, v + 1, c], (1.0 - frac[0]) * frac[1] * g_plane)
        ti.atomic_add(grad_planes[m, u + 1, v + 1, c], frac[0] * frac[1] * g_plane)
        ti.atomic_add(grad_lines[m, w, c], (1.0 - frac[2]) * g_line)
        ti.atomic_add(grad_lines[m, w + 1, c], frac[2] * g_line)


class _VmInterpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, planes, lines):
        out = torch.empty((x.shape[0], 3 * lines.shape[2]), dtype=torch.float32, device=x.device)
        if out.numel() > 0:
            for rows in row_blocks(x.shape[0], out.shape[1]):
                _vm_forward(x[rows], planes.detach(), lines.detach(), out[rows])
        ctx.save_for_backward(x, planes, lines)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            return None, None, None
        x, planes, lines = ctx.saved_tensors
        grad_planes = torch.zeros_like(planes)
        grad_lines = torch.zeros_like(lines)
        if grad_out.numel() > 0:
            grad_out = grad_out.contiguous()
            for rows in row_blocks(x.shape[0], grad_out.shape[1]):
                _vm_backward(
                    x[rows], planes.detach(), lines.detach(), grad_out[rows], grad_planes, grad_lines
                )
        return None, grad_planes, grad_lines


def vm_interpolate(x: torch.Tensor, planes: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    """Per-mode plane x line products of a TensoRF VM decomposition at points ``x``.

    Args:
        x: ``[N, 3]`` float32 positions normalised to ``[0, 1]^3`` (values outside are clamped);
            ``x`` receives no gradient.
        planes: ``[3, R, R, C]`` float32, contiguous, ``R >= 2``; mode ``m``'s plane over the axes
            ``VM_MODE_AXES[m][:2]``; differentiable.
        lines: ``[3, R, C]`` float32, contiguous; mode ``m``'s line along ``VM_MODE_AXES[m][2]``;
            differentiable.

    Returns:
        ``[N, 3 * C]`` float32: column ``m * C + c`` is ``plane_m[c] * line_m[c]``.

    Raises:
        TypeError: a tensor that is not float32.
        ValueError: wrong or mismatched shapes, non-contiguous factors, or tensors off the
            backend's device.

    Example:
        >>> planes, lines = torch.ones(3, 4, 4, 2), torch.full((3, 4, 2), 0.5)
        >>> vm_interpolate(torch.rand(5, 3), planes, lines).sum(dim=1)
        tensor([3., 3., 3., 3., 3.])
    """
    arch = backend.init()
    for name, t in (("x", x), ("planes", planes), ("lines", lines)):
        if t.dtype != torch.float32:
            raise TypeError(f"vm_interpolate takes float32 tensors, got {name} of {t.dtype}")
        if t.device != x.device or t.device.type != arch:
            raise ValueError(
                f"vm_interpolate: {name} is on {t.device}; x, planes and lines must all be on the "
                f"backend's device ({arch})"
            )
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"vm_interpolate: x must have shape [N, 3], got {list(x.shape)}")
    if lines.dim() != 3 or lines.shape[0] != 3 or lines.shape[1] < 2 or lines.shape[2] < 1:
        raise ValueError(
            f"vm_interpolate: lines must have shape [3, R, C] with R >= 2, got {list(lines.shape)}"
        )
    resolution, n_channels = lines.shape[1], lines.shape[2]
    if list(planes.shape) != [3, resolution, resolution, n_channels]:
        raise ValueError(
            f"vm_interpolate: planes must have shape [3, R, R, C] = "
            f"{[3, resolution, resolution, n_channels]} to match lines, got {list(planes.shape)}"
        )
    if not (planes.is_contiguous() and lines.is_contiguous()):
        raise ValueError("vm_interpolate: planes and lines must be contiguous (channels-last)")
    return _VmInterpolate.apply(x.detach().contiguous(), planes, lines)


def vm_interpolate_reference(
    x: torch.Tensor, planes: torch.Tensor, lines: torch.Tensor
) -> torch.Tensor:
    """Pure-torch :func:`vm_interpolate` by explicit gathers, in the dtype of the inputs (use
    float64 to check the kernel); differentiable w.r.t. ``planes`` and ``lines``."""
    resolution = lines.shape[1]
    p = x.clamp(0.0, 1.0) * (resolution - 1)
    lower = torch.floor(p).long().clamp(max=resolution - 2)
    frac = p - lower
    columns = []
    for m, (a_u, a_v, a_w) in enumerate(VM_MODE_AXES):
        u, v, w = lower[:, a_u], lower[:, a_v], lower[:, a_w]
        fu, fv, fw = frac[:, a_u, None], frac[:, a_v, None], frac[:, a_w, None]
        plane = (
            (1 - fu) * (1 - fv) * planes[m, u, v]
            + fu * (1 - fv) * planes[m, u + 1, v]
            + (1 - fu) * fv * planes[m, u, v + 1]
            + fu * fv * planes[m, u + 1, v + 1]
        )
        line = (1 - fw) * lines[m, w] + fw * lines[m, w + 1]
        columns.append(plane * line)
    return torch.cat(columns, dim=1)
