"""The CUDA-only paths of training and distillation: distillation steps replayed as CUDA graphs
against the same steps run eagerly, capturable Adam in a CUDA graph against torch's Adam, and
float16 / bfloat16 autocast against float32."""

import pytest
import torch

from taichi_pvd.data import load_scene, write_demo_scene
from taichi_pvd.data.camera_rig import CameraRig
from taichi_pvd.distill.api import resolve_distill_config
from taichi_pvd.distill.distiller import Distiller
from taichi_pvd.fields import make_field
from taichi_pvd.rendering.occupancy import OccupancyGrid
from taichi_pvd.training.api import resolve_train_config
from taichi_pvd.training.loop import OptimizationLoop
from taichi_pvd.training.step_graphs import StepGraphs

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
FIELDS = {
    "hash": {"log2_table_size": 12, "n_levels": 6, "finest_resolution": 128},
    "grid": {"resolution": 32},
    "mlp": {"frequencies": 6, "depth": 4, "width": 64, "skip_index": 1},
    "vm": {"density_rank": 8, "appearance_rank": 16, "resolution_init": 32, "resolution_final": 32,
           "upsample_steps": ()},
}
#: Steps of each distillation stage in the graph test: two eager warm-up steps, the captured
#: step, one replay.
STAGE_STEPS = 4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = write_demo_scene(tmp_path_factory.mktemp("demo"), size=32, n_train=12, n_val=2, n_test=2)
    return load_scene(root, "train")


@pytest.fixture
def exact_float32_matmuls():
    """float32 matrix products without TF32 (the backend turns TF32 on for CUDA)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def _field(kind: str, scene, seed: int):
    # The fields' torch layers draw their initial weights from torch's global generator.
    torch.manual_seed(seed)
    return make_field(kind, scene.aabb, FIELDS[kind], generator=torch.Generator().manual_seed(seed))


def _distiller(scene, out_dir, cuda_graphs: bool) -> Distiller:
    """A random hash teacher (every cell of its grid occupied) and an mlp student, three stages."""
    config = resolve_distill_config("mlp", {
        "batch_rays": 512, "steps": 3 * STAGE_STEPS, "stage1_steps": STAGE_STEPS, "stage2_steps": STAGE_STEPS,
        "label_block_steps": STAGE_STEPS, "val_every": 0, "checkpoint_every": 0, "virtual_cameras": 40,
        "marching": {"steps_across_box": 128}, "cuda_graphs": cuda_graphs})
    teacher_grid = OccupancyGrid(scene.aabb, resolution=32)
    return Distiller(_field("hash", scene, 0), teacher_grid, _field("mlp", scene, 1), CameraRig.from_scene(scene),
                     config, out_dir, CUDA)


def test_distillation_steps_replayed_as_cuda_graphs_match_eager_steps(scene, tmp_path):
    runs = {}
    for graphs in (False, True):
        distiller = _distiller(scene, tmp_path / str(graphs), graphs)
        assert distiller.graphs.enabled == graphs
        start = [p.detach().clone() for p in distiller.field.parameters()]
        losses = [float(distiller.optimizer_step()[0]) for _ in range(3 * STAGE_STEPS)]
        end = [p.detach().clone() for p in distiller.field.parameters()]
        runs[graphs] = (start, losses, end)
        assert distiller.graphs.captured == (3 if graphs else 0)
    (start, eager_losses, eager_end), (graph_start, graph_losses, graph_end) = runs[False], runs[True]
    assert all(torch.equal(a, b) for a, b in zip(start, graph_start))
    assert graph_losses == pytest.approx(eager_losses, rel=1e-2)
    # What the steps changed, the same up to rounding (a stale buffer or learning rate would
    # change it by its own size).
    eager_change = torch.cat([(e - s).flatten() for e, s in zip(eager_end, start)])
    graph_change = torch.cat([(e - s).flatten() for e, s in zip(graph_end, start)])
    assert eager_change.norm() > 0
    assert rel_err(graph_change, eager_change) < 0.05


def test_capturable_adam_in_a_cuda_graph_matches_torch_adam(scene, tmp_path):
    steps = 10
    loop = OptimizationLoop(_field("hash", scene, 0), OccupancyGrid(scene.aabb, resolution=32),
                            resolve_train_config("hash", {"steps": steps}), tmp_path, CUDA)
    groups = loop.optimizer.param_groups
    params = [p for g in groups for p in g["params"]]
    reference_params = [p.detach().double().cpu().requires_grad_() for p in params]
    references = iter(reference_params)
    reference = torch.optim.Adam(
        [{"params": [next(references) for _ in g["params"]], "lr": float(g["lr"]), "weight_decay": g["weight_decay"]}
         for g in groups],
        betas=groups[0]["betas"], eps=groups[0]["eps"], foreach=False)
    grads = [torch.zeros_like(p) for p in params]
    for p, g in zip(params, grads):
        p.grad = g
    graphs = StepGraphs(True, before_capture=loop.make_optimizer_capturable)
    generator = torch.Generator().manual_seed(5)
    for step in range(steps):
        loop.step = step
        loop._set_lr()
        step_grads = [torch.randn(p.shape, generator=generator) for p in params]
        for g, new in zip(grads, step_grads):
            g.copy_(new)
        graphs("adam", loop.optimizer.step)
        for ref_group, group in zip(reference.param_groups, groups):
            ref_group["lr"] = float(group["lr"])
        for r, new in zip(reference_params, step_grads):
            r.grad = new.double()
        reference.step()
    assert graphs.captured == 1 and all(g["capturable"] for g in groups)
    for p, r in zip(params, reference_params):
        torch.testing.assert_close(p.detach().cpu().double(), r.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["hash", "vm", "mlp", "grid"])
@pytest.mark.parametrize("dtype, tol", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)], ids=["float16", "bfloat16"])
def test_autocast_matches_float32(scene, exact_float32_matmuls, kind, dtype, tol):
    field = _field(kind, scene, 0).to(CUDA)
    linear = {id(p) for m in field.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()}
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # encodings away from their near-zero initialisation
        for p in field.parameters():
            if id(p) not in linear:
                p.add_(0.1 * torch.randn(p.shape, generator=generator).to(CUDA))
    n = 4096
    lo, hi = scene.aabb[0], scene.aabb[1]
    x = (lo + (hi - lo) * torch.rand(n, 3, generator=generator)).to(CUDA)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=1).to(CUDA)
    upstream_features = torch.randn(n, field.feature_dim, generator=generator).to(CUDA)
    upstream_rgb = torch.randn(n, 3, generator=generator).to(CUDA)

    def run(enabled: bool):
        field.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False):
            features = field.features(x)
            rgb = field.colour(features, d)
        features, rgb = features.float(), rgb.float()
        ((features * upstream_features).sum() + (rgb * upstream_rgb).sum()).backward()
        grads = torch.cat([p.grad.flatten() for p in field.parameters() if p.grad is not None])
        return features.detach(), rgb.detach(), grads

    features, rgb, grads = run(False)
    features_amp, rgb_amp, grads_amp = run(True)
    assert rel_err(features_amp, features) < tol
    assert rel_err(rgb_amp, rgb) < tol
    assert rel_err(grads_amp, grads) < 2 * tol
