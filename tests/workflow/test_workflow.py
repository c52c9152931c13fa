"""The whole smoke workflow end to end with Snakemake, in a temporary copy of the repository."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import copy_workflow, snakemake

SMOKE = ("--configfile", "configs/smoke.yaml")


@pytest.mark.slow
def test_smoke_workflow_runs_and_is_then_up_to_date(smoke_run, tmp_path):
    workdir = smoke_run
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

    again = snakemake(workdir, *SMOKE, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # An interrupted eNTK (in a copy: the smoke run is shared): one block and the merged kernel lost;
    # only they (and what follows) rerun.
    workdir = Path(shutil.copytree(smoke_run, tmp_path / "resume", symlinks=True))
    blocks = workdir / "results/entk/tweets-sentiment2/n16-seed0.blocks"
    assert len(list(blocks.glob("*.npz"))) == 7  # 3 train x train (upper triangle) + 4 test x train
    (blocks / "train-0-1.npz").unlink()
    (workdir / "results/entk/tweets-sentiment2/n16-seed0.npz").unlink()
    kernel = "results/entk/tweets-sentiment2/n16-seed0.npz"
    resume = snakemake(workdir, *SMOKE, "-n", kernel)
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
    workdir = copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text(override)
    run = snakemake(workdir, *SMOKE, "bad.yaml")
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert not (workdir / "results").exists()
