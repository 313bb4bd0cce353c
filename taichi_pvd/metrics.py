"""Image quality metrics used in the NeRF literature: PSNR and SSIM.

Both take images with values in ``[0, 1]`` (torch tensors on any device, or numpy arrays),
compute in float64 and return a Python float.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: SSIM constants of the NeRF literature (Wang et al. 2004, as in mip-NeRF / JaxNeRF).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_float64(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a torch tensor or numpy array, got {type(image).__name__}")
    return image.detach().to(torch.float64)


def _check_same_shape(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )


def psnr(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    *,
    max_val: float = 1.0,
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(max_val^2 / MSE)``.

    Args:
        pred: predicted colours, any shape (``[..., H, W, 3]`` images or flat ``[N, 3]``
            pixels), values in ``[0, max_val]``.
        target: reference colours, same shape as ``pred``.
        max_val: the largest possible value (1.0 for colours in ``[0, 1]``).

    Returns:
        PSNR in dB over all elements; ``inf`` when the images are identical.

    Raises:
        ValueError: the shapes differ or the inputs are empty.
    """
    pred64, target64 = _as_float64(pred), _as_float64(target)
    _check_same_shape(pred64, target64)
    if pred64.numel() == 0:
        raise ValueError("cannot compute PSNR of empty images")
    mse = torch.mean((pred64 - target64.to(pred64.device)) ** 2).item()
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_val**2 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps centred on the middle tap, float64 ``[size]``."""
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def _blur_valid(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur without padding: ``[C, 1, H, W] -> [C, 1, H-k+1, W-k+1]``."""
    size = window.numel()
    rows = F.conv2d(images, window.view(1, 1, size, 1))
    return F.conv2d(rows, window.view(1, 1, 1, size))


def ssim(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    *,
    max_val: float = 1.0,
) -> float:
    """Structural similarity of two images as defined in the NeRF literature.

    An 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, each colour channel separately,
    "valid" convolution (no padding), and the mean of the SSIM map over pixels and channels;
    identical to the mip-NeRF / JaxNeRF ``compute_ssim`` (including its clipping of the
    variances at zero and of the covariance to ``sqrt(var_pred * var_target)``).

    Args:
        pred: predicted image ``[H, W, C]`` (C is usually 3), values in ``[0, max_val]``.
        target: reference image, same shape.
        max_val: the dynamic range of the values.

    Returns:
        SSIM in ``[-1, 1]``; 1 for identical images.

    Raises:
        ValueError: the shapes differ, are not ``[H, W, C]``, or ``H`` or ``W`` is smaller
            than the 11-pixel window.
    """
    pred64, target64 = _as_float64(pred), _as_float64(target)
    _check_same_shape(pred64, target64)
    if pred64.dim() != 3:
        raise ValueError(f"SSIM needs [H, W, C] images, got shape {tuple(pred64.shape)}")
    height, width, _ = pred64.shape
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
            f"got {height}x{width}"
        )
    x = pred64.permute(2, 0, 1).unsqueeze(1)
    y = target64.to(pred64.device).permute(2, 0, 1).unsqueeze(1)
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, pred64.device)

    mu_x = _blur_valid(x, window)
    mu_y = _blur_valid(y, window)
    var_x = torch.clamp(_blur_valid(x * x, window) - mu_x**2, min=0.0)
    var_y = torch.clamp(_blur_valid(y * y, window) - mu_y**2, min=0.0)
    cov = _blur_valid(x * y, window) - mu_x * mu_y
    cov = torch.sign(cov) * torch.minimum(torch.sqrt(var_x * var_y), cov.abs())

    c1 = (SSIM_K1 * max_val) ** 2
    c2 = (SSIM_K2 * max_val) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean().item()
