"""`pvd-ti export` and :mod:`taichi_pvd.export`: meshes, point clouds and volumes, measured
against the demo scene's true geometry.

Two kinds of field are exported:

- an analytic field whose density is the demo scene's sphere and box (their exact geometry),
  sharp enough that the exporter's own error (box, axis order, threshold, voxel offsets) is what
  the Chamfer distance measures: it must stay below 1% of the scene box;
- a tiny hash run trained on the demo scene and a grid student distilled from it, on the CPU in
  a few minutes: their meshes too lie within 1% of the box of the true surface, and their
  points a median within 2% (the farthest within 20%).
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from taichi_pvd_cli.export_command import DEFAULT_THRESHOLD as CLI_DEFAULT_THRESHOLD
from taichi_pvd_cli.main import main
from taichi_pvd import export
from taichi_pvd.data import demo
from taichi_pvd.data.camera_rig import CameraRig
from taichi_pvd.data import load_scene
from taichi_pvd.distill.api import distill
from taichi_pvd import memory
from taichi_pvd.errors import NotEnoughMemory, OptionValueError
from taichi_pvd.fields.base import RadianceField
from taichi_pvd.io.runs import LoadedRun, load_run
from taichi_pvd.rendering.occupancy import OccupancyGrid
from taichi_pvd.rendering.view_sets import split_views
from taichi_pvd.training.api import train

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("mcubes")

#: The demo scene's box [-1.5, 1.5]^3 is 3 world units on a side; the issue's bounds are 1% of
#: it for meshes and 2% for points.
BOX_SIZE = 3.0
MESH_BOUND = 0.01 * BOX_SIZE
POINT_BOUND = 0.02 * BOX_SIZE
#: Raw density per world unit of signed distance in the analytic field: sigma falls by e^40
#: per unit across the surface, so a threshold 20x off moves the surface by 0.075.
SHARPNESS = 40.0


@pytest.fixture(autouse=True)
def _keep_cpu(monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")


# --- the true surface -------------------------------------------------------------------------

def _rotated_box_distance(x: torch.Tensor) -> torch.Tensor:
    box = demo._Box
    local = (x.double() - box.centre) @ box.rotation
    q = local.abs() - box.half
    return (q.clamp_min(0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0)).float()


def _solids_distance(x: torch.Tensor) -> torch.Tensor:
    """Signed distance [N] (negative inside) to the demo scene's sphere and rotated box."""
    sphere = demo._Sphere
    to_sphere = ((x.double() - sphere.centre).norm(dim=-1) - sphere.radius).float()
    return torch.minimum(to_sphere, _rotated_box_distance(x))


