"""``pvd-ti batch PLAN``: plans are checked before anything runs; the queue hands each job to
one worker, after its teacher, and hands a dead worker's job to another; under torchrun with a
worker killed halfway every job finishes exactly once, with the same table as one process
alone; a failing job is recorded and the others finish; a finished batch run again does nothing.

The torchrun and one-process runs are started as processes of their own with
``PVD_DETERMINISTIC=1`` (Taichi on one CPU thread), so that their PSNRs are bit-for-bit equal."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.distributed as dist

import taichi_pvd.batch.launch as launch_module
from taichi_pvd.batch import load_plan
from taichi_pvd.batch.graph import Job, JobGraph
from taichi_pvd.batch.launch import Launch
from taichi_pvd.batch.queue import DONE, FAILED, RUNNING, WAITING, JobQueue
from taichi_pvd.batch.summary import RESULTS_JSON, RESULTS_TABLE
from taichi_pvd.data import write_demo_scene
from taichi_pvd.errors import JobGraphError, PlanError, PvdError

from .cli_checks import assert_user_error, invoke

REPO = Path(__file__).resolve().parents[1]
#: Tiny fields and few steps: a job takes about a second on the CPU.
PLAN_HEAD = """\
[defaults]
preset = "cpu"
test_views = 1
train = { steps = 30, batch_rays = 128, grid_resolution = 16, val_every = 0, checkpoint_every = 10, seed = 0, marching = { steps_across_box = 64 } }
distill = { steps = 20, batch_rays = 128, val_every = 0, checkpoint_every = 10, val_views = 1, val_size = 16, virtual_cameras = 8, marching = { steps_across_box = 64 } }

[defaults.fields]
hash = { log2_table_size = 10, n_levels = 2, finest_resolution = 32 }
grid = { resolution = 16 }
"""
#: 2 teachers and 4 distillations on one scene.
MATRIX = PLAN_HEAD + """
[[scene]]
name = "demo"
data = "scene"

[[teacher]]
models = ["hash", "grid"]

