"""Where a field still errs: a per-tile map of its recent rendering error over the image of
every camera (training views when training, virtual cameras when distilling), from which a
share of each batch's rays is drawn, so that rays go where the field is worst."""

from __future__ import annotations

import torch

#: Error of a tile no ray has visited yet: above any squared colour error, so that guided draws
#: visit every tile early.
UNSEEN_ERROR = 1.0
#: Weight of a step's mean error in a visited tile's moving average.
UPDATE_RATE = 0.5


class RayErrorMap:
    """Mean squared rendering error per tile: ``tiles x tiles`` tiles over the image of each of
    ``n_cameras`` cameras.

    :meth:`draw` takes ``guided_share`` of a batch's rays in proportion to the tiles' errors and
    the rest uniformly (a tile, then a uniform point in it, is a uniform pixel); :meth:`update`
    folds each visited tile's mean error of a step into its moving average.
    """

    def __init__(self, n_cameras: int, tiles: int, guided_share: float, device: torch.device):
        if n_cameras < 1 or tiles < 1 or not 0.0 <= guided_share <= 1.0:
            raise ValueError(f"need n_cameras >= 1, tiles >= 1 and 0 <= guided_share <= 1, got "
                             f"{n_cameras}, {tiles}, {guided_share}")
        self.tiles = tiles
        self.guided_share = guided_share
        self.errors = torch.full((n_cameras * tiles * tiles,), UNSEEN_ERROR, device=device)

    def draw(self, n: int, width: int, height: int,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` rays: their tile indices [n] (int64), camera indices [n] (int64) and continuous
        pixel coordinates ``(x, y)`` [n, 2] (float32, pixels of a ``width`` x ``height`` image)."""
        device = self.errors.device
        n_guided = round(n * self.guided_share)
        uniform = torch.randint(0, self.errors.numel(), (n - n_guided,), device=device, generator=generator)
        if n_guided:
            guided = torch.multinomial(self.errors.clamp(min=1e-12), n_guided, replacement=True, generator=generator)
            tile = torch.cat([uniform, guided])
        else:
            tile = uniform
        per_camera = self.tiles * self.tiles
        camera, within = tile // per_camera, tile % per_camera
        corner = torch.stack([within % self.tiles, within // self.tiles], dim=1).float()
        offset = torch.rand(n, 2, device=device, generator=generator)
        size = torch.tensor([width, height], device=device, dtype=torch.float32) / self.tiles
        return tile, camera, (corner + offset) * size

    def update(self, tile: torch.Tensor, rendered: torch.Tensor, target: torch.Tensor) -> None:
        """Fold the errors of rays in tiles ``tile`` [n], rendered as ``rendered`` [n, 3] where
        ``target`` [n, 3] was wanted (mean squared error over the channels), into the map (no
        host synchronisation). A non-finite error counts as an unseen tile's, so that a diverging
        run fails where the loop checks its parameters, not here."""
        error = (rendered.detach().float() - target.detach().float()).square().mean(dim=1)
        error = torch.nan_to_num(error, nan=UNSEEN_ERROR, posinf=UNSEEN_ERROR, neginf=0.0)
        sums = torch.zeros_like(self.errors).index_add_(0, tile, error)
        counts = torch.zeros_like(self.errors).index_add_(0, tile, torch.ones_like(error))
        means = sums / counts.clamp(min=1.0)
        self.errors = torch.where(counts > 0, torch.lerp(self.errors, means, UPDATE_RATE), self.errors)