def _solids_surface(n: int) -> torch.Tensor:
    """[~n, 3] points spread over the surfaces of the demo sphere and rotated box."""
    g = torch.Generator().manual_seed(0)
    sphere, box = demo._Sphere, demo._Box
    u = torch.nn.functional.normalize(torch.randn(n // 2, 3, generator=g, dtype=torch.float64), dim=-1)
    on_sphere = sphere.centre + sphere.radius * u
    local = (torch.rand(n // 2, 3, generator=g, dtype=torch.float64) * 2 - 1) * box.half
    face = torch.randint(0, 3, (n // 2,), generator=g)
    side = torch.where(torch.rand(n // 2, generator=g) < 0.5, -1.0, 1.0).double()
    local[torch.arange(n // 2), face] = side * box.half[face]
    on_box = local @ box.rotation.T + box.centre
    return torch.cat([on_sphere, on_box]).float()


def _traced_surface(n_rays: int, elevation_deg: tuple[float, float], seed: int) -> torch.Tensor:
    """Points of the demo scene's surface hit by rays from 4 units away at the given elevations."""
    g = torch.Generator().manual_seed(seed)
    azimuth = torch.rand(n_rays, generator=g, dtype=torch.float64) * 2 * math.pi
    lo, hi = (math.radians(e) for e in elevation_deg)
    elevation = lo + torch.rand(n_rays, generator=g, dtype=torch.float64) * (hi - lo)
    origins = 4.0 * torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()], -1)
    targets = torch.rand(n_rays, 3, generator=g, dtype=torch.float64) * 2 - 1
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    _, depth = demo.trace_demo_rays(origins, directions)
    hit = torch.isfinite(depth)
    return (origins[hit] + directions[hit] * depth[hit, None]).float()


def _nearest(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """[len(a)] distance from each point of ``a`` to its nearest point of ``b``."""
    return torch.cat([torch.cdist(a[i:i + chunk], b).min(dim=1).values for i in range(0, len(a), chunk)])


def _mesh_samples(mesh: export.Mesh, n: int = 20000) -> torch.Tensor:
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    return torch.as_tensor(trimesh.sample.sample_surface(tm, n, seed=0)[0], dtype=torch.float32)


def _chamfer(samples: torch.Tensor, truth_everywhere: torch.Tensor, truth_seen: torch.Tensor) -> float:
    """Symmetric Chamfer distance: the mean of (mean distance of the mesh to the true surface)
    and (mean distance of the true surface the cameras see to the mesh)."""
    return 0.5 * float(_nearest(samples, truth_everywhere).mean() + _nearest(truth_seen, samples).mean())


# --- the analytic field -------------------------------------------------------------------------

@dataclasses.dataclass
class _NoOptions:
    pass


class SolidsField(RadianceField):
    """The demo sphere and box as a field: raw density ``ln(DEFAULT_THRESHOLD) - SHARPNESS * d``
    at signed distance ``d``, so the default threshold lies exactly on the surface; features
    1..3 hold the position, and the colour is the position mapped from the box into [0, 1]."""

    kind = "solids"
    config_class = _NoOptions
    feature_dim = 16

    def __init__(self, sharpness: float = SHARPNESS):
        super().__init__(_NoOptions(), torch.tensor([[-1.5] * 3, [1.5] * 3]))
        self.sharpness = sharpness

    def features(self, x):
        raw = math.log(export.DEFAULT_THRESHOLD) - self.sharpness * _solids_distance(x)
        return torch.cat([raw[:, None], x, torch.zeros(len(x), 12)], dim=-1)

    def colour(self, features, directions):
        return ((features[:, 1:4] + 1.5) / 3.0).clamp(0, 1)


def _solids_run(path, sharpness: float = SHARPNESS) -> LoadedRun:
    field = SolidsField(sharpness)
    grid = OccupancyGrid(field.aabb, resolution=32)
    for step in range(16):  # as training refreshes it: each cell's densest of 16 jittered samples
        grid.update(field.density, step=step, generator=torch.Generator().manual_seed(step))
    return LoadedRun(path=path, field=field, grid=grid, config={"model": "solids"}, meta={})


@pytest.fixture(scope="module")
def solids_run(tmp_path_factory):
    return _solids_run(tmp_path_factory.mktemp("solids"))


@pytest.fixture(scope="module")
def solids_mesh(solids_run):
    return export.extract_mesh(solids_run, resolution=128)


def test_the_mesh_of_a_known_field_lies_on_its_surface(solids_mesh):
    samples = _mesh_samples(solids_mesh)
    truth = _solids_surface(20000)
    # The exact distance of the mesh to the surface: marching cubes' own error at 128^3 (voxels
    # of 0.014), largest where it cuts the box's edges ...
    distance = _solids_distance(samples).abs()
    assert float(distance.mean()) < 0.05 * MESH_BOUND and float(distance.max()) < 0.25 * MESH_BOUND
    # ... and the Chamfer distance between point samples, limited by their spacing (~0.015).
    assert _chamfer(samples, truth, truth) < 0.5 * MESH_BOUND


def test_a_transposed_mesh_or_a_wrong_threshold_misses_the_surface(solids_run, solids_mesh):
    truth = _solids_surface(20000)
    assert _chamfer(_mesh_samples(solids_mesh)[:, [1, 0, 2]], truth, truth) > MESH_BOUND
    too_dense = export.extract_mesh(solids_run, resolution=128, threshold=20 * export.DEFAULT_THRESHOLD)
    assert _chamfer(_mesh_samples(too_dense), truth, truth) > 2 * MESH_BOUND


def test_mesh_normals_point_out_and_colours_come_from_the_surface(solids_mesh):
    v = torch.as_tensor(solids_mesh.vertices)
    on_sphere = (v.double() - demo._Sphere.centre).norm(dim=-1).sub(demo._Sphere.radius).abs() < 0.01
    outward = torch.nn.functional.normalize(v[on_sphere].double() - demo._Sphere.centre, dim=-1).float()
    assert float((torch.as_tensor(solids_mesh.normals)[on_sphere] * outward).sum(-1).min()) > 0.95
    expected = ((solids_mesh.vertices + 1.5) / 3.0 * 255).clip(0, 255)
    assert np.abs(solids_mesh.colours - expected).max() < 3
    tm = trimesh.Trimesh(solids_mesh.vertices, solids_mesh.faces, process=False)
    assert (np.einsum("ij,ij->i", tm.face_normals, solids_mesh.normals[solids_mesh.faces].mean(1)) > 0).mean() > 0.99


class FloaterField(SolidsField):
    """:class:`SolidsField` plus a ball of density at ``(1, 1, 1)`` that its occupancy grid,
    built from the solids alone, leaves out (as an mlp holds density where rendering never
    samples)."""

    def features(self, x):
        features = super().features(x)
        floater = math.log(export.DEFAULT_THRESHOLD) - self.sharpness * ((x - 1.0).norm(dim=-1) - 0.2)
        return torch.cat([torch.maximum(features[:, :1], floater[:, None]), features[:, 1:]], dim=-1)


def test_density_away_from_the_occupied_cells_makes_no_mesh(tmp_path):
    run = _solids_run(tmp_path)
    run.field = FloaterField()
    box = np.array([[-1.5] * 3, [1.5] * 3])
    with_floater = export.extract_mesh(run, resolution=64, box=box)
    assert not np.any(np.all(with_floater.vertices > 0.75, axis=1))
    run.grid.mark_all_occupied()
    assert np.any(np.all(export.extract_mesh(run, resolution=64, box=box).vertices > 0.75, axis=1))


def test_the_default_box_is_the_occupied_part(solids_run):
    box = export.export_box(solids_run)
    assert np.all(box[0] > -1.5) and np.all(box[1] < 1.5)
    truth = _solids_surface(5000).numpy()
    assert np.all(truth >= box[0]) and np.all(truth <= box[1])


def test_points_where_rays_first_cross_the_threshold_lie_on_the_surface(tmp_path, demo_scene):
    solids_run = _solids_run(tmp_path)
    scene = demo_scene
    solids_run.config["camera_rig"] = CameraRig.from_scene(load_scene(scene, "train")).to_dict()
    cloud = export.extract_points(solids_run, split_views(scene, "train"), n_points=200)
    assert len(cloud.points) == 200
    distance = _solids_distance(torch.as_tensor(cloud.points)).abs()
    print(f"exact field's points: median {float(distance.median()):.4f}, max {float(distance.max()):.4f}")
    assert float(distance.max()) < 0.25 * POINT_BOUND
    denser = export.extract_points(solids_run, split_views(scene, "train"), n_points=200,
                                   threshold=20 * export.DEFAULT_THRESHOLD)
    assert float(_solids_distance(torch.as_tensor(denser.points)).abs().median()) > POINT_BOUND


def test_rays_become_opaque_at_the_surface_of_a_known_field(solids_run):
    origins = torch.tensor([[-0.3, -0.25, 3.0], [-1.4, 1.4, 3.0]])  # above the sphere; past everything
    directions = torch.tensor([[0.0, 0.0, -1.0]] * 2)
    t = export.opaque_distances(solids_run, origins, directions, near=0.0, far=6.0)
    # The sphere's top is 3.0 - (0.05 + 0.5) = 2.45 away; along the ray sigma is about
    # DEFAULT_THRESHOLD * exp(SHARPNESS * s) at depth s, whose optical depth reaches ln 2 at
    # s = ln(ln 2 * SHARPNESS / DEFAULT_THRESHOLD) / SHARPNESS (0.053).
    inside = math.log(math.log(2.0) * SHARPNESS / export.DEFAULT_THRESHOLD) / SHARPNESS
    assert float(t[0]) == pytest.approx(2.45 + inside, abs=0.004) and math.isinf(float(t[1]))
    faint = export.opaque_distances(solids_run, origins[:1], directions[:1], near=0.0, far=2.0)
    assert math.isinf(float(faint[0]))


def test_the_volume_round_trips(solids_run, tmp_path):
    path = tmp_path / "volume.npz"
    grid = export.write_volume(solids_run, path, resolution=24)
    data = np.load(path)
    assert data["density"].shape == grid.shape and data["rgb"].shape == (*grid.shape, 3)
    assert float(data["voxel_size"]) == pytest.approx(grid.voxel_size)
    np.testing.assert_allclose(data["box"][1], data["box"][0] + data["voxel_size"] * (np.array(grid.shape) - 1))
    i, j, k = 10, 7, 12
    x = torch.as_tensor(data["box"][0] + data["voxel_size"] * np.array([i, j, k]), dtype=torch.float32)[None]
    assert data["density"][i, j, k] == pytest.approx(float(solids_run.field.density(x)), rel=1e-4)
    solid = data["density"] >= float(data["rgb_threshold"])
    assert solid.any() and np.all(data["rgb"][~solid] == 0) and np.all(data["rgb"][solid].max(-1) > 0)


def test_a_resolution_that_does_not_fit_is_refused_before_allocating(solids_run, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": (2**30, "in RAM"))
    monkeypatch.setattr(export, "sample_density", None)  # never reached
    with pytest.raises(NotEnoughMemory, match="resolution 4096 needs about .* GiB of memory, more than the 1.0 GiB available"):
        export.extract_mesh(solids_run, resolution=4096)
    with pytest.raises(NotEnoughMemory, match="resolution 2048 needs about"):
        export.write_volume(solids_run, "/tmp/never.npz", resolution=2048)


def test_the_cli_default_threshold_is_the_library_s():
    assert CLI_DEFAULT_THRESHOLD == export.DEFAULT_THRESHOLD


# --- trained runs -------------------------------------------------------------------------------

#: The runs below train in about 2.5 minutes on 2 shared CPU cores. Their meshes at resolution
#: 64, the faces the training views see, lie within 1% of the box of the demo surface (measured:
#: hash 500 steps 0.85%, its grid student 300 steps 0.84%; 1000 and 500 steps gave 0.82% and
#: 0.81%, 3000 hash steps 0.85%: 40x40 views limit them, not training); the meshes of a threshold
#: 20x off or of swapped axes miss it by more.
@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory):
    """The demo scene at 40x40 pixels, 24 training views."""
    return demo.write_demo_scene(tmp_path_factory.mktemp("export_scene") / "scene", size=40, n_train=24,
                                 n_val=1, n_test=1)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory, demo_scene):
    """A hash run trained briefly on the demo scene and a grid student distilled from it."""
    root = tmp_path_factory.mktemp("export_runs")
    scene = demo_scene
    train(data=scene, model="hash", out=root / "hash",
          field_overrides={"log2_table_size": 14, "n_levels": 8, "finest_resolution": 256},
          train_overrides={"steps": 500, "batch_rays": 1024, "val_every": 0, "checkpoint_every": 0,
                           "grid_resolution": 64, "grid_warmup_steps": 64, "marching": {"steps_across_box": 256}})
    distill(source="hash", target="grid", teacher=root / "hash", out=root / "grid",
            student_overrides={"resolution": 64},
            distill_overrides={"steps": 300, "batch_rays": 512, "val_every": 0, "checkpoint_every": 0,
                               "val_views": 1, "val_size": 24, "virtual_cameras": 40})
    return {"scene": scene, "hash": root / "hash", "grid": root / "grid"}


@pytest.fixture(scope="module")
def demo_truth():
    return {"everywhere": _traced_surface(60000, (-89.0, 89.0), 1), "seen": _traced_surface(30000, (5.0, 80.0), 0)}


@pytest.mark.parametrize("model", ["hash", "grid"])
def test_the_mesh_of_a_trained_run_is_near_the_demo_surface(demo_runs, demo_truth, model):
    run = load_run(demo_runs[model])
    views = split_views(demo_runs["scene"], "train")

    def chamfer(samples: torch.Tensor) -> float:
        return _chamfer(samples, demo_truth["everywhere"], demo_truth["seen"])

    samples = _mesh_samples(export.extract_mesh(run, resolution=64, views=views, min_component_faces=300))
    print(f"{model}: Chamfer {chamfer(samples):.4f} ({chamfer(samples) / BOX_SIZE:.2%} of the box), "
          f"transposed {chamfer(samples[:, [1, 0, 2]]):.4f}")
    assert chamfer(samples) < MESH_BOUND < chamfer(samples[:, [1, 0, 2]])
    # A threshold 20x off either misses the surface or finds none at all.
    try:
        dense = export.extract_mesh(run, resolution=64, views=views, threshold=20 * export.DEFAULT_THRESHOLD)
    except OptionValueError as error:
        assert "no surface" in str(error)
    else:
        assert chamfer(_mesh_samples(dense)) > MESH_BOUND


def test_points_of_a_trained_run_are_near_the_demo_surface(demo_runs, demo_truth):
    cloud = export.extract_points(load_run(demo_runs["hash"]), split_views(demo_runs["scene"], "train"),
                                  n_points=20000)
    distance = _nearest(torch.as_tensor(cloud.points), demo_truth["everywhere"])
    print(f"points: {len(cloud.points)}, distance mean {float(distance.mean()):.4f}, "
          f"median {float(distance.median()):.4f}, 99th percentile {float(distance.quantile(0.99)):.4f}, "
          f"max {float(distance.max()):.4f}")
    # Measured (hash, 500 steps): 4600-4700 points, median 0.020, 99th percentile 0.066, farthest
    # 0.22-0.28 (a 1000-step run: 1.66 keeping the pixels whose rays cross faint floaters
    # without becoming opaque).
    # The farthest points are where the run's own surface is off (seen alike by 3 or more
    # views): every point within 2% is not met at 40x40 views.
    assert len(cloud.points) > 3000 and float(distance.median()) < POINT_BOUND
    assert float(distance.quantile(0.99)) < 2 * POINT_BOUND and float(distance.max()) < 0.2 * BOX_SIZE
    # y and z swapped (x and y nearly mirror this scene): measured median 0.12.
    swapped = _nearest(torch.as_tensor(cloud.points)[:, [0, 2, 1]], demo_truth["everywhere"])
    assert float(swapped.median()) > POINT_BOUND


# --- unbounded scenes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unbounded_run(tmp_path_factory):
    """A grid run of the unbounded demo after a few steps (its occupancy grid still all occupied)."""
    root = tmp_path_factory.mktemp("export_unbounded")
    scene = demo.write_unbounded_demo(root / "scene", size=8, n_train=4, n_val=1, n_test=1)
    train(data=scene, model="grid", out=root / "grid", field_overrides={"resolution": 16},
          train_overrides={"steps": 2, "batch_rays": 64, "val_every": 0, "checkpoint_every": 0,
                           "grid_resolution": 16})
    return root / "grid"


def test_an_unbounded_scene_exports_its_inner_region_unless_a_box_is_given(unbounded_run, tmp_path):
    run = load_run(unbounded_run)
    assert run.grid.contracted and float(run.grid.aabb[1, 0]) == 2.0
    np.testing.assert_array_equal(export.export_box(run), [[-1.0] * 3, [1.0] * 3])
    volume = tmp_path / "volume.npz"
    assert _invoke("--run", unbounded_run, "--format", "volume", "--out", volume, "--resolution", 9).exit_code == 0
    np.testing.assert_allclose(np.load(volume)["box"], [[-1.0] * 3, [1.0] * 3])
    result = _invoke("--run", unbounded_run, "--format", "volume", "--out", volume, "--resolution", 7,
                     "--box", "-0.5,-0.25,0,0.5,0.25,1.5")
    assert result.exit_code == 0, result.output
    data = np.load(volume)
    np.testing.assert_allclose(data["box"], [[-0.5, -0.25, 0.0], [0.5, 0.25, 1.5]], atol=1e-9)
    assert data["density"].shape == (5, 3, 7)


# --- the command --------------------------------------------------------------------------------

def _invoke(*args):
    return CliRunner().invoke(main, ["--arch", "cpu", "export", *map(str, args)])


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_export_writes_a_mesh_that_trimesh_loads(demo_runs, tmp_path, suffix):
    out = tmp_path / f"mesh{suffix}"
    result = _invoke("--run", demo_runs["grid"], "--format", "mesh", "--out", out, "--resolution", 48,
                     "--min-faces", 50)
    assert result.exit_code == 0, result.output
    loaded = trimesh.load(out, process=False, force="mesh")
    assert isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) > 100
    assert loaded.faces.max() < len(loaded.vertices) and np.isfinite(loaded.vertices).all()
    assert loaded.visual.vertex_colors.shape == (len(loaded.vertices), 4)
    assert loaded.is_winding_consistent


def test_export_writes_points_and_a_volume(demo_runs, tmp_path):
    points = tmp_path / "points.ply"
    result = _invoke("--run", demo_runs["hash"], "--format", "points", "--out", points, "--views", "orbit",
                     "--frames", 2, "--points", 500)
    assert result.exit_code == 0, result.output
    assert 0 < len(trimesh.load(points).vertices) <= 500
    volume = tmp_path / "volume.npz"
    result = _invoke("--run", demo_runs["hash"], "--format", "volume", "--out", volume, "--resolution", 16)
    assert result.exit_code == 0, result.output
    assert np.load(volume)["density"].shape[0] <= 16


@pytest.mark.parametrize("args, words", [
    (["--run", "{tmp}/nothing", "--format", "volume", "--out", "{tmp}/v.npz"], "does not exist"),
    (["--run", "{hash}", "--format", "mesh", "--out", "{tmp}/missing/m.ply"], "--out"),
    (["--run", "{hash}", "--format", "mesh", "--out", "{tmp}/m.npz"], "--out"),
    (["--run", "{hash}", "--format", "volume", "--out", "{tmp}/v.npz", "--resolution", "100000"], "--resolution"),
    (["--run", "{hash}", "--format", "mesh", "--out", "{tmp}/m.ply", "--resolution", "16", "--threshold", "1e30"],
     "no surface"),
])
def test_bad_input_gets_one_error_line(demo_runs, tmp_path, args, words):
    args = [a.format(tmp=tmp_path, hash=demo_runs["hash"]) for a in args]
    result = _invoke(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0]


def test_mesh_export_without_its_libraries_says_how_to_install_them(demo_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mcubes", None)
    result = _invoke("--run", demo_runs["hash"], "--format", "mesh", "--out", tmp_path / "m.ply")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'Error: exporting a mesh needs PyMCubes: pip install "taichi-pvd[export]" (or pip install PyMCubes)']
