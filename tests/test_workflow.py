"""The whole smoke workflow end to end with Snakemake, in a temporary copy of the repository."""

from __future__ import annotations

import re
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
    for stem in ("F5_entk_spectrum", "F6_rates", "F7_learning_curves"):
        assert (workdir / "figures" / f"{stem}.png").stat().st_size > 10_000
        assert (workdir / "figures" / f"{stem}.pdf").exists()
        assert not pd.read_csv(workdir / "results" / "tables" / f"{stem}.csv").empty
        assert (workdir / "results" / "tables" / f"{stem}.csv.meta.json").exists()
    rates = pd.read_csv(workdir / "results" / "tables" / "F6_rates.csv")
    assert {"slope", "ci_low", "ci_high", "predicted_slope", "mean_excess_rule"} <= set(rates.columns)
    assert rates["panel"].nunique() == 3  # test MSE vs pseudo-truth, vs labels, synthetic checks
    assert set(pd.read_csv(workdir / "results" / "tables" / "F7_learning_curves.csv")["source"]) == {
        "kernel_gd", "finetune"}
    assert (workdir / "results/entk/tweets-sentiment2/n16-seed0.npz.meta.json").exists()
    assert list((workdir / "results" / "benchmarks").rglob("*.tsv"))
    assert list((workdir / "results" / "logs").rglob("*.log"))

    again = _snakemake(workdir, "--configfile", "configs/smoke.yaml", "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # An interrupted eNTK: one block and the merged kernel lost; only they (and what follows) rerun.
    blocks = workdir / "results/entk/tweets-sentiment2/n16-seed0.blocks"
    assert len(list(blocks.glob("*.npz"))) == 7  # 3 train x train (upper triangle) + 4 test x train
    (blocks / "train-0-1.npz").unlink()
    (workdir / "results/entk/tweets-sentiment2/n16-seed0.npz").unlink()
    kernel = "results/entk/tweets-sentiment2/n16-seed0.npz"
    resume = _snakemake(workdir, "--configfile", "configs/smoke.yaml", "-n", kernel)
    assert resume.returncode == 0, resume.stderr[-2000:]
    stats = resume.stdout[resume.stdout.index("Job stats") :].split("Reasons")[0]
    assert re.search(r"entk_block\s+1\n", stats) and re.search(r"\nentk\s+1\n", stats), stats


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetune:\n  tasks: [no-such-task]\n", "finetune.tasks names unknown task 'no-such-task'"),
        ("finetune:\n  sample_sizes: [16, -4]\n", "config key finetune.sample_sizes.1: -4 is less than the minimum"),
        ("finetune:\n  stpes: 3\n", "config key finetune: Additional properties are not allowed ('stpes'"),
    ],
    ids=["unknown-task", "negative-sample-size", "misspelt-key"],
)
def test_bad_config_stops_before_any_job(tmp_path, override, message):
    workdir = _copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text(override)
    run = _snakemake(workdir, "--configfile", "configs/smoke.yaml", "bad.yaml")
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert not (workdir / "results").exists()
