"""Jobs that run no model import no torch: its import (with transformers') was ≈ 3 of the ≈ 4.5 s a summary or
figure job took, paid again on every rerun of a figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
LIGHT = [
    "data/task.py", "data/train_sample.py", "entk/spectrum.py",
    "earlystop/sweep.py", "earlystop/synthetic.py", "earlystop/figure_rates.py",
    "earlystop/figure_learning_curves.py", "earlystop/figure_spectrum.py",
    "malladi/summary.py", "malladi/figures.py", "lpft/summary.py", "lpft/figures.py", "taskvec/figure.py",
]
"""The scripts of the rules that load no model (summaries, figures, data, kernel-GD sweeps)."""


@pytest.mark.parametrize("script", LIGHT)
def test_a_job_without_a_model_imports_no_torch(script):
    source = (SCRIPTS / script).read_text()
    imports = re.findall(r"^(?:from|import) .+$", source, flags=re.MULTILINE)
    assert any("kernelft" in line for line in imports), script
    check = "\n".join(imports + ["import sys", "print(sorted({'torch', 'transformers'} & set(sys.modules)))"])
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]", f"{script} imports {run.stdout.strip()}"


def test_limit_threads_sets_torch_and_leaves_the_environment():
    """The rule's threads reach torch (imported first, as in every model job) and the BLAS pools, and nothing
    reaches the environment: an ``OMP_NUM_THREADS`` left there by a script run in-process once made the test
    SLURM's ``nproc`` say 1 CPU, so that its 2-thread jobs never started."""
    check = "\n".join([
        "import os, torch", "from threadpoolctl import threadpool_info",
        "from kernelft.core.threads import limit_threads",
        "before = dict(os.environ)", "limit_threads(1)",
        "assert torch.get_num_threads() == 1, torch.get_num_threads()",
        "assert all(pool['num_threads'] == 1 for pool in threadpool_info()), threadpool_info()",
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())",
    ])
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
