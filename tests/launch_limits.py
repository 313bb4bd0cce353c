"""Per-sample kernels under a lowered :data:`~taichi_pvd.kernels.index_limits.MAX_VALUES_PER_LAUNCH`:
which rows each launch of a kernel received.

Taichi indexes ndarrays and counts ``ndrange`` iterations in int32; a launch over 2^31 values or
more runs no iteration and leaves its output unwritten. Reaching that for real takes 8 GiB of
float32 output, so the tests lower the limit and record the rows each launch gets.
"""

from types import ModuleType

import pytest

from taichi_pvd.kernels import index_limits


def record_launch_rows(monkeypatch: pytest.MonkeyPatch, module: ModuleType, kernel_names: tuple[str, ...],
                       max_values: int) -> list[int]:
    """Lower the per-launch limit to ``max_values`` and wrap the kernels ``kernel_names`` of
    ``module`` (each taking the sample positions ``[N, 3]`` first); returns the list the row
    count of every launch is appended to."""
    monkeypatch.setattr(index_limits, "MAX_VALUES_PER_LAUNCH", max_values)
    rows: list[int] = []

    def recorded(kernel):
        def launch(x, *args):
            rows.append(x.shape[0])
            return kernel(x, *args)
        return launch

    for name in kernel_names:
        monkeypatch.setattr(module, name, recorded(getattr(module, name)))
    return rows


def assert_row_blocks(launched: list[int], n_rows: int, rows_per_launch: int) -> None:
    """The forward and the backward kernel each covered ``n_rows`` rows in blocks of at most
    ``rows_per_launch``: ``launched`` as :func:`record_launch_rows` recorded it."""
    blocks = -(-n_rows // rows_per_launch)
    assert len(launched) == 2 * blocks and max(launched) == rows_per_launch
    assert sum(launched) == 2 * n_rows
