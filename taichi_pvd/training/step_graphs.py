"""Optimisation steps replayed as CUDA graphs.

A step of a small network on a GPU is bound by the host: each of its few hundred kernels costs
the host more time to launch than the device takes to run it. A step whose inputs sit in fixed
buffers (same shapes and addresses every time) and whose work never waits on the device can
be recorded once as a CUDA graph and replayed with a single launch.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Hashable

import torch

#: Eager runs of a step, on a side stream, before it is captured: they create the optimizer's
#: state and the libraries' workspaces, which must exist before capture.
WARMUP_RUNS = 2


class StepGraphs:
    """Runs step functions by key: eagerly while ``enabled`` is False; otherwise eagerly for
    the first :data:`WARMUP_RUNS` calls of a key, then captured in a CUDA graph on the next
    call and replayed from then on.

    A step function reads its inputs from buffers the caller refills before each call, and
    returns its outputs (tensors); a replay returns the same output tensors, refilled. The
    graphs share one memory pool: the caller must not interleave calls of keys captured
    earlier with a later key's (distillation runs its stages in order).
    """

    def __init__(self, enabled: bool, before_capture: Callable[[], None] | None = None):
        self.enabled = enabled
        self.before_capture = before_capture
        self._graphs: dict[Hashable, tuple[torch.cuda.CUDAGraph, Any]] = {}
        self._eager_runs: Counter = Counter()
        self._pool = None

    def __call__(self, key: Hashable, step: Callable[[], Any]) -> Any:
        """``step()``'s outputs, run as described above."""
        if not self.enabled:
            return step()
        if key in self._graphs:
            graph, outputs = self._graphs[key]
            graph.replay()
            return outputs
        if self._eager_runs[key] < WARMUP_RUNS:
            self._eager_runs[key] += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = step()
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if self.before_capture is not None:
            self.before_capture()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = step()
        self._pool = graph.pool()
        self._graphs[key] = (graph, outputs)
        # Capture records the step without running it.
        graph.replay()
        return outputs

    def reset(self) -> None:
        """Forget every graph (the step's parameters or optimizer were replaced)."""
        self._graphs.clear()
        self._eager_runs.clear()
        self._pool = None

    @property
    def captured(self) -> int:
        """Number of steps captured so far."""
        return len(self._graphs)
