"""Where a batch worker runs: alone in one process, or as one of torchrun's workers (found by
the environment torchrun sets: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), with its GPU and
its connection to the store that holds the batch's queue."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import PvdError

#: Prefix of the batch's keys in the launcher's store.
STORE_PREFIX = "pvd-batch/"
#: How long a worker waits for the store to answer.
STORE_TIMEOUT = datetime.timedelta(minutes=5)


@dataclass
class Launch:
    """One worker's place in the batch."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node: int = 0
    """torchrun's ``GROUP_RANK``: the node (machine) among the batch's nodes."""
    restart: int = 0
    """torchrun's ``TORCHELASTIC_RESTART_COUNT``: how often this node's workers were restarted."""
    address: tuple[str, int] | None = None
    """The store's host and port; ``None`` when the batch runs in this process alone."""
    agent_store: bool = False
    """Whether torchrun's agent hosts the store (workers only connect to it); otherwise rank 0
    hosts it."""
    _local_store: object = field(default=None, repr=False)

    @staticmethod
    def from_environment(env: Mapping[str, str] = os.environ) -> Launch:
        """The launch the environment describes: torchrun's worker when ``RANK``,
        ``WORLD_SIZE`` and ``MASTER_ADDR`` are set, this process alone otherwise."""
        if not all(env.get(key) for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
            return Launch()
        return Launch(rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                      local_rank=int(env.get("LOCAL_RANK", 0)), node=int(env.get("GROUP_RANK", 0)),
                      restart=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
                      address=(env["MASTER_ADDR"], int(env.get("MASTER_PORT", 29500))),
                      agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True")

    @property
    def distributed(self) -> bool:
        return self.address is not None

    def connect(self):
        """A connection to the batch's store, its keys under :data:`STORE_PREFIX`: the
        launcher's ``TCPStore`` (which outlives the workers torchrun restarts), or one
        ``HashStore`` shared by every call in this process."""
        import torch.distributed as dist

        if not self.distributed:
            if self._local_store is None:
                self._local_store = dist.HashStore()
            return dist.PrefixStore(STORE_PREFIX, self._local_store)
        host, port = self.address
        hosting = not self.agent_store and self.rank == 0 and self._local_store is None
        try:
            store = dist.TCPStore(host, port, self.world_size, is_master=hosting, timeout=STORE_TIMEOUT,
                                  wait_for_workers=False, multi_tenant=True)
        except (RuntimeError, dist.DistError) as err:
            raise PvdError(f"cannot reach the batch's store at {host}:{port} ({str(err).splitlines()[0]}): start "
                           "the batch with torchrun, or without RANK, WORLD_SIZE and MASTER_ADDR in the "
                           "environment to run it in this process") from None
        if hosting:
            self._local_store = store  # the server lives as long as this object
        return dist.PrefixStore(STORE_PREFIX, store)

    def pin_gpu(self, env: dict[str, str] = os.environ) -> None:
        """Make this worker's GPU the only one it sees: the ``LOCAL_RANK``-th of
        ``CUDA_VISIBLE_DEVICES``, or GPU ``LOCAL_RANK`` when that is unset (so run one worker a
        GPU: ``--nproc-per-node`` = the GPU count). Call before CUDA starts (counting the GPUs
        would start it); nothing to do in one process."""
        if not self.distributed:
            return
        visible = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[self.local_rank % len(visible)] if visible else str(self.local_rank)
