"""The colour head shared by the hash, vm and mlp fields (phi2).

SH encoding of the view direction (4 bands, 16 values) concatenated with the 15 geometry
features -> 64 -> 64 -> 3, sigmoid. Sharing it is what lets the 16-value features of any of the
three line up with no projection layer, and lets a student start from its teacher's head.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels.sh_encoding import sh_encode
from .row_buckets import BucketedSequential

#: Number of geometry features the head takes beside the direction encoding.
GEOMETRY_FEATURES = 15
SH_BANDS = 4


class ColourHead(nn.Module):
    """phi2 for the networked fields: ``rgb = sigmoid(MLP([SH(d), features[:, 1:16]]))``."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = BucketedSequential(
            nn.Linear(SH_BANDS**2 + GEOMETRY_FEATURES, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 3),
        )

    def forward(self, features: torch.Tensor, direction_sh: torch.Tensor) -> torch.Tensor:
        """Features [N, 16] (column 0, raw density, is ignored) and :func:`direction_sh` [N, 16]
        of the view directions -> RGB [N, 3] float32 in [0, 1]."""
        h = torch.cat([direction_sh, features[:, 1 : 1 + GEOMETRY_FEATURES].to(direction_sh.dtype)], dim=-1)
        return torch.sigmoid(self.net(h).float())


def direction_sh(directions: torch.Tensor) -> torch.Tensor:
    """The head's encoding of unit view directions [N, 3]: SH of 4 bands, [N, 16] float32."""
    return sh_encode(directions.float().contiguous(), SH_BANDS)


class HeadColour:
    """phi2 of the fields with the shared head (mixed into a :class:`RadianceField` that sets
    ``self.head``)."""

    head: ColourHead

    def direction_encoding(self, directions: torch.Tensor) -> torch.Tensor:  # noqa: D102 - RadianceField's
        return direction_sh(directions)

    def colour_from_encoding(self, features: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(features, encoding)