[[distillation]]
pairs = ["hash:grid", "grid:hash", "hash:hash", "grid:grid"]
"""


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    """A folder holding a tiny demo scene (``scene/``) for plans to point at."""
    root = tmp_path_factory.mktemp("batch")
    write_demo_scene(root / "scene", size=24, n_train=8, n_val=1, n_test=2)
    return root


def write_plan(folder: Path, text: str, name: str = "plan.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def results(out: Path) -> dict[str, dict]:
    return {row["job"]: row for row in json.loads((out / RESULTS_JSON).read_text())["jobs"]}


# -- plans ---------------------------------------------------------------------------------------


def test_a_plan_lists_teachers_then_distillations_each_after_its_teacher(plan_dir):
    plan = load_plan(write_plan(plan_dir, MATRIX))
    names = [job.name for job in plan.jobs]
    assert names == ["demo/hash", "demo/grid", "demo/hash-to-grid", "demo/grid-to-hash", "demo/hash-to-hash",
                     "demo/grid-to-grid"]
    distillation = plan.jobs["demo/grid-to-hash"]
    assert distillation.depends_on == ("demo/grid",) and distillation.source == "grid" and distillation.model == "hash"
    assert distillation.fields == {"log2_table_size": 10, "n_levels": 2, "finest_resolution": 32}
    assert distillation.options["steps"] == 20 and plan.jobs["demo/hash"].options["steps"] == 30
    assert plan.jobs["demo/hash"].data == (plan_dir / "scene").resolve()


def test_all_pairs_are_every_teacher_into_every_architecture_and_layers_override(plan_dir):
    plan = load_plan(write_plan(plan_dir, PLAN_HEAD + """
        [[scene]]
        name = "demo"
        data = "scene"
        train = { steps = 12 }

        [[teacher]]
        models = ["hash", "grid"]
        train = { steps = 7 }

        [[distillation]]
        pairs = "all"
        fields = { grid = { resolution = 8 } }
        """))
    assert len(plan.jobs) == 2 + 8
    assert plan.jobs["demo/hash"].options["steps"] == 7
    assert plan.jobs["demo/hash"].options["marching"] == {"steps_across_box": 64}
    assert plan.jobs["demo/hash-to-grid"].fields == {"resolution": 8}
    assert plan.jobs["demo/grid"].fields == {"resolution": 16}


@pytest.mark.parametrize("body, fragment", [
    ("[[scene]]\nname = 'demo'\ndata = 'scene'\n[[teacher]]\nmodels = ['nerf']\n", "unknown architecture 'nerf'"),
    ("[[scene]]\nname = 'demo'\ndata = 'nowhere'\n[[teacher]]\nmodels = ['hash']\n", "data of scene demo is missing"),
    ("[[scene]]\nname = 'demo'\ndata = 'scene'\n[[teacher]]\nmodels = ['hash']\n[[teacher]]\nmodels = ['hash']\n",
     "two jobs are named demo/hash"),
    ("[[scene]]\nname = 'demo'\ndata = 'scene'\n[[teacher]]\nmodels = ['hash']\n[[distillation]]\npairs = ['vm:mlp']\n",
     "needs a vm teacher"),
    ("[[scene]]\nname = 'demo'\ndata = 'scene'\n[[teacher]]\nmodels = ['hash']\ntrain = { stepz = 3 }\n",
     "job demo/hash: unknown training option(s): stepz"),
    ("[[scene]]\nname = 'demo'\ndata = 'scene'\nmodels = ['hash']\n", "unknown key(s) models in [[scene]] #1"),
    ("[[scene]\n", "is not valid TOML"),
])
def test_a_bad_plan_is_one_error_line_naming_the_problem(plan_dir, body, fragment):
    path = write_plan(plan_dir, body, "bad.toml")
    with pytest.raises(PlanError, match="bad.toml"):
        load_plan(path)
    assert_user_error(invoke("--arch", "cpu", "batch", path, "--out", plan_dir / "never"), "bad.toml", fragment)
    assert not (plan_dir / "never").exists()


def test_jobs_waiting_for_each_other_are_refused():
    a = Job(name="s/a", scene="s", data=None, model="hash", depends_on=("s/b",))
    b = Job(name="s/b", scene="s", data=None, model="hash", depends_on=("s/a",))
    with pytest.raises(JobGraphError, match="cycle: s/a -> s/b -> s/a"):
        JobGraph([a, b])
    with pytest.raises(JobGraphError, match="depends on s/b, which is not in the batch"):
        JobGraph([a])


# -- the queue -----------------------------------------------------------------------------------


def _graph() -> JobGraph:
    teacher = Job(name="s/hash", scene="s", data=None, model="hash")
    return JobGraph([teacher, Job(name="s/hash-to-grid", scene="s", data=None, model="grid", source="hash",
                                  depends_on=("s/hash",))])


def test_two_workers_never_claim_the_same_job_and_a_student_waits_for_its_teacher():
    store, graph = dist.HashStore(), _graph()
    first, second = JobQueue(store, graph, rank=0), JobQueue(store, graph, rank=1)
    first.start(lambda job: False)
    second.start(lambda job: True)  # the states are already set: nothing changes
    assert first.claim().name == "s/hash"
    assert second.claim() is None  # the teacher is running, the student waits for it
    first.finish(first.graph["s/hash"])
    assert second.claim().name == "s/hash-to-grid" and first.claim() is None
    second.fail(graph["s/hash-to-grid"], "boom")
    assert first.settled() and {n: s.state for n, s in first.states().items()} == {"s/hash": DONE,
                                                                                  "s/hash-to-grid": FAILED}
    assert first.error("s/hash-to-grid") == "boom" and first.counter("completions", "s/hash") == 1


def test_a_failed_teacher_fails_its_students_without_running_them():
    store, graph = dist.HashStore(), _graph()
    queue = JobQueue(store, graph)
    queue.start(lambda job: False)
    queue.fail(queue.claim(), "no scene")
    assert queue.claim() is None and queue.settled()
    assert queue.error("s/hash-to-grid") == "not run: s/hash failed"


def test_the_job_of_a_worker_from_an_earlier_restart_of_the_node_is_claimed_again():
    store, graph = dist.HashStore(), _graph()
    dead = JobQueue(store, graph, node=0, restart=0)
    dead.start(lambda job: False)
    assert dead.claim().name == "s/hash"
    other_node = JobQueue(store, graph, node=1, restart=1)
    assert other_node.claim() is None  # another node's restarts say nothing of node 0's workers
    restarted = JobQueue(store, graph, node=0, restart=1)
    assert restarted.claim().name == "s/hash"
    assert restarted.counter("claims", "s/hash") == 2
    dead.finish(graph["s/hash"])  # a late word from the old claim changes nothing
    assert restarted.states()["s/hash"].state == RUNNING


def test_a_claim_whose_heartbeat_stops_is_claimed_again_after_the_lease():
    store, graph, now = dist.HashStore(), _graph(), [0.0]
    holder = JobQueue(store, graph, node=0)
    holder.start(lambda job: False)
    holder.claim()
    other = JobQueue(store, graph, node=1, clock=lambda: now[0], lease_s=10.0)
    assert other.claim() is None
    now[0] = 8.0
    store.add(f"beat/{holder.worker.number}", 1)  # alive: the lease starts again
    assert other.claim() is None
    now[0] = 17.0
    assert other.claim() is None
    now[0] = 18.5
    assert other.claim().name == "s/hash"


def test_a_released_job_waits_for_the_next_worker():
    store, graph = dist.HashStore(), _graph()
    queue = JobQueue(store, graph)
    queue.start(lambda job: False)
    queue.release(queue.claim())
    assert queue.states()["s/hash"].state == WAITING and queue.claim().name == "s/hash"


def test_a_worker_reads_torchruns_environment_and_takes_its_own_gpu():
    env = {"RANK": "5", "WORLD_SIZE": "8", "MASTER_ADDR": "node0", "MASTER_PORT": "29400", "LOCAL_RANK": "1",
           "GROUP_RANK": "1", "TORCHELASTIC_RESTART_COUNT": "2", "TORCHELASTIC_USE_AGENT_STORE": "True",
           "CUDA_VISIBLE_DEVICES": "4,6"}
    launch = Launch.from_environment(env)
    assert (launch.rank, launch.world_size, launch.local_rank, launch.node, launch.restart) == (5, 8, 1, 1, 2)
    assert launch.address == ("node0", 29400) and launch.agent_store and launch.distributed
    launch.pin_gpu(env)
    assert env["CUDA_VISIBLE_DEVICES"] == "6"
    alone = Launch.from_environment({"RANK": "0"})
    assert not alone.distributed and alone.connect() is not None


def test_an_unreachable_store_is_a_user_error(monkeypatch):
    monkeypatch.setattr(launch_module, "STORE_TIMEOUT", datetime.timedelta(seconds=1))
    with pytest.raises(PvdError, match=f"cannot reach the batch's store at 127.0.0.1:{(port := _free_port())}"):
        Launch(rank=1, world_size=2, address=("127.0.0.1", port)).connect()


# -- whole batches ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "PVD_DETERMINISTIC": "1", "PVD_ARCH": "cpu", **env}
    done = subprocess.run(args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_torchrun_with_a_killed_worker_finishes_every_job_once_with_the_table_of_one_process(plan_dir):
    plan = write_plan(plan_dir, MATRIX)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", "2",
                "--master-port", str(_free_port())]
    done = _run([*torchrun, str(REPO / "tests" / "batch_worker.py"), "batch", str(plan), "--out", "spread"],
                plan_dir, PVD_TEST_KILL_AFTER_CLAIM="demo/hash-to-grid")
    assert "exitcode: -9" in done.stderr  # the worker did die, and torchrun restarted the group
    spread = results(plan_dir / "spread")
    assert len(spread) == 6
    assert all(row["state"] == "done" and row["completions"] == 1 for row in spread.values()), spread
    assert spread["demo/hash-to-grid"]["claims"] == 2
    for row in spread.values():
        assert (plan_dir / row["run_dir"] / "checkpoint.pt").is_file()
    table = (plan_dir / "spread" / RESULTS_TABLE).read_text()
    assert table.count("| done |") == 6 and "| hash -> grid | 20 |" in table

    _run([sys.executable, "-m", "taichi_pvd_cli", "batch", str(plan), "--out", "alone"], plan_dir)
    alone = results(plan_dir / "alone")
    assert alone.keys() == spread.keys()
    for name, row in alone.items():
        assert row["completions"] == 1 and row["claims"] == 1
        for key in ("test_psnr_db", "teacher_test_psnr_db", "gap_db", "steps"):
            assert row.get(key) == spread[name].get(key), (name, key)

    checkpoint = plan_dir / "spread" / "demo" / "hash" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    again = _run([sys.executable, "-m", "taichi_pvd_cli", "batch", str(plan), "--out", "spread"], plan_dir)
    assert "start" not in again.stderr
    rerun = results(plan_dir / "spread")
    assert all(row["claims"] == 0 and row["state"] == "done" for row in rerun.values())
    assert {n: r["test_psnr_db"] for n, r in rerun.items()} == {n: r["test_psnr_db"] for n, r in spread.items()}
    assert checkpoint.stat().st_mtime_ns == written


def test_a_failing_job_is_recorded_and_the_others_finish(plan_dir):
    (plan_dir / "empty").mkdir(exist_ok=True)
    plan = write_plan(plan_dir, PLAN_HEAD + """
        [[scene]]
        name = "demo"
        data = "scene"

        [[scene]]
        name = "broken"
        data = "empty"

        [[teacher]]
        models = ["grid"]

        [[distillation]]
        pairs = ["grid:grid"]
        """, "failing.toml")
    out = plan_dir / "failing"
    assert_user_error(invoke("--arch", "cpu", "batch", plan, "--out", out), "2 of 4 jobs failed",
                      "broken/grid, broken/grid-to-grid", str(out / RESULTS_TABLE))
    rows = results(out)
    assert rows["demo/grid"]["state"] == rows["demo/grid-to-grid"]["state"] == "done"
    assert rows["demo/grid-to-grid"]["test_psnr_db"] > 0
    assert rows["broken/grid"]["state"] == "failed" and "empty" in rows["broken/grid"]["error"]
    assert rows["broken/grid-to-grid"]["error"] == "not run: broken/grid failed"
    assert "failed: not run: broken/grid failed" in (out / RESULTS_TABLE).read_text()
