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

    def forward(self, features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """Features [N, 16] (column 0, raw density, is ignored) and unit directions [N, 3] ->
        RGB [N, 3] float32 in [0, 1]."""
        sh = sh_encode(directions.float().contiguous(), SH_BANDS)
        h = torch.cat([sh, features[:, 1 : 1 + GEOMETRY_FEATURES].to(sh.dtype)], dim=-1)
        return torch.sigmoid(self.net(h).float())
