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
        ("model:\n  name: 'packaged:no-such-model'\n",
         "model.name='packaged:no-such-model': the only packaged model is"),
        ("tasks:\n  tweets-sentiment2:\n    template: '{sentence} It was'\n",
         "config key tasks.tweets-sentiment2.template with model.name='packaged:all-MiniLM-L6-v2' (encoder LM)"),
    ],
    ids=["unknown-task", "negative-sample-size", "misspelt-key", "unknown-packaged-model", "template-without-mask"],
)
def test_bad_config_stops_before_any_job(tmp_path, override, message):
    workdir = copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text(override)
    run = snakemake(workdir, *SMOKE, "bad.yaml")
    assert run.returncode != 0
    assert message in run.stderr + run.stdout
    assert not (workdir / "results").exists()


def _planned(workdir: Path, *extra_yaml: str) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` plans in ``workdir`` with the smoke config plus ``extra_yaml``."""
    files = []
    for i, text in enumerate(extra_yaml):
        (workdir / f"extra{i}.yaml").write_text(text)
        files.append(f"extra{i}.yaml")
    run = snakemake(workdir, "--configfile", "configs/smoke.yaml", *files, "-n", "--quiet", "rules")
    assert run.returncode == 0, run.stderr[-2000:]
    output = run.stdout + run.stderr
    if "Nothing to be done" in output:
        return {}
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.MULTILINE)
            if rule != "total"}


@pytest.mark.slow
def test_adding_to_a_list_plans_only_the_new_jobs(smoke_run):
    """Params hold only what a job's outputs depend on: in a finished run, a new sample size, ρ or seed
    plans its own jobs and the summaries and figures that read them, never a finished job again."""
    from kernelft.entk.blocks import block_pairs

    assert _planned(smoke_run) == {}
    # entk.sample_sizes [16] -> [16, 8] (smoke: block_size 8, test_size 16): the n = 8 blocks, kernel,
    # spectrum and F5; the n = 16 blocks stay finished.
    new_blocks = len(block_pairs(8, 8, "sgd")) + len(block_pairs(16, 8, "sgd", n2=8))
    planned = _planned(smoke_run, "entk:\n  sample_sizes: [16, 8]\n")
    assert planned.pop("entk_block") == new_blocks
    assert planned == {"data_train_sample": 1, "entk": 1, "spectrum": 1, "figure_spectrum": 1, "all": 1}
    # vi.rhos [0.0, 0.8] -> [0.0, 0.5, 0.8] (one n): one new cell and coverage run, then the F8/F14 summaries.
    planned = _planned(smoke_run, "vi:\n  rhos: [0.0, 0.5, 0.8]\n")
    assert planned == {"vi_simulate": 1, "vi_coverage": 1, "vi_table": 1, "vi_figure": 1, "vi_full_table": 1,
                       "vi_full_figure": 1, "all": 1}
    # A one-key change to a job's own params: entk.projection_dim reruns the eNTK blocks and what reads them;
    # lpft.lora_rank reruns only the LoRA run (smoke: lp, lpft, lplora, one seed) and the NTK split.
    planned = _planned(smoke_run, "entk:\n  projection_dim: 64\n")
    assert planned == {"entk_block": 7, "entk": 1, "spectrum": 1, "figure_spectrum": 1, "all": 1}
    planned = _planned(smoke_run, "lpft:\n  lora_rank: 3\n")
    assert planned.pop("lpft_run") == 1 and planned.pop("lpft_ntk") == 1
    assert all(rule in ("lpft_summary", "all") or rule.startswith("figure_lpft") for rule in planned), planned


MODEL_RULES = {
    "entk_block", "entk", "earlystop_entk", "earlystop_finetune", "malladi_finetune", "malladi_kernel",
    "malladi_linearized", "malladi_projection", "lpft_run", "lpft_ntk",
    "taskvec_finetune", "taskvec_entk", "taskvec_arithmetic",
}
"""Every rule that loads the pretrained model."""


@pytest.mark.slow
def test_smoke_workflow_runs_on_a_decoder_folder(tmp_path, tiny_checkpoint):
    """The smoke configuration with ``model.name`` a tiny random GPT-Neo saved as a local folder, and
    nothing else changed: every stage that runs a model goes through to its figures (the templates
    "{sentence} It was {mask} ." end at {mask} for a causal LM; LoRA takes GPT-Neo's q_proj/v_proj)."""
    workdir = copy_workflow(tmp_path)
    (workdir / "decoder.yaml").write_text(f"model:\n  name: {tiny_checkpoint('gpt-neo')}\n")
    figures = [f"figures/F{k}_{slug}.png" for k, slug in (
        (1, "kernel_vs_ft"), (2, "prompt_vs_linear"), (3, "kernel_change"), (4, "lora_projection"),
        (5, "entk_spectrum"), (6, "rates"), (7, "learning_curves"), (9, "lpft_feature_change"), (10, "lpft_ntk"),
        (11, "lpft_id_ood"), (12, "lpft_calibration"), (13, "task_vectors"))]
    run = snakemake(workdir, *figures, *SMOKE, "decoder.yaml")
    assert run.returncode == 0, run.stderr[-4000:]
    output = run.stdout + run.stderr
    stats = output[output.index("Job stats") :]
    ran = {rule for rule, _ in re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.MULTILINE)}
    assert MODEL_RULES <= ran, MODEL_RULES - ran
    assert all((workdir / figure).stat().st_size > 10_000 for figure in figures)
    logs = "".join(path.read_text() for path in (workdir / "results/logs/entk_block").rglob("*.log"))
    assert "hook engine:" in logs and "unavailable" not in logs  # GPT-Neo runs on the fast engine
