"""The command-line shell: help, version, --arch, scene demo, doctor and the error boundary."""

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import taichi_pvd
from taichi_pvd_cli.main import main
from taichi_pvd.errors import SceneError



@pytest.fixture(autouse=True)
def _restore_arch(monkeypatch):
    """The CLI exports PVD_ARCH; keep the tests' CPU setting for everything run afterwards."""
    monkeypatch.setenv("PVD_ARCH", "cpu")


@pytest.fixture
def runner():
    return CliRunner()


def _add_command(monkeypatch, name, callback):
    monkeypatch.setitem(main.commands, name, click.Command(name, callback=callback))


def test_help_lists_every_subcommand(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("train", "distill", "render", "eval", "info", "scene", "doctor"):
        assert f"  {name} " in result.output
    assert "--arch [auto|cpu|cuda]" in result.output


def test_version_prints_the_package_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pvd-ti, version {taichi_pvd.__version__}"


def test_arch_is_stored_in_the_context_and_exported(runner, monkeypatch):
    _add_command(
        monkeypatch, "show-arch", click.pass_context(lambda ctx: click.echo(ctx.obj["arch"]))
    )
    monkeypatch.setenv("PVD_ARCH", "auto")
    result = runner.invoke(main, ["--arch", "CPU", "show-arch"])
    assert result.exit_code == 0 and result.output == "cpu\n"
    assert os.environ["PVD_ARCH"] == "cpu"


def test_arch_defaults_to_the_environment_variable(runner, monkeypatch):
    _add_command(
        monkeypatch, "show-arch", click.pass_context(lambda ctx: click.echo(ctx.obj["arch"]))
    )
    monkeypatch.setenv("PVD_ARCH", "cuda")
    assert runner.invoke(main, ["show-arch"]).output == "cuda\n"
    monkeypatch.setenv("PVD_ARCH", "gpu")
    result = runner.invoke(main, ["show-arch"])
    assert result.exit_code == 2 and "'gpu' is not one of" in result.stderr


def test_scene_demo_writes_a_loadable_scene(runner, tmp_path):
    from taichi_pvd.data import load_scene

    out = tmp_path / "demo"
    result = runner.invoke(
        main,
        ["scene", "demo", "--out", str(out), "--size", "16", "--n-train", "3", "--n-val", "1",
         "--n-test", "2"],
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    train = load_scene(out, "train")
    assert len(train) == 3 and train.height == 16 and train.width == 16
    assert len(load_scene(out, "test")) == 2
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0



def test_scene_forward_facing_writes_an_llff_scene_in_ndc(runner, tmp_path):
    from taichi_pvd.data import load_scene

    out = tmp_path / "ff"
    result = runner.invoke(main, ["scene", "forward-facing", "--out", str(out), "--width", "20", "--height", "16",
                                  "--rows", "3", "--cols", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "poses_bounds.npy").is_file()
    train, test = load_scene(out, "train"), load_scene(out, "test")
    assert len(train) + len(test) == 9 and len(test) == 2  # every 8th view held out
    assert train.ndc is not None and (train.width, train.height) == (20, 16)


def test_scene_unbounded_writes_a_contracted_transforms_scene(runner, tmp_path):
    from taichi_pvd.data import load_scene

    out = tmp_path / "ub"
    result = runner.invoke(main, ["scene", "unbounded", "--out", str(out), "--size", "12", "--n-train", "4",
                                  "--n-val", "1", "--n-test", "2"])
    assert result.exit_code == 0, result.output
    train, test = load_scene(out, "train"), load_scene(out, "test")
    assert (len(train), len(test), train.width) == (4, 2, 12)
    assert train.contraction is not None and test.contraction == train.contraction

def test_scene_demo_needs_an_output_folder(runner):
    result = runner.invoke(main, ["scene", "demo"])
    assert result.exit_code == 2 and "Missing option '--out'" in result.stderr


def test_user_errors_become_one_line_and_exit_2(runner, monkeypatch):
    def fail():
        raise SceneError("no transforms.json in /nowhere:\n  pass a scene folder")

    _add_command(monkeypatch, "boom", fail)
    result = runner.invoke(main, ["boom"])
    assert result.exit_code == 2
    assert result.stderr == "Error: no transforms.json in /nowhere: pass a scene folder\n"


def test_ctrl_c_exits_130_with_a_short_message(runner, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    _add_command(monkeypatch, "wait", interrupted)
    result = runner.invoke(main, ["wait"])
    assert result.exit_code == 130
    assert result.stderr == "Interrupted.\n"


def test_bugs_propagate_with_their_exception(runner, monkeypatch):
    def buggy():
        raise ZeroDivisionError("a bug")

    _add_command(monkeypatch, "bug", buggy)
    result = runner.invoke(main, ["bug"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ZeroDivisionError)


def test_doctor_reports_versions_backend_and_folders(runner, tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at 80 columns when not on a terminal
    result = runner.invoke(main, ["--arch", "cpu", "doctor"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()

    def row(item):
        return next(line for line in lines if f" {item} " in line)

    assert taichi_pvd.__version__ in row("taichi-pvd")
    assert "1.7.4" in row("taichi")
    assert "cpu" in row("taichi backend")
    assert "ticache" in row("taichi kernel cache")
    assert torch.__version__ in row("torch")
    assert "cpu" in row("torch device")
    assert f"{tmp_path / 'runs'} (does not exist yet)" in row("runs folder")


def test_taichi_banner_lines_appear_only_with_verbose(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ENABLE_TAICHI_HEADER_PRINT"}

    def doctor(*flags):
        done = subprocess.run([sys.executable, "-m", "taichi_pvd_cli", *flags, "--arch", "cpu", "doctor"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    quiet = doctor()
    assert "[Taichi]" not in quiet and "taichi backend" in quiet
    verbose = doctor("--verbose")
    assert "[Taichi] version 1.7.4" in verbose and "[Taichi] Starting on arch=" in verbose


def test_the_demo_commands_defaults_match_the_demo_job():
    from taichi_pvd.demo_job import DEFAULT_OUT, STUDENT_MODEL, TEACHER_MODEL

    params = {p.name: p for p in main.commands["demo"].params}
    assert params["out"].default == DEFAULT_OUT
    assert f"({TEACHER_MODEL})" in params["teacher_sets"].help
    assert f"({STUDENT_MODEL})" in params["student_sets"].help
