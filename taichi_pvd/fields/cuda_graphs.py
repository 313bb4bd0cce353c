"""CUDA graphs of the fields' row-wise networks: one launch replays a whole forward or backward.

A training or distillation step is bound by the host: each layer of a network costs a few
kernel launches and autograd bookkeeping forward and backward, and the GPU waits for them
(``benchmarks/profile_train.py``). On CUDA, with gradients on and no autocast, a network's
forward and backward are captured once per input shape (:func:`torch.cuda.make_graphed_callables`)
and replayed from then on; the row counts are already bucketed to few shapes
(:mod:`.row_buckets`). Everything else (the CPU, inference without gradients, autocast) runs the
network eagerly, with the same parameters and the same results up to float rounding.

Set ``PVD_CUDA_GRAPHS=0`` to run eagerly everywhere.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

#: Graphs kept per network (least recently used dropped first, freeing their memory): each holds
#: the activations of one bucketed row count.
MAX_GRAPHS = 6


def cuda_graphs_enabled() -> bool:
    """False when the environment variable ``PVD_CUDA_GRAPHS`` is 0, false or no."""
    return os.environ.get("PVD_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no")


class GraphedRows:
    """Runs a row-wise network on [N, C] inputs, under CUDA graphs where it can.

    ``make_network`` returns a fresh ``nn.Module`` that shares the parameters of the network to
    run (its children are the original layers, so nothing is copied); each captured shape gets
    one, because capturing patches the module's ``forward``. The graphs read the parameters'
    storage, so they are dropped when any parameter moves to new storage (``.to(device)``);
    in-place updates (the optimizer, ``load_state_dict``, parameter averages) need nothing.
    """

    def __init__(self, make_network: Callable[[], nn.Module]):
        self.make_network = make_network
        self.eager = make_network()
        self._graphs: OrderedDict[tuple, nn.Module] = OrderedDict()
        self._storage: tuple[int, ...] = ()

    def _graphable(self, x: torch.Tensor) -> bool:
        return (x.is_cuda and torch.is_grad_enabled() and not torch.is_autocast_enabled("cuda")
                and x.shape[0] > 0 and cuda_graphs_enabled())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output for ``x`` [N, C] (differentiable)."""
        if not self._graphable(x):
            return self.eager(x)
        storage = tuple(p.data_ptr() for p in self.eager.parameters())
        if storage != self._storage:
            self._graphs.clear()
            self._storage = storage
        key = (tuple(x.shape), x.dtype, x.requires_grad)
        graphed = self._graphs.get(key)
        if graphed is None:
            if len(self._graphs) >= MAX_GRAPHS:
                self._graphs.popitem(last=False)
            sample = x.detach().clone().requires_grad_(x.requires_grad)
            graphed = torch.cuda.make_graphed_callables(self.make_network(), (sample,))
            self._graphs[key] = graphed
        else:
            self._graphs.move_to_end(key)
        return graphed(x)

    def __len__(self) -> int:
        """Number of graphs held."""
        return len(self._graphs)
