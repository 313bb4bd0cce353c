"""The shared queue of a batch, held in a ``torch.distributed`` key-value store (the launcher's
``TCPStore`` under torchrun, a ``HashStore`` in one process): every worker takes the next ready
job by an atomic ``compare_set`` on the job's state, so that no job is claimed twice.

Keys (under the batch's prefix):

- ``state/<job>``: ``waiting``, ``running <claim>``, ``done`` or ``failed``;
- ``error/<job>``: the message of a failed job;
- ``claims/<job>``, ``completions/<job>``: counters (``store.add``) of the times the job was
  claimed and finished in this batch;
- ``workers``: a counter giving each worker process its number; ``beat/<worker>``: the
  worker's heartbeat counter.

A claim reads ``<worker>:<node>:<restart>:<rank>``. It is given up for dead, and its job is
claimed again, when its worker cannot be alive: a worker of the same node (torchrun's
``GROUP_RANK``) from an earlier restart (torchrun restarts all of a node's workers at once, so
``TORCHELASTIC_RESTART_COUNT`` then grows), or one whose heartbeat has not moved for
:data:`LEASE_SECONDS` (a worker on another node).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .graph import Job, JobGraph

WAITING, RUNNING, DONE, FAILED = "waiting", "running", "done", "failed"
#: Seconds without a heartbeat after which a claim is given up for dead.
LEASE_SECONDS = 60.0
#: Seconds between two heartbeats of a worker.
BEAT_SECONDS = 5.0


@dataclass(frozen=True)
class Worker:
    """Who claims: a worker process of the batch."""

    number: int
    """Unique in the batch (from the store's ``workers`` counter)."""
    node: int
    """torchrun's ``GROUP_RANK`` (0 in one process)."""
    restart: int
    """torchrun's ``TORCHELASTIC_RESTART_COUNT`` (0 in one process)."""
    rank: int
    """The global rank (0 in one process)."""

    @property
    def claim(self) -> str:
        return f"{self.number}:{self.node}:{self.restart}:{self.rank}"

    @staticmethod
    def from_claim(claim: str) -> Worker:
        number, node, restart, rank = (int(part) for part in claim.split(":"))
        return Worker(number, node, restart, rank)


@dataclass(frozen=True)
class JobState:
    """A job's state as the store holds it."""

    state: str
    """:data:`WAITING`, :data:`RUNNING`, :data:`DONE` or :data:`FAILED`."""
    worker: Worker | None = None
    """The worker running it."""

    @staticmethod
    def parse(value: str) -> JobState:
        state, _, claim = value.partition(" ")
        return JobState(state, Worker.from_claim(claim) if claim else None)


class JobQueue:
    """The queue of ``graph``'s jobs in ``store``, as seen by one worker (see the module
    docstring). ``clock`` (seconds) times the heartbeats of other workers."""

    def __init__(self, store, graph: JobGraph, *, node: int = 0, restart: int = 0, rank: int = 0,
                 clock: Callable[[], float] = time.monotonic, lease_s: float = LEASE_SECONDS):
        self.store = store
        self.graph = graph
        self.worker = Worker(store.add("workers", 1), node, restart, rank)
        self._clock = clock
        self._lease_s = lease_s
        #: Heartbeat counter and the time it was first seen at that value, by worker number.
        self._beats: dict[int, tuple[int, float]] = {}

    # -- states ------------------------------------------------------------------------------------

    def start(self, done_before: Callable[[Job], bool]) -> None:
        """Give every job its first state, unless a worker did already: ``done`` where
        ``done_before(job)`` (its run folder holds the finished, scored run), else ``waiting``."""
        for job in self.graph:
            if not self.store.check([_state_key(job.name)]):
                self.store.compare_set(_state_key(job.name), "", DONE if done_before(job) else WAITING)

    def states(self) -> dict[str, JobState]:
        """Every job's state, by name."""
        return read_states(self.store, self.graph)

    def _values(self) -> dict[str, str]:
        return _read_values(self.store, self.graph)

    def error(self, name: str) -> str | None:
        """The message recorded for a failed job."""
        key = f"error/{name}"
        return self.store.get(key).decode() if self.store.check([key]) else None

    def counter(self, kind: str, name: str) -> int:
        """``claims`` or ``completions`` of the job ``name`` in this batch."""
        return self.store.add(f"{kind}/{name}", 0)

    def settled(self) -> bool:
        """Whether every job is done or failed."""
        return all(s.state in (DONE, FAILED) for s in self.states().values())

    # -- claiming ----------------------------------------------------------------------------------

    def claim(self) -> Job | None:
        """Claim the first ready job (waiting, or held by a dead worker); ``None`` when none is
        ready now. A job whose dependency failed is marked failed on the way."""
        raw = self._values()
        states = {name: JobState.parse(value) for name, value in raw.items()}
        for job in self.graph:
            state = states[job.name]
            if state.state in (DONE, FAILED) or (state.state == RUNNING and self._alive(state.worker)):
                continue
            failed = [d for d in job.depends_on if states[d].state == FAILED]
            if failed:
                self._fail_from(job, raw[job.name], f"not run: {', '.join(failed)} failed")
                continue
            if any(states[d].state != DONE for d in job.depends_on):
                continue
            mine = f"{RUNNING} {self.worker.claim}"
            if self.store.compare_set(_state_key(job.name), raw[job.name], mine).decode() == mine:
                self.store.add(f"claims/{job.name}", 1)
                return job
        return None

    def finish(self, job: Job) -> None:
        """Record ``job`` done (by this worker, unless its claim was given up for dead and the
        job claimed again)."""
        if self._settle(job, DONE):
            self.store.add(f"completions/{job.name}", 1)

    def fail(self, job: Job, message: str) -> None:
        """Record ``job`` failed with ``message`` (unless its claim was given up, as :meth:`finish`)."""
        if self._settle(job, FAILED):
            self.store.set(f"error/{job.name}", message)

    def release(self, job: Job) -> None:
        """Give ``job`` back to the queue (this worker stops before finishing it)."""
        self._settle(job, WAITING)

    def _settle(self, job: Job, state: str) -> bool:
        """Move ``job`` from this worker's claim to ``state``; whether the claim was still there."""
        return self.store.compare_set(_state_key(job.name), f"{RUNNING} {self.worker.claim}", state).decode() == state

    def _fail_from(self, job: Job, expected: str, message: str) -> None:
        if self.store.compare_set(_state_key(job.name), expected, FAILED).decode() == FAILED:
            self.store.set(f"error/{job.name}", message)

    def _alive(self, worker: Worker) -> bool:
        """Whether the worker holding a claim may still be running it (see the module docstring)."""
        if worker.node == self.worker.node and worker.restart < self.worker.restart:
            return False
        if worker.number == self.worker.number:
            return True
        count, now = self.store.add(f"beat/{worker.number}", 0), self._clock()
        seen = self._beats.get(worker.number)
        if seen is None or seen[0] != count:
            self._beats[worker.number] = (count, now)
            return True
        return now - seen[1] < self._lease_s


def _state_key(name: str) -> str:
    return f"state/{name}"


def _read_values(store, graph: JobGraph) -> dict[str, str]:
    values = store.multi_get([_state_key(job.name) for job in graph])
    return {job.name: value.decode() for job, value in zip(graph, values)}


def read_states(store, graph: JobGraph) -> dict[str, JobState]:
    """Every job's state in ``store`` (once a :class:`JobQueue` has started), by name: what a
    progress display shows, read through a connection of its own."""
    return {name: JobState.parse(value) for name, value in _read_values(store, graph).items()}


class Heartbeat:
    """A daemon thread beating for ``queue``'s worker every :data:`BEAT_SECONDS` through its own
    store connection (``connect()``), for as long as the ``with`` block lasts."""

    def __init__(self, queue: JobQueue, connect: Callable[[], object], every_s: float = BEAT_SECONDS):
        self._key = f"beat/{queue.worker.number}"
        self._connect = connect
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pvd-batch-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        store = self._connect()
        while not self._stop.wait(self._every_s):
            store.add(self._key, 1)
