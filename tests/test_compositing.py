"""Compositing kernels against the float64 torch reference and finite differences."""

import pytest
import torch

from taichi_pvd import backend
from taichi_pvd.errors import ConfigError
from taichi_pvd.kernels.compositing import (
    composite,
    composite_reference,
    composited_counts,
    composited_counts_reference,
    render_weights,
    render_weights_reference,
)

backend.init("cpu")

#: Ray whose third sample is opaque, so transmittance drops below 1e-4 behind it.
OPAQUE_RAY = 2
OPAQUE_SAMPLE = 2


def _packed_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Six rays of 0 to 8 samples (rays 1 and 4 empty); ray ``OPAQUE_RAY`` terminates early.
    Elsewhere sigma * dt < 0.6, so transmittance stays far above the threshold."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor([5, 0, 8, 3, 0, 7], dtype=torch.int32)
    starts = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    n_samples = int(counts.sum())
    dt = 0.05 + 0.05 * torch.rand(n_samples, generator=gen)
    sigmas = 6.0 * torch.rand(n_samples, generator=gen)
    sigmas[int(starts[OPAQUE_RAY]) + OPAQUE_SAMPLE] = 300.0
    t = torch.cumsum(dt, 0) + 2.0
    rgbs = torch.rand(n_samples, 3, generator=gen)
    return {"sigmas": sigmas, "rgbs": rgbs, "dt": dt, "t": t, "ray_starts": starts,
            "ray_counts": counts}


def _upstream(n_rays: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n_rays, 3, generator=gen, dtype=torch.float64),
            torch.randn(n_rays, generator=gen, dtype=torch.float64),
            torch.randn(n_rays, generator=gen, dtype=torch.float64))


def _loss(outputs, upstream) -> torch.Tensor:
    """Scalar with the given upstream gradients for rgb, depth and opacity at once."""
    return sum((out.double() * g).sum() for out, g in zip(outputs, upstream))


def _values_and_grads(fn, batch, dtype, upstream):
    sigmas = batch["sigmas"].to(dtype).clone().requires_grad_()
    rgbs = batch["rgbs"].to(dtype).clone().requires_grad_()
    outputs = fn(sigmas, rgbs, batch["dt"].to(dtype), batch["t"].to(dtype),
                 batch["ray_starts"], batch["ray_counts"])
    _loss(outputs, upstream).backward()
    return [o.detach().double() for o in outputs], sigmas.grad.double(), rgbs.grad.double()


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-3) -> None:
    atol = rtol * float(expected.abs().max()) * 1e-2 + 1e-7
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def test_composite_matches_float64_reference_in_values_and_gradients():
    batch = _packed_batch()
    upstream = _upstream(6)
    outs, g_sigma, g_rgb = _values_and_grads(composite, batch, torch.float32, upstream)
    ref_outs, ref_g_sigma, ref_g_rgb = _values_and_grads(composite_reference, batch,
                                                         torch.float64, upstream)
    for out, ref in zip(outs, ref_outs):
        _assert_close(out, ref)
    _assert_close(g_sigma, ref_g_sigma)
    _assert_close(g_rgb, ref_g_rgb)
    assert ref_g_sigma.abs().max() > 1e-2 and ref_g_rgb.abs().max() > 1e-2


def test_rays_without_samples_composite_to_zero():
    batch = _packed_batch()
    rgb, depth, opacity = composite(**batch)
    for ray in (1, 4):
        assert rgb[ray].abs().max() == 0 and depth[ray] == 0 and opacity[ray] == 0
    assert bool((opacity[[0, 2, 3, 5]] > 0.05).all())


def test_samples_behind_an_opaque_one_get_no_weight_and_no_gradient():
    batch = _packed_batch()
    upstream = _upstream(6)
    _, g_sigma, g_rgb = _values_and_grads(composite, batch, torch.float32, upstream)
    first = int(batch["ray_starts"][OPAQUE_RAY])
    last = first + int(batch["ray_counts"][OPAQUE_RAY])
    behind = slice(first + OPAQUE_SAMPLE + 1, last)
    assert bool((g_sigma[behind] == 0).all()) and bool((g_rgb[behind] == 0).all())
    assert g_rgb[first + OPAQUE_SAMPLE].abs().max() > 0
    weights = render_weights(batch["sigmas"], batch["dt"], batch["ray_starts"], batch["ray_counts"])
    assert bool((weights[behind] == 0).all())
    _, _, opacity = composite(**batch)
    assert float(opacity[OPAQUE_RAY]) == pytest.approx(1.0, abs=1e-5)


