"""The thread limit of a job: the rule's ``threads`` in numpy/scipy's BLAS and in torch."""

from __future__ import annotations

import sys


def limit_threads(threads: int) -> None:
    """Use ``threads`` cores in numpy/scipy's BLAS (threadpoolctl) and in torch.

    An oversubscribed OpenBLAS on a busy 2-core machine made an 800 x 800 ``eigh`` 25x slower. torch is
    set only when the job has imported it (every model job has, at its top), so that a job that runs no
    model does not pay torch's import (≈ 1.5 s of the ≈ 4.5 s a summary or figure job took). No
    environment variable is set: ``OMP_NUM_THREADS`` would reach every subprocess of the caller (a test
    that ran a script in-process once left the test SLURM's ``nproc`` at 1 CPU).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
