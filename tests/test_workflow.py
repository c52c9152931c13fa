"""The whole smoke workflow end to end with Snakemake, in a temporary copy of the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _copy_workflow(destination: Path) -> Path:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, destination / name)
    for name in ("workflow", "configs", "profiles"):
        shutil.copytree(ROOT / name, destination / name)
    return destination


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True)


@pytest.mark.slow
def test_smoke_workflow_runs_and_is_then_up_to_date(tmp_path):
    workdir = _copy_workflow(tmp_path)
    run = _snakemake(workdir, "--configfile", "configs/smoke.yaml")
    assert run.returncode == 0, run.stderr[-4000:]
    for stem in ("F5_entk_spectrum", "F7_learning_curves"):
        assert (workdir / "figures" / f"{stem}.png").stat().st_size > 10_000
        assert (workdir / "figures" / f"{stem}.pdf").exists()
        assert not pd.read_csv(workdir / "results" / "tables" / f"{stem}.csv").empty
    assert (workdir / "results/entk/tweets-sentiment2/n16-seed0.npz.meta.json").exists()
    assert list((workdir / "results" / "benchmarks").rglob("*.tsv"))
    assert list((workdir / "results" / "logs").rglob("*.log"))

    again = _snakemake(workdir, "--configfile", "configs/smoke.yaml", "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_stops_before_any_job(tmp_path):
    workdir = _copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text("finetune:\n  tasks: [no-such-task]\n")
    run = _snakemake(workdir, "--configfile", "configs/smoke.yaml", "bad.yaml", "-n")
    assert run.returncode != 0
    assert "finetune.tasks names unknown task 'no-such-task'" in run.stderr + run.stdout
    assert not (workdir / "results").exists()
