"""PSNR and SSIM against hand-computed values and a direct (slow) numpy SSIM."""

import math

import numpy as np
import pytest
import torch

from taichi_pvd.metrics import psnr, ssim


def _slow_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM with an explicit 11x11 window at every valid position, per channel, then the mean."""
    offsets = np.arange(11) - 5.0
    g = np.exp(-0.5 * (offsets / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    h, wd, channels = a.shape
    values = []
    for c in range(channels):
        for i in range(h - 10):
            for j in range(wd - 10):
                pa = a[i : i + 11, j : j + 11, c]
                pb = b[i : i + 11, j : j + 11, c]
                mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
                var_a = (w * (pa - mu_a) ** 2).sum()
                var_b = (w * (pb - mu_b) ** 2).sum()
                cov = (w * (pa - mu_a) * (pb - mu_b)).sum()
                values.append(
                    (2 * mu_a * mu_b + c1)
                    * (2 * cov + c2)
                    / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
                )
    return float(np.mean(values))


def test_psnr_of_constant_error_is_minus_ten_log10_of_its_square():
    target = torch.rand(2, 8, 9, 3, dtype=torch.float64) * 0.5
    for e in (0.1, 0.01, 0.25):
        assert psnr(target + e, target) == pytest.approx(-10 * math.log10(e**2), rel=1e-9)


def test_psnr_accepts_flat_pixels_float32_and_max_val():
    target = torch.zeros(100, 3)
    pred = torch.full((100, 3), 0.5)
    assert psnr(pred, target) == pytest.approx(-10 * math.log10(0.25), rel=1e-6)
    assert psnr(pred * 255, target, max_val=255.0) == pytest.approx(
        10 * math.log10(255.0**2 / (127.5**2)), rel=1e-6
    )


def test_psnr_of_identical_images_is_infinite():
    image = torch.rand(4, 4, 3)
    assert psnr(image, image) == math.inf


def test_ssim_of_identical_images_is_one():
    image = torch.rand(20, 17, 3, generator=torch.Generator().manual_seed(0))
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_matches_the_luminance_formula():
    # Constant images have zero variance and covariance: SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.55
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
    pred = torch.full((16, 16, 3), a, dtype=torch.float64)
    target = torch.full((16, 16, 3), b, dtype=torch.float64)
    assert ssim(pred, target) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_an_offset_image_matches_the_hand_formula():
    # y = x + d: variances and covariance are equal (s), means differ by d at each window, so
    # the contrast-structure term is exactly 1 and SSIM is the mean luminance term.
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.6, size=(13, 12, 3))
    d = 0.1
    offsets = np.arange(11) - 5.0
    g = np.exp(-0.5 * (offsets / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1 = 0.01**2
    terms = []
    for c in range(3):
        for i in range(3):
            for j in range(2):
                mu = (w * x[i : i + 11, j : j + 11, c]).sum()
                terms.append((2 * mu * (mu + d) + c1) / (mu**2 + (mu + d) ** 2 + c1))
    assert ssim(x + d, x) == pytest.approx(float(np.mean(terms)), rel=1e-10)


def test_ssim_matches_a_direct_numpy_implementation():
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(16, 14, 3))
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1)
    expected = _slow_ssim(a, b)
    assert ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(
        expected, abs=1e-6
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert expected < 0.95


def test_shape_mismatch_raises_value_error():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(torch.zeros(12, 12, 3), torch.zeros(12, 13, 3))


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(10, 30, 3), torch.zeros(10, 30, 3))
