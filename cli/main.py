"""``pvd-ti``: the command line of taichi-pvd. It parses options and calls the library.

Exit codes:

- 0: success;
- 1: a bug (an unexpected exception, shown with its traceback);
- 2: a usage error, or a problem with the user's input or environment
  (:class:`taichi_pvd.errors.PvdError`), printed as one line ``Error: <message>`` worded with
  the command's flags (:mod:`.error_messages`);
- 130: interrupted with Ctrl-C; 143: stopped by SIGTERM (a run saves its checkpoint first).

A file-system refusal the user can fix (full disk, read-only mount, no permission) is a user
error wherever it happens (:mod:`taichi_pvd.io.storage`).

This module and the command modules import only click, rich and the library's light modules;
each command imports what it needs (Taichi, torch) when it runs, so that ``pvd-ti --help``
answers at once.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

import taichi_pvd
from taichi_pvd import backend
from taichi_pvd.errors import PvdError, RunTerminated

from .batch_command import batch
from .demo_command import demo
from .error_messages import user_message
from .export_command import export
from .run_commands import distill, train
from .view_commands import eval_, info, render
from .viewer_command import view

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: Where ``pvd-ti train`` and ``pvd-ti distill`` put their run folders by default.
RUNS_DIR = Path("runs")

_ARCHS = ("auto", "cpu", "cuda")


class UserError(click.ClickException):
    """A :class:`PvdError` on its way to the terminal: ``Error: <message>``, exit code 2."""

    exit_code = EXIT_USER_ERROR


class PvdGroup(click.Group):
    """The error boundary: user errors become one line, Ctrl-C a short message; bugs propagate."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PvdError as err:
            raise UserError(user_message(err, self._command(ctx))) from err
        except RunTerminated:
            click.echo("Terminated.", err=True)
            raise click.exceptions.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Exception as err:
            from taichi_pvd.io.storage import storage_error

            refusal = storage_error(err)
            if refusal is None:
                raise
            raise UserError(user_message(refusal, self._command(ctx))) from err

    def _command(self, ctx: click.Context) -> click.Command | None:
        name = ctx.invoked_subcommand
        return self.get_command(ctx, name) if name else None


@click.group(cls=PvdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(taichi_pvd.__version__, "--version", prog_name="pvd-ti")
@click.option(
    "--arch",
    type=click.Choice(_ARCHS, case_sensitive=False),
    default="auto",
    envvar="PVD_ARCH",
    show_default=True,
    show_envvar=True,
    help="Compute backend for Taichi and torch: auto picks CUDA when a GPU is visible.",
)
@click.option("--verbose", is_flag=True,
              help="Also show Taichi's own start-up lines ([Taichi] version ..., Starting on arch=...).")
@click.pass_context
def main(ctx: click.Context, arch: str, verbose: bool) -> None:
    """taichi-pvd: train neural radiance fields (hash, vm, mlp, grid) with Taichi kernels and
    convert between them by Progressive Volume Distillation."""
    arch = arch.lower()
    ctx.ensure_object(dict)["arch"] = arch
    os.environ["PVD_ARCH"] = arch
    backend.set_verbose(verbose)


main.add_command(render)
main.add_command(eval_)
main.add_command(info)
main.add_command(export)
main.add_command(view)


main.add_command(train)
main.add_command(distill)
main.add_command(demo)
main.add_command(batch)


@main.group(cls=PvdGroup)
def scene() -> None:
    """Create scenes."""


@scene.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the scene into.",
)
@click.option("--size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Image width and height in pixels.")
@click.option("--n-train", type=click.IntRange(min=1), default=60, show_default=True,
              help="Number of training views.")
@click.option("--n-val", type=click.IntRange(min=1), default=8, show_default=True,
              help="Number of validation views.")