def test_composite_gradient_matches_central_finite_differences_of_the_kernel():
    batch = _packed_batch(seed=3)
    upstream = _upstream(6, seed=4)
    _, g_sigma, g_rgb = _values_and_grads(composite, batch, torch.float32, upstream)
    analytic = torch.cat([g_sigma, g_rgb.reshape(-1)])

    def loss_of(sigmas: torch.Tensor, rgbs: torch.Tensor) -> float:
        outputs = composite(sigmas, rgbs, batch["dt"], batch["t"], batch["ray_starts"],
                            batch["ray_counts"])
        return float(_loss(outputs, upstream))

    eps = 1e-2
    numeric = torch.zeros_like(analytic)
    base = torch.cat([batch["sigmas"], batch["rgbs"].reshape(-1)])
    n = batch["sigmas"].shape[0]
    for k in range(base.shape[0]):
        values = []
        for sign in (1.0, -1.0):
            x = base.clone()
            x[k] += sign * eps
            values.append(loss_of(x[:n], x[n:].reshape(-1, 3)))
        numeric[k] = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-2, atol=2e-3 * float(numeric.abs().max()))


def test_render_weights_match_reference_and_sum_to_opacity():
    batch = _packed_batch(seed=5)
    args = (batch["ray_starts"], batch["ray_counts"])
    sigmas = batch["sigmas"].clone().requires_grad_()
    sigmas64 = batch["sigmas"].double().requires_grad_()
    weights = render_weights(sigmas, batch["dt"], *args)
    reference = render_weights_reference(sigmas64, batch["dt"].double(), *args)
    _assert_close(weights.detach().double(), reference.detach())
    upstream = torch.randn(weights.shape[0], generator=torch.Generator().manual_seed(6),
                           dtype=torch.float64)
    (weights.double() * upstream).sum().backward()
    (reference * upstream).sum().backward()
    _assert_close(sigmas.grad.double(), sigmas64.grad)
    _, _, opacity = composite(**batch)
    per_ray = torch.zeros(6).index_add_(
        0, torch.repeat_interleave(torch.arange(6), batch["ray_counts"].long()), weights.detach())
    torch.testing.assert_close(per_ray, opacity, rtol=1e-5, atol=1e-6)


def test_zero_threshold_composites_every_sample():
    batch = _packed_batch()
    weights = render_weights(batch["sigmas"], batch["dt"], batch["ray_starts"],
                             batch["ray_counts"], transmittance_threshold=0.0)
    first = int(batch["ray_starts"][OPAQUE_RAY])
    assert float(weights[first + OPAQUE_SAMPLE + 1]) > 0.0


def test_no_samples_at_all_gives_zeros_and_empty_gradients():
    sigmas = torch.zeros(0, requires_grad=True)
    rgbs = torch.zeros(0, 3, requires_grad=True)
    empty = torch.zeros(0)
    layout = torch.zeros(3, dtype=torch.int32)
    rgb, depth, opacity = composite(sigmas, rgbs, empty, empty, layout, layout)
    (rgb.sum() + depth.sum() + opacity.sum()).backward()
    assert rgb.shape == (3, 3) and rgb.abs().max() == 0 and opacity.abs().max() == 0
    assert sigmas.grad.shape == (0,) and rgbs.grad.shape == (0, 3)


def test_threshold_outside_unit_interval_is_rejected():
    batch = _packed_batch()
    with pytest.raises(ConfigError, match="transmittance_threshold"):
        composite(**batch, transmittance_threshold=1.5)


def test_composited_counts_stop_where_compositing_stops():
    batch = _packed_batch(seed=3)
    args = (batch["sigmas"], batch["dt"], batch["ray_starts"], batch["ray_counts"])
    counts = composited_counts(*args)
    reference = composited_counts_reference(batch["sigmas"].double(), batch["dt"].double(), *args[2:])
    assert counts.tolist() == reference.tolist()
    expected = batch["ray_counts"].clone()
    expected[OPAQUE_RAY] = OPAQUE_SAMPLE + 1
    assert counts.tolist() == expected.tolist()
    # Compositing only the counted samples gives the same colours, depths and opacities.
    keep = torch.cat([torch.arange(int(s), int(s) + int(n)) for s, n in zip(batch["ray_starts"], counts)])
    starts = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    truncated = composite(batch["sigmas"][keep], batch["rgbs"][keep], batch["dt"][keep], batch["t"][keep],
                          starts, counts)
    for got, full in zip(truncated, composite(**batch)):
        torch.testing.assert_close(got, full)
