"""Pseudo-labels drawn for several steps at once and cut into fixed-size chunks, one a step.

Drawing a step's labels (march, the teacher's features, the samples it composites, its colours)
makes the host wait twice on the device for sample counts; drawing a block of steps' rays in
one pass waits once a block and runs the teacher on larger batches. The block is then cut into
chunks of ``capacity`` sample slots holding whole rays, padded at the end, and ``max_rays`` ray
slots: every step sees arrays of the same shapes, so a step into a torch-only student can be
captured in a CUDA graph (:class:`~taichi_pvd.training.step_graphs.StepGraphs`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..fields.row_buckets import bucket_rows
from ..kernels.marching import PackedSamples


@dataclass
class LabelChunk:
    """One step's pseudo-labels (or, in a :class:`LabelBlock`, those of all its steps end to
    end): ``C`` sample slots, whole rays front to back then padding, and ``R`` ray slots."""

    positions: torch.Tensor
    """[C, 3] float32 world positions (0 in padding)."""
    direction_encoding: torch.Tensor
    """[C, E] float32: the student's encoding of each sample's view direction."""
    teacher_features: torch.Tensor
    """[C, F] float32: the teacher's phi1 at ``positions``."""
    dt: torch.Tensor
    """[C] float32 interval lengths (0 in padding)."""
    first_sample: torch.Tensor
    """[C] int64: index of the first sample of each sample's ray (itself in padding)."""
    ray_slot: torch.Tensor
    """[C] int64: each sample's ray slot, ``R`` in padding."""
    sample_weight: torch.Tensor
    """[C] float32: 1 for a sample, 0 for padding."""
    ray_weight: torch.Tensor
    """[R] float32: 1 for a slot holding a ray, 0 for an empty slot."""
    background: torch.Tensor
    """[R, 3] float32: each ray's background colour, the same for teacher and student."""
    teacher_rgb: torch.Tensor | None = None
    """[C, 3] float32: the teacher's colour at each sample (steps of stage 2 on)."""
    teacher_ray_rgb: torch.Tensor | None = None
    """[R, 3] float32: the teacher's composited colour of each ray on black (stage 3)."""
    teacher_opacity: torch.Tensor | None = None
    """[R] float32: the teacher's opacity of each ray (stage 3)."""

    def copy_to(self, buffers: "LabelChunk | None") -> "LabelChunk":
        """These labels copied into ``buffers`` (allocated when None or missing an entry);
        returns the buffers, whose addresses stay the same from call to call."""
        if buffers is None:
            buffers = LabelChunk(**{f.name: torch.empty_like(getattr(self, f.name))
                                    for f in dataclasses.fields(self) if getattr(self, f.name) is not None})
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if getattr(buffers, f.name) is None:
                setattr(buffers, f.name, torch.empty_like(value))
            getattr(buffers, f.name).copy_(value)
        return buffers


@dataclass
class LabelBlock:
    """The pseudo-labels of ``n_chunks`` consecutive steps."""

    labels: LabelChunk
    """All chunks end to end: [n_chunks * capacity] sample slots, [n_chunks * max_rays] ray slots;
    ``first_sample`` and ``ray_slot`` count within each chunk."""
    n_chunks: int
    capacity: int
    max_rays: int
    counts: list[tuple[int, int]]
    """(samples, rays) of each chunk."""

    def chunk(self, k: int) -> LabelChunk:
        """The labels of the block's ``k``-th step (views)."""
        c, r = self.capacity, self.max_rays
        per_ray = {"ray_weight", "background", "teacher_ray_rgb", "teacher_opacity"}
        views = {}
        for f in dataclasses.fields(self.labels):
            value = getattr(self.labels, f.name)
            if value is not None:
                views[f.name] = value[k * r : (k + 1) * r] if f.name in per_ray else value[k * c : (k + 1) * c]
        return LabelChunk(**views)


def chunk_capacity(n_samples: int, n_chunks: int) -> int:
    """Sample slots of a chunk for a block whose first draw gave ``n_samples`` samples over
    ``n_chunks`` steps: their mean, rounded up to a matrix-friendly row count."""
    return bucket_rows(max(math.ceil(n_samples / max(n_chunks, 1)), 1))


@dataclass
class ChunkLayout:
    """Where the rays of a packed draw go: chunk ``chunk[i]``, ray slot ``slot[i]`` for every
    ray ``i`` with ``kept[i]``."""

    chunk: torch.Tensor
    """[N] int64."""
    slot: torch.Tensor
    """[N] int64."""
    kept: torch.Tensor
    """[N] bool: the ray has samples, fits in its chunk and in its chunk's ray slots."""


