"""Pseudo-label blocks: rays cut whole into fixed-size chunks, and the torch compositor the
distillation step uses on them, against the Taichi compositor."""

import pytest
import torch

from taichi_pvd.distill.label_blocks import (LabelChunk, block_slots, chunk_capacity, chunk_layout, kept_samples,
                                             pack_block)
from taichi_pvd.kernels.compositing import composite
from taichi_pvd.kernels.marching import PackedSamples
from taichi_pvd.rendering.slot_compositing import composite_slots


def packed(counts: list[int], generator: torch.Generator) -> PackedSamples:
    """Packed samples of rays with ``counts`` samples, at increasing ``t``."""
    ray_counts = torch.tensor(counts, dtype=torch.int32)
    n = int(ray_counts.sum())
    ray_indices = torch.repeat_interleave(torch.arange(len(counts), dtype=torch.int32), ray_counts.long())
    dt = 0.02 + 0.1 * torch.rand(n, generator=generator)
    return PackedSamples(
        ray_indices=ray_indices,
        ray_starts=(torch.cumsum(ray_counts, 0) - ray_counts).int(),
        ray_counts=ray_counts,
        t=torch.cumsum(dt, 0),
        dt=dt,
        positions=torch.rand(n, 3, generator=generator),
        directions=torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=1),
    )


def labels_at(samples: PackedSamples, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample labels of the kept samples ``index``: positions, directions as their
    encoding, and made-up teacher features."""
    return {"positions": samples.positions[index], "direction_encoding": samples.directions[index],
            "teacher_features": samples.t[index, None].expand(-1, 16)}


COUNTS = [3, 0, 7, 1, 5, 9, 2, 0, 4, 6, 1, 8, 3, 3, 12, 2]


def test_rays_are_cut_whole_into_chunks_with_dense_slots():
    samples = packed(COUNTS, torch.Generator().manual_seed(0))
    n_chunks, capacity, max_rays = 4, 16, 3
    layout = chunk_layout(samples.ray_counts, n_chunks, capacity, max_rays)
    index = kept_samples(samples, layout)
    block = pack_block(samples, layout, index, n_chunks, capacity, max_rays,
                       labels_at(samples, index), {"background": torch.rand(len(COUNTS), 3)})
    labels = block.labels
    starts = samples.ray_starts.long()
    for ray, count in enumerate(COUNTS):
        first, last = int(starts[ray]), int(starts[ray]) + count
        chunk = first // capacity
        fits = count > 0 and last <= (chunk + 1) * capacity and chunk < n_chunks
        assert bool(layout.kept[ray]) == (fits and int(layout.slot[ray]) < max_rays)
        if not layout.kept[ray]:
            continue
        # Each sample keeps its packed index, inside its ray's chunk, and knows its ray's start.
        rows = torch.arange(first, last)
        assert int(layout.chunk[ray]) == chunk
        assert torch.equal(labels.positions[rows], samples.positions[first:last])
        assert torch.equal(labels.teacher_features[rows, 0], samples.t[first:last])
        assert torch.equal(labels.first_sample[rows], torch.full((count,), first - chunk * capacity))
        assert torch.equal(labels.ray_slot[rows], torch.full((count,), int(layout.slot[ray])))
        assert bool((labels.sample_weight[rows] == 1).all())
    # Slots of each chunk are 0, 1, 2, ... over its kept rays, in order.
    for chunk in range(n_chunks):
        mine = layout.kept & (layout.chunk == chunk)
        assert layout.slot[mine].tolist() == list(range(int(mine.sum())))
    padding = labels.sample_weight == 0
    assert bool((labels.ray_slot[padding] == max_rays).all()) and bool((labels.dt[padding] == 0).all())
    assert block.counts == [(int(labels.sample_weight[k * capacity:(k + 1) * capacity].sum()),
                             int(labels.ray_weight[k * max_rays:(k + 1) * max_rays].sum())) for k in range(n_chunks)]
    chunk = block.chunk(1)
    assert chunk.positions.shape == (capacity, 3) and chunk.background.shape == (max_rays, 3)


def test_chunk_capacity_is_the_mean_rounded_up_to_a_matrix_friendly_count():
    assert chunk_capacity(10_000, 4) == 2560
    assert chunk_capacity(0, 4) == 256
    assert chunk_capacity(1 << 20, 8) == 1 << 17


def test_copied_labels_keep_their_buffers():
    values = LabelChunk(*(torch.rand(4) for _ in range(9)))
    buffers = values.copy_to(None)
    addresses = buffers.positions.data_ptr()
    again = LabelChunk(*(torch.rand(4) for _ in range(9)), teacher_rgb=torch.rand(4))
    assert again.copy_to(buffers) is buffers
    assert buffers.positions.data_ptr() == addresses
    assert torch.equal(buffers.positions, again.positions) and torch.equal(buffers.teacher_rgb, again.teacher_rgb)


@pytest.mark.parametrize("seed", [0, 1])
def test_slot_compositing_matches_the_taichi_compositor_and_its_gradients(seed):
    generator = torch.Generator().manual_seed(seed)
    samples = packed(COUNTS, generator)
    n_chunks, capacity, max_rays = 3, 32, 8
    layout = chunk_layout(samples.ray_counts, n_chunks, capacity, max_rays)
    index = kept_samples(samples, layout)
    block = pack_block(samples, layout, index, n_chunks, capacity, max_rays, labels_at(samples, index),
                       {"background": torch.ones(len(COUNTS), 3)})
    first, slot = block_slots(block)
    sigma = (5.0 * torch.rand(samples.n_samples, generator=generator, dtype=torch.float64)).float()
    rgb = torch.rand(samples.n_samples, 3, generator=generator)
    weights = torch.rand(n_chunks * max_rays, 3, generator=generator)

    # The Taichi compositor on the kept rays, every sample composited.
    kept_rays = torch.nonzero(layout.kept).squeeze(1)
    rows = index
    s_ref, c_ref = sigma[rows].clone().requires_grad_(), rgb[rows].clone().requires_grad_()
    counts = samples.ray_counts[kept_rays]
    colour_ref, _, opacity_ref = composite(s_ref, c_ref, samples.dt[rows], samples.t[rows],
                                           (torch.cumsum(counts, 0) - counts).int(), counts,
                                           transmittance_threshold=0.0)
    ray_dest = layout.chunk[kept_rays] * max_rays + layout.slot[kept_rays]
    ((colour_ref + opacity_ref[:, None]) * weights[ray_dest]).sum().backward()

    s_new = torch.zeros(n_chunks * capacity)
    c_new = torch.zeros(n_chunks * capacity, 3)
    s_new[rows], c_new[rows] = sigma[rows], rgb[rows]
    s_new.requires_grad_(), c_new.requires_grad_()
    colour, opacity = composite_slots(s_new, c_new, block.labels.dt, first, slot, n_chunks * max_rays)
    ((colour + opacity[:, None]) * weights).sum().backward()

    torch.testing.assert_close(colour[ray_dest], colour_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opacity[ray_dest], opacity_ref, rtol=1e-5, atol=1e-6)
    empty = torch.ones(n_chunks * max_rays, dtype=torch.bool)
    empty[ray_dest] = False
    assert bool((colour[empty] == 0).all()) and bool((opacity[empty] == 0).all())
    torch.testing.assert_close(s_new.grad[rows], s_ref.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(c_new.grad[rows], c_ref.grad, rtol=1e-5, atol=1e-6)
    padding = block.labels.sample_weight == 0
    assert bool((s_new.grad[padding] == 0).all()) and bool((c_new.grad[padding] == 0).all())
