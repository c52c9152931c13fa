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
