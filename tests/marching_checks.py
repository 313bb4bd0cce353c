"""Marched samples against the float64 reference, up to the rounding of float32 marching.

Float32 marching (:func:`~taichi_pvd.kernels.marching.march_rays` on CUDA, or with
``precision="float32"``) visits the same lattice as the float64 reference, each point rounded
to float32, so (see the module notes of :mod:`taichi_pvd.kernels.marching`):

* samples pair up one to one, ray by ray, with ``|t - t_ref|`` and ``|p - p_ref|`` within
  :func:`tolerance` (a few float32 units in the last place of the ray's scale; with cone
  stepping, whose ``t`` is a running sum, a multiple of that growing with the step count);
* except for lattice points that the rounding moves across a cell face (into or out of an
  occupied cell) or across the ray's end (``far``, or a box face): such a sample may be in one
  set and not in the other, and must lie within the tolerance of that face or end.
"""

import torch

from taichi_pvd.kernels.marching import PackedSamples

#: float32 unit in the last place of 1, 2^-23.
FLOAT32_EPS = 2.0**-23
#: Tolerance, in units of ``FLOAT32_EPS * scale``, of a sample at a constant step.
LATTICE_ULPS = 8.0
#: Tolerance growth per step with cone stepping (a running sum rounds once a step).
CONE_ULPS_PER_STEP = 1.0


def tolerance(scale: float, step_size: float, cone_angle: float) -> float:
    """World-unit tolerance of a sample at scale ``scale`` (its distance along the ray plus the
    origin's magnitude, plus 1) with steps of at least ``step_size``: with cone stepping, at
    most ``scale / step_size`` steps have rounded into its ``t``."""
    ulps = LATTICE_ULPS + (CONE_ULPS_PER_STEP * scale / step_size if cone_angle > 0.0 else 0.0)
    return ulps * FLOAT32_EPS * scale


def _near_face(p: list[float], lo: list[float], cell: list[float], tol: float) -> bool:
    for a in range(3):
        f = (p[a] - lo[a]) / cell[a]
        if abs(f - round(f)) * cell[a] <= tol:
            return True
    return False


def assert_same_samples_within_tolerance(actual: PackedSamples, expected: PackedSamples, grid, *,
                                         origins: torch.Tensor, far: torch.Tensor | float, step_size: float,
                                         cone_angle: float = 0.0,
                                         max_unmatched_fraction: float = 1e-3) -> int:
    """Check ``actual`` against the float64 reference ``expected`` as the module notes say;
    returns the number of unmatched samples (both sides). ``origins`` [N, 3] and ``far`` (scalar
    or [N]), ``step_size`` and ``cone_angle`` are those of the marched rays."""
    a = {k: getattr(actual, k).detach().cpu() for k in ("ray_counts", "t", "dt", "positions")}
    e = {k: getattr(expected, k).detach().cpu() for k in ("ray_counts", "t", "dt", "positions")}
    n_rays = a["ray_counts"].shape[0]
    assert e["ray_counts"].shape[0] == n_rays
    far_list = (far.detach().cpu().tolist() if isinstance(far, torch.Tensor) else [float(far)] * n_rays)
    origin_scale = origins.detach().cpu().abs().amax(dim=1).tolist()
    lo = [float(v) for v in grid.bounds[0]]
    cell = [(float(h) - float(l)) / grid.resolution for l, h in zip(*grid.bounds)]
    a_counts, e_counts = a["ray_counts"].tolist(), e["ray_counts"].tolist()
    a_t, e_t = a["t"].double().tolist(), e["t"].double().tolist()
    a_dt, e_dt = a["dt"].double().tolist(), e["dt"].double().tolist()
    a_p, e_p = a["positions"].double().tolist(), e["positions"].double().tolist()
    unmatched = 0
    ia = ie = 0
    for ray in range(n_rays):
        end_a, end_e = ia + a_counts[ray], ie + e_counts[ray]

        def tol(t: float) -> float:
            return tolerance(abs(t) + origin_scale[ray] + 1.0, step_size, cone_angle)

        def check_lone(t: float, p: list[float]) -> None:
            near_end = abs(t - far_list[ray]) <= tol(t)
            assert near_end or _near_face(p, lo, cell, tol(t)), (
                f"ray {ray}: a sample at t={t} in one set only lies on no cell face and at no ray end")

        while ia < end_a or ie < end_e:
            if ia < end_a and ie < end_e and abs(a_t[ia] - e_t[ie]) <= tol(e_t[ie]):
                assert abs(a_dt[ia] - e_dt[ie]) <= tol(e_t[ie]) + 1e-6 * e_dt[ie], (ray, a_dt[ia], e_dt[ie])
                gap = max(abs(x - y) for x, y in zip(a_p[ia], e_p[ie]))
                assert gap <= tol(e_t[ie]), (ray, a_p[ia], e_p[ie])
                ia, ie = ia + 1, ie + 1
            elif ie >= end_e or (ia < end_a and a_t[ia] < e_t[ie]):
                check_lone(a_t[ia], a_p[ia])
                unmatched, ia = unmatched + 1, ia + 1
            else:
                check_lone(e_t[ie], e_p[ie])
                unmatched, ie = unmatched + 1, ie + 1
    total = max(len(e_t), 1)
    assert unmatched <= max_unmatched_fraction * total, f"{unmatched} unmatched samples of {total}"
    return unmatched
