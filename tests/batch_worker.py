"""A torchrun worker of the batch tests: ``pvd-ti batch`` whose worker kills itself (SIGKILL)
right after claiming the job named by ``$PVD_TEST_KILL_AFTER_CLAIM``, in torchrun's first
generation only (``TORCHELASTIC_RESTART_COUNT`` 0), as a crashed worker would."""

import os
import signal

import taichi_pvd.batch.worker as worker
from taichi_pvd_cli.main import main

victim = os.environ.get("PVD_TEST_KILL_AFTER_CLAIM")
run_job = worker.run_job


def run_job_or_die(job, out_root, on_progress=None):
    if job.name == victim and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    return run_job(job, out_root, on_progress)


worker.run_job = run_job_or_die
main()
