"""Row counts rounded up to a few fixed sizes before the fields' matrix products.

The number of samples changes every step, and cuBLAS picks (and caches) its GEMM kernel per
matrix shape: with a new shape on every call, each product pays a fresh kernel selection on the
host. Padding the rows to a multiple of a power of two with at most 1/32 to 1/64 extra rows
leaves a few dozen shapes per doubling of the sample count, each selected once.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: Padding granularity is ``2^(bit_length(n) - _FRACTION_BITS)`` rows: under 1/32 extra rows.
_FRACTION_BITS = 6
_MIN_GRANULARITY = 256


def bucket_rows(n: int) -> int:
    """The padded row count for ``n`` rows: the next multiple of ``max(256, 2^(b - 6))``,
    with ``b`` the bit length of ``n`` (so at most ``n / 32`` extra rows); 0 stays 0."""
    if n <= 0:
        return 0
    granularity = max(_MIN_GRANULARITY, 1 << max(n.bit_length() - _FRACTION_BITS, 0))
    return -(-n // granularity) * granularity


def pad_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` [N, C] with zero rows appended up to :func:`bucket_rows` (N) rows (``x`` itself
    when no rows are needed); differentiable."""
    extra = bucket_rows(x.shape[0]) - x.shape[0]
    return F.pad(x, (0, 0, 0, extra)) if extra else x


def on_bucketed_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` for a row-wise ``fn`` on [N, C] rows, run on :func:`pad_rows` (x): the first N
    output rows, computed with few distinct matrix shapes; differentiable."""
    return fn(pad_rows(x))[: x.shape[0]]


class BucketedSequential(nn.Sequential):
    """``nn.Sequential`` over [N, C] rows run through :func:`on_bucketed_rows`: same parameters
    and state-dict keys, few distinct matrix shapes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - nn.Module protocol
        return on_bucketed_rows(super().forward, x)
