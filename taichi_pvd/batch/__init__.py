"""Batches of runs (``pvd-ti batch PLAN``): the teachers and distillations a plan file lists,
run one after another in one process or spread over torchrun's workers, each job in its own
run folder of one output tree, with one summary at the end.

Modules: :mod:`.plan` (reading and checking the TOML plan), :mod:`.graph` (jobs and their
order), :mod:`.queue` (the shared queue in a ``torch.distributed`` store), :mod:`.launch` (the
worker's place: torchrun or alone, its GPU, its store), :mod:`.jobs` (one job through the
library's train, distill and evaluate), :mod:`.worker` (the loop), :mod:`.summary` (the results
JSON and table).
"""

from .plan import Plan, load_plan
from .worker import run_batch

__all__ = ["Plan", "load_plan", "run_batch"]
