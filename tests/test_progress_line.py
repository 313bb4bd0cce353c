"""The progress line of training and distillation fits the terminal: on 80 columns the step,
loss, PSNR and speed stay whole; lower-value parts go first."""

import io

from rich.console import Console

from taichi_pvd.training.loop import Progress
from taichi_pvd_cli.progress import COMPILING, progress_display

TRAIN = Progress(step=1200, steps=2000, loss=0.0123, rays_per_second=52_300, samples_per_ray=45.3,
                 elapsed_s=83.0, eta_s=40.0, val_psnr_db=22.1, losses={"rgb": 0.00452})
DISTILL = Progress(step=21000, steps=30000, loss=0.00123, rays_per_second=1_234_567, samples_per_ray=12.3,
                   elapsed_s=3723.0, eta_s=4000.0, val_psnr_db=30.95, stage=2,
                   losses={"rgb": 0.00076, "feature": 0.0021, "density": 0.0004, "colour": 0.00075})


def _render(title, report, width):
    console = Console(width=width, record=True, file=io.StringIO())
    with progress_display(console, title) as display:
        if report is not None:
            display(report)
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines)
    return "\n".join(lines)


def test_an_80_column_training_line_keeps_step_loss_psnr_speed_and_eta():
    text = _render("train hash", TRAIN, 80)
    for part in ("1200/2000", "loss 1.23e-02", "psnr 23.45 dB", "52.3k rays/s", "val 22.10 dB", "eta 0:40"):
        assert part in text
    assert "…" not in text


def test_an_80_column_distillation_line_drops_the_named_losses_first():
    text = _render("distill hash->grid", DISTILL, 80)
    for part in ("21000/30000", "loss 1.23e-03", "psnr 31.19 dB", "1.23M rays/s"):
        assert part in text
    assert "feature" not in text and "…" not in text


def test_a_wide_terminal_shows_every_part():
    text = _render("distill hash->grid", DISTILL, 200)
    for part in ("distill hash->grid", "stage 2", "━", "feature 2.10e-03", "density 4.00e-04",
                 "colour 7.50e-04", "val 30.95 dB", "12.3 spp", "eta 1:06:40"):
        assert part in text


def test_the_line_says_kernels_compile_until_the_first_report():
    assert COMPILING in _render("train hash", None, 80)
