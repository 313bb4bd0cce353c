"""Taichi functions shared by the interpolation kernels: where a point falls in a grid cell and
the trilinear weight of each of the cell's corners."""

import taichi as ti


@ti.func
def axis_cell(coordinate, resolution):
    """Lower vertex index and upper-vertex weight of a coordinate in [0, 1] along one axis of
    ``resolution`` vertices (vertices at ``i / (resolution - 1)``, align_corners)."""
    p = ti.math.clamp(coordinate, 0.0, 1.0) * ti.cast(resolution - 1, ti.f32)
    i = ti.min(ti.cast(ti.floor(p), ti.i32), resolution - 2)
    return i, p - ti.cast(i, ti.f32)


@ti.func
def corner_weight(frac, bits: ti.template()):
    """Trilinear weight of corner ``bits`` (bit ``a`` set: the upper vertex along axis ``a``) of
    a cell at fractional position ``frac`` [3]."""
    w = 1.0
    for a in ti.static(range(3)):
        if ti.static((bits >> a) & 1):
            w *= frac[a]
        else:
            w *= 1.0 - frac[a]
    return w
