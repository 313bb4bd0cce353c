"""Every Taichi kernel on CUDA against its float64 torch reference (computed on the CPU), values
and gradients, called repeatedly with changing sizes so that the lean launch path
(:mod:`taichi_pvd.kernels.fast_launch`) serves all calls after the first; the fast launch path's
own tests on CUDA; the hand-written backwards against Taichi's autodiff on CUDA."""

import pytest
import torch

from taichi_pvd.data.contracted_space import contracted_aabb
from taichi_pvd.kernels.compositing import (
    composite,
    composite_reference,
    composited_counts,
    composited_counts_reference,
    render_weights,
    render_weights_reference,
)
from taichi_pvd.kernels.grid_interpolation import grid_interpolate, grid_interpolate_reference
from taichi_pvd.kernels import hash_encoding
from taichi_pvd.kernels.hash_encoding import hash_encode, hash_encode_reference, hash_grid_layout, init_hash_table
from taichi_pvd.kernels.marching import march_rays, march_rays_reference
from taichi_pvd.kernels.sh_encoding import sh_encode, sh_encode_reference
from taichi_pvd.kernels.vm_interpolation import vm_interpolate, vm_interpolate_reference
from taichi_pvd.rendering.occupancy import OccupancyGrid, pack_bitfield
from tests import autodiff_cases
from tests.marching_checks import assert_same_samples_within_tolerance
from tests.test_fast_launch import (  # noqa: F401  (collected here too, on CUDA)
    test_kernels_with_a_return_value_keep_taichis_path,
    test_non_contiguous_tensor_is_refused_on_the_fast_path,
    test_repeated_calls_follow_every_argument,
)

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
#: Sizes of successive calls: the first compiles and launches through Taichi, the rest through
#: the lean launch path, with new shapes and addresses each time.
SIZES = (517, 2048, 1, 517)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _values_and_grads(fn, inputs: list[torch.Tensor], upstream_seed: int):
    """Outputs of ``fn(*inputs)`` and the gradients of ``sum(out * upstream)`` w.r.t. every input
    that requires one (upstream drawn on the CPU from ``upstream_seed``)."""
    out = fn(*inputs)
    upstream = torch.randn(out.shape, generator=_generator(upstream_seed), dtype=torch.float64).to(out.device)
    if out.requires_grad:
        (out.double() * upstream).sum().backward()
    return out.detach(), [t.grad for t in inputs if t.requires_grad]


