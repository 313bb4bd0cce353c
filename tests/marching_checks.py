"""Marched samples against the float64 reference, up to the rounding of float32 marching.

Float32 marching (:func:`~taichi_pvd.kernels.marching.march_rays` on CUDA, or with
``precision="float32"``) visits the same candidates as the float64 reference, each rounded to
float32 (see the module notes of :mod:`taichi_pvd.kernels.marching`), so:

* samples pair up one to one, ray by ray, with ``|t - t_ref|`` and ``|p - p_ref|`` within
  :func:`tolerances`: a few float32 units in the last place of the ray's scale at a constant
  step; with cone or contracted stepping, whose ``t`` is a running sum, a relative
  :data:`RUNNING_SUM_RTOL` of it (positions of a contracted grid, in contracted coordinates,
  within :data:`CONTRACTED_POSITION_ATOL`);
* except for candidates that the rounding moves across a cell face (into or out of an occupied
  cell) or across the ray's end (``far``; a box face is a cell face): such a sample may be in
  one set and not in the other, and must lie within the tolerance of that face or end.

Rays must not reach ``max_samples_per_ray`` (a sample gained or lost earlier would move the cut).
"""

import torch

from taichi_pvd.kernels.marching import PackedSamples

#: float32 unit in the last place of 1, 2^-23.
FLOAT32_EPS = 2.0**-23
#: Tolerance of a sample at a constant step, in units of ``FLOAT32_EPS * scale``.
LATTICE_ULPS = 8.0
#: Relative tolerance of ``t`` (and of positions in a box grid) with cone or contracted
#: stepping, where each step rounds into the running sum ``t`` (measured: at most 5e-4 on
#: contracted rays reaching 10^4 world units, 3e-7 with cone steps in a box).
RUNNING_SUM_RTOL = 2e-3
#: Tolerance of positions in contracted coordinates (measured: at most 3e-6).
CONTRACTED_POSITION_ATOL = 2e-5


def tolerances(scale: float, running_sum: bool, contracted: bool) -> tuple[float, float]:
    """World-unit tolerances ``(of t, of positions)`` of a sample at scale ``scale`` (its
    distance along the ray plus the origin's magnitude, plus 1)."""
    t_tol = RUNNING_SUM_RTOL * scale if running_sum else LATTICE_ULPS * FLOAT32_EPS * scale
    return t_tol, CONTRACTED_POSITION_ATOL if contracted else t_tol


def _near_face(p: list[float], lo: list[float], cell: list[float], tol: float) -> bool:
    for a in range(3):
        f = (p[a] - lo[a]) / cell[a]
        if abs(f - round(f)) * cell[a] <= tol:
            return True
    return False


def assert_same_samples_within_tolerance(actual: PackedSamples, expected: PackedSamples, grid, *,
                                         origins: torch.Tensor, far: torch.Tensor | float, cone_angle: float = 0.0,
                                         max_unmatched_fraction: float = 1e-3) -> int:
    """Check ``actual`` against the float64 reference ``expected`` as the module notes say;
    returns the number of unmatched samples (both sides). ``origins`` [N, 3], ``far`` (scalar
    or [N]) and ``cone_angle`` are those of the marched rays."""
    a = {k: getattr(actual, k).detach().cpu() for k in ("ray_counts", "t", "dt", "positions")}
    e = {k: getattr(expected, k).detach().cpu() for k in ("ray_counts", "t", "dt", "positions")}
    n_rays = a["ray_counts"].shape[0]
    assert e["ray_counts"].shape[0] == n_rays
    far_list = (far.detach().cpu().tolist() if isinstance(far, torch.Tensor) else [float(far)] * n_rays)
    origin_scale = origins.detach().cpu().abs().amax(dim=1).tolist()
    contracted = bool(grid.contracted)
    running_sum = cone_angle > 0.0 or contracted
    # A step length follows its sample's t (cone) or position (contracted) to the same precision.
    dt_rtol = RUNNING_SUM_RTOL if running_sum else LATTICE_ULPS * FLOAT32_EPS
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

        def tol(t: float) -> tuple[float, float]:
            return tolerances(abs(t) + origin_scale[ray] + 1.0, running_sum, contracted)

        def check_lone(t: float, p: list[float]) -> None:
            t_tol, p_tol = tol(t)
            assert abs(t - far_list[ray]) <= t_tol or _near_face(p, lo, cell, p_tol), (
                f"ray {ray}: a sample at t={t}, p={p} in one set only lies on no cell face and at no ray end")

        while ia < end_a or ie < end_e:
            t_tol, p_tol = tol(e_t[ie] if ie < end_e else a_t[ia])
            if ia < end_a and ie < end_e and abs(a_t[ia] - e_t[ie]) <= t_tol:
                assert abs(a_dt[ia] - e_dt[ie]) <= t_tol + dt_rtol * e_dt[ie], (ray, a_dt[ia], e_dt[ie])
                gap = max(abs(x - y) for x, y in zip(a_p[ia], e_p[ie]))
                assert gap <= p_tol, (ray, a_p[ia], e_p[ie])
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
