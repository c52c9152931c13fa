"""The thread limit of a job: the rule's ``threads`` in numpy/scipy's BLAS and in torch."""

from __future__ import annotations

import os
import sys


def limit_threads(threads: int) -> None:
    """Use ``threads`` cores in numpy/scipy's BLAS (threadpoolctl) and in torch.

    An oversubscribed OpenBLAS on a busy 2-core machine made an 800 x 800 ``eigh`` 25x slower. torch is
    set here only when the job has imported it (every model job has, by its imports), and through
    ``OMP_NUM_THREADS`` when it imports torch later: a job that runs no model does not pay torch's
    import (≈ 1.5 s of the ≈ 4 s a summary or figure job took).
    """
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = str(threads)
    threadpool_limits(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