def _pair(t: torch.Tensor, requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` as a float32 CUDA tensor and a float64 CPU tensor, both leaves."""
    return (t.detach().float().to(CUDA).clone().contiguous().requires_grad_(requires_grad),
            t.detach().double().cpu().clone().requires_grad_(requires_grad))


def _assert_matches(fn, reference, inputs: list[tuple[torch.Tensor, bool]], seed: int, tol: float = 1e-4) -> None:
    pairs = [_pair(t, g) for t, g in inputs]
    out, grads = _values_and_grads(fn, [p[0] for p in pairs], seed)
    ref, ref_grads = _values_and_grads(reference, [p[1] for p in pairs], seed)
    assert out.device.type == "cuda"
    assert rel_err(out, ref) < tol
    for g, r in zip(grads, ref_grads):
        assert rel_err(g, r) < tol


@pytest.mark.parametrize("run", [1, 8])
def test_hash_encoding_matches_float64_reference(monkeypatch, run):
    monkeypatch.setitem(hash_encoding.POINTS_A_THREAD, "forward", run)
    monkeypatch.setitem(hash_encoding.POINTS_A_THREAD, "backward", run)
    layout = hash_grid_layout(n_levels=3, features_per_level=2, log2_table_size=12, base_resolution=5,
                              finest_resolution=45)
    for call, n in enumerate(SIZES):
        x = torch.rand(n, 3, generator=_generator(call))
        x[0] = torch.tensor([0.0, 1.0, 0.5])
        table = init_hash_table(layout, _generator(10 + call)) * 1e3

        def kernel(x, table):
            return hash_encode(x, table, layout)

        def reference(x, table):
            return hash_encode_reference(x, table, layout)

        _assert_matches(kernel, reference, [(x, False), (table, True)], seed=20 + call)


def test_grid_interpolation_matches_float64_reference():
    for call, n in enumerate(SIZES):
        x = torch.rand(n, 3, generator=_generator(call))
        grid = torch.randn(9, 6, 7, 28, generator=_generator(10 + call))
        _assert_matches(grid_interpolate, grid_interpolate_reference, [(x, False), (grid, True)], seed=20 + call)


def test_vm_interpolation_matches_float64_reference():
    for call, n in enumerate(SIZES):
        x = torch.rand(n, 3, generator=_generator(call))
        gen = _generator(10 + call)
        planes, lines = torch.randn(3, 12, 12, 8, generator=gen), torch.randn(3, 12, 8, generator=gen)
        _assert_matches(vm_interpolate, vm_interpolate_reference, [(x, False), (planes, True), (lines, True)],
                        seed=20 + call)


def test_vm_interpolation_past_taichis_int32_launch_limit():
    # More than 2^31 output values (8.6 GB of float32): Taichi 1.7 counts a launch's iterations
    # in int32 and, past that, runs none; a block ending just below 2^31 made CUDA threads
    # stride past it into negative indices (an illegal memory access). The kernel must launch in
    # row blocks with room for the stride. Values and gradients against the float64 reference,
    # computed on the GPU in chunks.
    channels = 48
    n = (2**31) // (3 * channels) + 4099
    gen = torch.Generator(device=CUDA).manual_seed(7)
    x = torch.rand(n, 3, device=CUDA, generator=gen)
    planes = torch.randn(3, 16, 16, channels, device=CUDA, generator=gen).requires_grad_()
    lines = torch.randn(3, 16, channels, device=CUDA, generator=gen).requires_grad_()
    out = vm_interpolate(x, planes, lines)
    assert out.shape[0] * out.shape[1] >= 2**31
    upstream = torch.randn(out.shape, device=CUDA, generator=gen)
    (out * upstream).sum().backward()
    planes64 = planes.detach().double().requires_grad_()
    lines64 = lines.detach().double().requires_grad_()
    worst = 0.0
    for rows in torch.arange(n, device=CUDA).split(1 << 21):
        ref = vm_interpolate_reference(x[rows].double(), planes64, lines64)
        worst = max(worst, float((out[rows].double() - ref).abs().max()))
        (ref * upstream[rows].double()).sum().backward()
    del out, upstream
    assert worst < 1e-4
    # Each line entry sums ~2M float32 products (rounding grows with the square root of that).
    assert rel_err(planes.grad, planes64.grad) < 1e-3 and rel_err(lines.grad, lines64.grad) < 1e-3


@pytest.mark.parametrize("n_bands", [1, 2, 3, 4])
def test_sh_encoding_matches_float64_reference(n_bands):
    for call, n in enumerate(SIZES):
        d = torch.nn.functional.normalize(torch.randn(n, 3, generator=_generator(call)), dim=1)

        def kernel(d):
            return sh_encode(d, n_bands)

        def reference(d):
            return sh_encode_reference(d, n_bands)

        _assert_matches(kernel, reference, [(d, n_bands > 1)], seed=20 + call)


def test_compositing_matches_float64_reference():
    for call, n_rays in enumerate((64, 300, 7, 64)):
        b = autodiff_cases.packed_batch(n_rays, 40, torch.device("cpu"), _generator(call))
        layout = (b.ray_starts, b.ray_counts)
        sigmas, sigmas64 = _pair(b.sigmas, True)
        rgbs, rgbs64 = _pair(b.rgbs, True)
        outputs = composite(sigmas, rgbs, b.dt.to(CUDA), b.t.to(CUDA), *(v.to(CUDA) for v in layout))
        reference = composite_reference(sigmas64, rgbs64, b.dt.double(), b.t.double(), *layout)
        gen = _generator(20 + call)
        upstream = [torch.randn(r.shape, generator=gen, dtype=torch.float64) for r in reference]
        sum((o.double() * u.to(CUDA)).sum() for o, u in zip(outputs, upstream)).backward()
        sum((r * u).sum() for r, u in zip(reference, upstream)).backward()
        for o, r in zip(outputs, reference):
            assert rel_err(o, r) < 1e-4
        assert rel_err(sigmas.grad, sigmas64.grad) < 1e-4
        assert rel_err(rgbs.grad, rgbs64.grad) < 1e-4

        weights = render_weights(sigmas.detach(), b.dt.to(CUDA), *(v.to(CUDA) for v in layout))
        assert rel_err(weights, render_weights_reference(b.sigmas.double(), b.dt.double(), *layout)) < 1e-4
        counts = composited_counts(sigmas.detach(), b.dt.to(CUDA), *(v.to(CUDA) for v in layout))
        assert torch.equal(counts.cpu(), composited_counts_reference(b.sigmas.double(), b.dt.double(), *layout))


def test_render_weights_gradient_matches_float64_reference():
    b = autodiff_cases.packed_batch(200, 40, torch.device("cpu"), _generator(3))
    layout = (b.ray_starts, b.ray_counts)
    upstream = torch.randn(b.sigmas.shape, generator=_generator(4), dtype=torch.float64)
    sigmas, sigmas64 = _pair(b.sigmas, True)
    (render_weights(sigmas, b.dt.to(CUDA), *(v.to(CUDA) for v in layout)).double() * upstream.to(CUDA)).sum().backward()
    (render_weights_reference(sigmas64, b.dt.double(), *layout) * upstream).sum().backward()
    assert rel_err(sigmas.grad, sigmas64.grad) < 1e-4


def _on_cuda(kwargs: dict) -> dict:
    """``kwargs`` with its tensors moved to the GPU."""
    return {k: v.to(CUDA) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _random_grid(resolution: int, occupied: float, seed: int) -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor([[-1.0, -0.5, -1.5], [1.0, 1.5, 0.5]]), resolution=resolution)
    grid.bitfield.copy_(pack_bitfield(torch.rand(resolution**3, generator=_generator(seed)) < occupied))
    return grid


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("cone_angle", [0.0, 1.0 / 64])
def test_marching_matches_float64_reference(cone_angle, precision):
    grid = _random_grid(16, 0.4, seed=0)
    gen = _generator(1)
    n = 400
    origins = grid.aabb.mean(0) + 3.5 * (torch.rand(n, 3, generator=gen) - 0.5)
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    near, far = 0.3 * torch.rand(n, generator=gen), 1.0 + 3.0 * torch.rand(n, generator=gen)
    jitter = torch.rand(n, generator=gen)
    kwargs = dict(near=near, far=far, step_size=0.007, cone_angle=cone_angle, jitter=jitter)
    reference = march_rays_reference(origins, directions, grid, **kwargs)
    cuda_grid = grid.to(CUDA)
    samples = march_rays(origins.to(CUDA), directions.to(CUDA), cuda_grid, precision=precision,
                         **_on_cuda(kwargs))
    assert samples.t.device.type == "cuda" and reference.n_samples > 2000
    assert_same_samples_within_tolerance(samples, reference, grid, origins=origins, far=far, cone_angle=cone_angle)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("cone_angle", [0.0, 1.0 / 32])
def test_contracted_marching_matches_float64_reference(cone_angle, precision):
    # Unbounded scenes: world-space steps growing with distance, positions contracted.
    grid = OccupancyGrid(contracted_aabb(), resolution=16, contracted=True)
    grid.bitfield.copy_(pack_bitfield(torch.rand(16**3, generator=_generator(2)) < 0.3))
    gen = _generator(3)
    n = 300
    origins = 1.8 * (torch.rand(n, 3, generator=gen) - 0.5)
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    kwargs = dict(near=0.02 + 0.1 * torch.rand(n, generator=gen), far=1e4, step_size=0.01, cone_angle=cone_angle,
                  jitter=torch.rand(n, generator=gen))
    reference = march_rays_reference(origins, directions, grid, **kwargs)
    samples = march_rays(origins.to(CUDA), directions.to(CUDA), grid.to(CUDA), precision=precision,
                         **_on_cuda(kwargs))
    assert samples.t.device.type == "cuda" and float(reference.t.max()) > 100.0
    assert_same_samples_within_tolerance(samples, reference, grid, origins=origins, far=1e4, cone_angle=cone_angle)


@pytest.mark.parametrize("case", ["hash", "grid", "vm", "sh", "composite", "weights"])
def test_handwritten_backwards_match_taichis_autodiff(case):
    gen = _generator(0)
    make = {
        "hash": lambda: autodiff_cases.hash_case(4096, CUDA, gen),
        "grid": lambda: autodiff_cases.grid_case(4096, (16, 16, 16, 28), CUDA, gen),
        "vm": lambda: autodiff_cases.vm_case(4096, 32, 8, CUDA, gen),
        "sh": lambda: autodiff_cases.sh_case(4096, 4, CUDA, gen),
        "composite": lambda: autodiff_cases.composite_case(512, 40, CUDA, gen),
        "weights": lambda: autodiff_cases.weights_case(512, 40, CUDA, gen),
    }[case]
    built = make()
    expected, actual = built.handwritten(), built.autodiff()
    for name, value in expected.items():
        assert rel_err(actual[name], value) < 1e-4, name
