"""The distortion loss on packed samples against its definition (all sample pairs, float64)."""

import torch

from taichi_pvd.kernels.marching import PackedSamples
from taichi_pvd.training.interval_distortion import interval_distortion, interval_distortion_reference


def _packed(counts: list[int], seed: int = 0) -> PackedSamples:
    """Rays of ``counts`` samples each, at increasing random ``t`` with random intervals."""
    g = torch.Generator().manual_seed(seed)
    ray_counts = torch.tensor(counts, dtype=torch.int32)
    ray_starts = (torch.cumsum(ray_counts, 0) - ray_counts).to(torch.int32)
    ray_indices = torch.repeat_interleave(torch.arange(len(counts), dtype=torch.int32), ray_counts)
    dt = torch.rand(int(ray_counts.sum()), generator=g) * 0.05 + 0.001
    ends = torch.cat([torch.cumsum(dt[s:s + c], 0) for s, c in zip(ray_starts.tolist(), counts)]) if counts else dt
    t = ends - dt / 2 + 2.0 * torch.rand(len(counts), generator=g).repeat_interleave(ray_counts)
    s = t.shape[0]
    return PackedSamples(ray_indices=ray_indices, ray_starts=ray_starts, ray_counts=ray_counts, t=t, dt=dt,
                         positions=torch.zeros(s, 3), directions=torch.zeros(s, 3))


def test_matches_the_definition_in_values_and_gradients():
    samples = _packed([5, 0, 1, 37, 12, 0, 64], seed=1)
    weights = torch.rand(samples.n_samples, generator=torch.Generator().manual_seed(2)) * 0.3
    w32 = weights.clone().requires_grad_()
    w64 = weights.double().requires_grad_()
    upstream = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours, ref = interval_distortion(w32, samples), interval_distortion_reference(w64, samples)
    assert ours.dtype == torch.float32 and ours.shape == (7,)
    assert torch.allclose(ours.double(), ref, rtol=1e-6, atol=1e-9)
    assert ours[1] == 0 and ours[5] == 0
    (ours.double() * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.allclose(w32.grad.double(), w64.grad, rtol=1e-5, atol=1e-8)


def test_many_rays_keep_their_running_sums_apart():
    # 4096 rays of 60 samples: the running sums over the batch reach ~1e5, far beyond what
    # float32 differences of them would resolve.
    samples = _packed([60] * 4096, seed=4)
    weights = torch.rand(samples.n_samples, generator=torch.Generator().manual_seed(5))
    ref = interval_distortion_reference(weights[:60 * 8].double(), _packed([60] * 8, seed=4))
    assert torch.allclose(interval_distortion(weights, samples)[:8].double(), ref, rtol=1e-6)


def test_weight_gathered_at_a_surface_costs_less_than_weight_spread_along_the_ray():
    samples = _packed([40], seed=6)
    gathered = torch.zeros(40)
    gathered[20] = 1.0
    spread = torch.full((40,), 1.0 / 40)
    only = interval_distortion(gathered, samples)
    assert torch.allclose(only, samples.dt[20:21] / 3.0)
    assert interval_distortion(spread, samples) > 5 * only