def chunk_layout(ray_counts: torch.Tensor, n_chunks: int, capacity: int, max_rays: int) -> ChunkLayout:
    """Cut rays of ``ray_counts`` [N] samples, packed end to end, into ``n_chunks`` chunks of
    ``capacity`` samples and ``max_rays`` rays, keeping every sample at its packed index: the
    chunk of a ray is that of its first sample, and a ray that would cross into the next chunk
    (or beyond the last, or past ``max_rays``) is dropped, as are rays without samples."""
    counts = ray_counts.long()
    end = torch.cumsum(counts, 0)
    start = end - counts
    chunk = start // capacity
    eligible = (counts > 0) & (end <= (chunk + 1) * capacity) & (chunk < n_chunks)
    chunk = chunk.clamp(max=n_chunks - 1)
    per_chunk = torch.zeros(n_chunks, dtype=torch.long, device=counts.device).index_add(0, chunk, eligible.long())
    before = torch.cumsum(per_chunk, 0) - per_chunk
    slot = torch.cumsum(eligible.long(), 0) - 1 - before[chunk]
    return ChunkLayout(chunk=chunk, slot=slot, kept=eligible & (slot < max_rays))


def pack_block(samples: PackedSamples, layout: ChunkLayout, index: torch.Tensor, n_chunks: int, capacity: int,
               max_rays: int, per_sample: dict[str, torch.Tensor], per_ray: dict[str, torch.Tensor]) -> LabelBlock:
    """The block of the rays of ``samples`` that ``layout`` keeps.

    Args:
        samples: the packed draw (N rays).
        layout: :func:`chunk_layout` of its rays.
        index: [S'] int64, :func:`kept_samples` of the draw.
        n_chunks, capacity, max_rays: the block's shape (as given to :func:`chunk_layout`).
        per_sample: [S', ...] values at the samples ``index`` (``positions``,
            ``direction_encoding``, ``teacher_features``, optionally ``teacher_rgb``).
        per_ray: [N, ...] values of the rays (``background``).

    The teacher's composited colours (stage 3) are left to the caller.
    """
    device = samples.t.device
    n, m = n_chunks * capacity, n_chunks * max_rays
    rays = samples.ray_indices.long()[index]
    chunk = layout.chunk[rays]
    first_sample = torch.arange(n, device=device) % capacity
    first_sample[index] = samples.ray_starts.long()[rays] - chunk * capacity
    ray_slot = torch.full((n,), max_rays, dtype=torch.long, device=device)
    ray_slot[index] = layout.slot[rays]
    kept_rays = torch.nonzero(layout.kept).squeeze(1)
    ray_dest = layout.chunk[kept_rays] * max_rays + layout.slot[kept_rays]

    def scattered(rows: int, dest: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        full = torch.zeros((rows, *value.shape[1:]), dtype=value.dtype, device=device)
        full[dest] = value
        return full

    ones_s = torch.ones(index.shape[0], device=device)
    labels = LabelChunk(
        dt=scattered(n, index, samples.dt[index]), first_sample=first_sample, ray_slot=ray_slot,
        sample_weight=scattered(n, index, ones_s),
        ray_weight=scattered(m, ray_dest, torch.ones(kept_rays.shape[0], device=device)),
        **{name: scattered(n, index, value) for name, value in per_sample.items()},
        **{name: scattered(m, ray_dest, value[kept_rays]) for name, value in per_ray.items()},
    )
    counts = torch.stack([labels.sample_weight.view(n_chunks, capacity).sum(1),
                          labels.ray_weight.view(n_chunks, max_rays).sum(1)], 1)
    return LabelBlock(labels=labels, n_chunks=n_chunks, capacity=capacity, max_rays=max_rays,
                      counts=[(int(s), int(r)) for s, r in counts.tolist()])


def kept_samples(samples: PackedSamples, layout: ChunkLayout) -> torch.Tensor:
    """[S'] int64: the packed indices of the samples of the rays ``layout`` keeps (which are
    also their indices in the block)."""
    return torch.nonzero(layout.kept[samples.ray_indices.long()]).squeeze(1)


def block_slots(block: LabelBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's ``first_sample`` and ``ray_slot`` counted over the whole block (sample and
    ray slots of all chunks end to end; padding points at slot ``n_chunks * max_rays``)."""
    labels, c, r = block.labels, block.capacity, block.max_rays
    chunk = torch.arange(labels.dt.shape[0], device=labels.dt.device) // c
    first = labels.first_sample + chunk * c
    slot = torch.where(labels.ray_slot < r, labels.ray_slot + chunk * r, block.n_chunks * r)
    return first, slot