@click.option("--n-test", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of test views.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the cameras and rendering.")
def scene_demo(out_dir: Path, size: int, n_train: int, n_val: int, n_test: int, seed: int) -> None:
    """Render the built-in procedural scene to a transforms.json folder."""
    from taichi_pvd.data.demo import write_demo_scene

    path = write_demo_scene(
        out_dir, size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed
    )
    click.echo(
        f"Demo scene ({n_train} train, {n_val} val, {n_test} test views of {size}x{size}) "
        f"written to {path}"
    )


@scene.command("forward-facing")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the scene into (LLFF layout: images/ and poses_bounds.npy).")
@click.option("--width", type=click.IntRange(min=1), default=64, show_default=True, help="Image width in pixels.")
@click.option("--height", type=click.IntRange(min=1), default=48, show_default=True, help="Image height in pixels.")
@click.option("--rows", type=click.IntRange(min=1), default=3, show_default=True, help="Rows of the camera grid.")
@click.option("--cols", type=click.IntRange(min=1), default=5, show_default=True, help="Columns of the camera grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the rendering.")
def scene_forward_facing(out_dir: Path, width: int, height: int, rows: int, cols: int, seed: int) -> None:
    """Render the built-in objects as a forward-facing (LLFF) capture: a grid of cameras facing
    a table top in front of a wall. Every 8th view is held out for testing."""
    from taichi_pvd.data.demo import write_forward_facing_demo

    path = write_forward_facing_demo(out_dir, width=width, height=height, rows=rows, cols=cols, seed=seed)
    click.echo(f"Forward-facing demo scene ({rows * cols} views of {width}x{height}) written to {path}")


@scene.command("unbounded")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the scene into (transforms_{train,val,test}.json and images).")
@click.option("--size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Image width and height in pixels.")
@click.option("--n-train", type=click.IntRange(min=2), default=60, show_default=True, help="Number of training views.")
@click.option("--n-val", type=click.IntRange(min=1), default=8, show_default=True, help="Number of validation views.")
@click.option("--n-test", type=click.IntRange(min=1), default=16, show_default=True, help="Number of test views.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the cameras and rendering.")
def scene_unbounded(out_dir: Path, size: int, n_train: int, n_val: int, n_test: int, seed: int) -> None:
    """Render the built-in objects as an unbounded 360-degree capture: a ring of cameras around
    them inside a far sky sphere, written as transforms.json marked "unbounded": true (loaded
    normalised into the unit cube, the background contracted)."""
    from taichi_pvd.data.demo import write_unbounded_demo

    path = write_unbounded_demo(out_dir, size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    click.echo(
        f"Unbounded demo scene ({n_train} train, {n_val} val, {n_test} test views of {size}x{size}) "
        f"written to {path}"
    )


def _folder_summary(folder: Path) -> str:
    if not folder.is_dir():
        return f"{folder} (does not exist yet)"
    files = [p for p in folder.rglob("*") if p.is_file()]
    if not files:
        return f"{folder} (empty)"
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    return f"{folder} ({len(files)} files, {megabytes:.1f} MiB)"


def _taichi_rows() -> tuple[list[tuple[str, str]], bool]:
    """Taichi's version, the backend it starts on and its offline kernel cache; and whether
    Taichi started."""
    import taichi as ti
    from taichi.lang import impl

    version = ".".join(str(part) for part in ti.__version__)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arch = backend.init()
        except Exception as err:  # noqa: BLE001 - a diagnostic reports every failure
            return [("taichi", version), ("taichi backend", f"failed to start: {err}")], False
    notes = "; ".join(str(w.message) for w in caught)
    cache = Path(impl.current_cfg().offline_cache_file_path)
    rows = [
        ("taichi", version),
        ("taichi backend", arch + (f" ({notes})" if notes else "")),
        ("taichi kernel cache", _folder_summary(cache)),
    ]
    return rows, True


def _torch_rows(taichi_started: bool) -> list[tuple[str, str]]:
    """torch's version, the device the library would use, and the GPU torch sees."""
    import torch

    device = str(backend.device()) if taichi_started else "unknown (Taichi did not start)"
    rows = [("torch", torch.__version__), ("torch device", device)]
    if not torch.cuda.is_available():
        rows.append(("GPU", "none visible to torch (CPU only)"))
        return rows
    free, total = torch.cuda.mem_get_info(0)
    rows.append(("GPU", f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"))
    rows.append(("GPU memory", f"{total / 2**30:.1f} GiB total, {free / 2**30:.1f} GiB free"))
    return rows


@main.command()
def doctor() -> None:
    """Report versions, backend, GPU, kernel cache and runs folder.

    Starts Taichi on the backend that ``--arch`` selects, as every other command would."""
    taichi_rows, taichi_started = _taichi_rows()
    rows = [
        ("taichi-pvd", taichi_pvd.__version__),
        ("python", sys.version.split()[0]),
        *taichi_rows,
        *_torch_rows(taichi_started),
        ("runs folder", _folder_summary(RUNS_DIR.resolve())),
    ]
    table = Table(title="pvd-ti doctor", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    for item, value in rows:
        table.add_row(item, value)
    Console().print(table)
