"""The workflow through Snakemake's SLURM executor (profiles/slurm) on a real single-node SLURM.

tests/slurm/start.sh starts munge, MariaDB, slurmdbd, slurmctld and slurmd on this machine (installed by
tests/slurm/install.sh, which .ci/run calls); the test submits a slice of the smoke workflow (the eNTK
blocks and their merge, one fine-tuning run, with the data jobs they need), checks the outputs and then
checks every job in `sacct`: one COMPLETED job per Snakemake job, named by its rule. It skips, saying
why, where SLURM is not installed, where it is not root, or where the machine has a SLURM of its own.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from workflow_helpers import ROOT, SNAKEMAKE, copy_workflow, snakemake

SCRIPTS = ROOT / "tests" / "slurm"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "squeue", "scontrol", "scancel")
# A slice of the smoke workflow that runs both GPU-capable rules (entk_block, finetune) as SLURM jobs.
TARGETS = ("results/entk/tweets-sentiment2/n16-seed0.npz", "results/finetune/tweets-sentiment2/ft/n4-seed0.csv")
# One train x train and one test x train block (block_size 16 on n = 16, test_size 16).
EXPECTED_JOBS = {"data_task": 1, "data_train_sample": 2, "entk_block": 2, "entk": 1, "finetune": 1}
# squeue's pending reasons of a job that the cluster as configured will never start (squeue(1), JOB REASON
# CODES): the run fails at once with the reason instead of waiting out its timeout.
NEVER_STARTS = ("PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "ReqNodeNotAvail",
                "InvalidAccount", "InvalidQOS", "PartitionDown", "PartitionInactive", "NodeDown")


def _why_not() -> str | None:
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"SLURM not installed (missing {', '.join(missing)}): run `sudo tests/slurm/install.sh`"
    if os.geteuid() != 0:
        return "the test SLURM needs root (it starts munged, slurmd and MariaDB)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return 'snakemake-executor-plugin-slurm not installed: pip install -e ".[cluster]"'
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not conf.is_symlink():
        return "this machine has its own SLURM (/etc/slurm/slurm.conf): not starting a test cluster beside it"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node SLURM with accounting; yields the environment that points at it."""
    state = Path(tempfile.mkdtemp(prefix="kernelft-slurm-"))  # under /tmp: the munge and mysql users must reach it
    started = subprocess.run(["bash", SCRIPTS / "start.sh", state], capture_output=True, text=True)
    try:
        assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\nlogs in {state}/log"
        yield {"SLURM_CONF": str(state / "etc" / "slurm.conf")}
    finally:
        subprocess.run(["bash", SCRIPTS / "stop.sh", state, "--clean"], capture_output=True, text=True)


def _sacct(env: dict) -> list[dict]:
    fields = ["JobID", "JobName", "Comment", "State", "ExitCode", "Elapsed"]
    run = subprocess.run(
        ["sacct", "-a", "-X", "-n", "--parsable2", f"--format={','.join(fields)}"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    print(run.stdout)  # shown with pytest -s: the jobs as SLURM accounted them
    return [dict(zip(fields, line.split("|"))) for line in run.stdout.splitlines() if line.strip()]


def _stuck_jobs(env: dict) -> list[str]:
    """``squeue`` lines (id|name|reason) of the pending jobs whose reason is in :data:`NEVER_STARTS`."""
    run = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i|%j|%r"], capture_output=True, text=True,
                         env={**os.environ, **env})
    return [line for line in run.stdout.splitlines() if line.rsplit("|", 1)[-1] in NEVER_STARTS]


def _snakemake_on_slurm(workdir: Path, *args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``snakemake --cores 2 *args`` in ``workdir``, as :func:`workflow_helpers.snakemake`, but watching the queue:
    a job that can never start (:func:`_stuck_jobs`) fails the test at once, with its reason and the cluster's
    view of it."""
    out, err = workdir / "snakemake.out", workdir / "snakemake.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, stdout=stdout, stderr=stderr,
                                   text=True, env={**os.environ, **env})
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                stuck = _stuck_jobs(env)
                if stuck:
                    job = stuck[0].split("|", 1)[0]
                    details = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                                             env={**os.environ, **env}).stdout
                    pytest.fail(f"a SLURM job can never start: {stuck}\n{details}\n"
                                f"snakemake: {err.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"snakemake on SLURM ran past {timeout} s\n{err.read_text()[-6000:]}")
                time.sleep(2)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
                subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, env={**os.environ, **env})
    return subprocess.CompletedProcess(process.args, process.returncode, out.read_text(), err.read_text())


def test_smoke_slice_runs_through_the_slurm_executor(tmp_path, slurm_cluster):
    workdir = copy_workflow(tmp_path)
    (workdir / "slurm-test.yaml").write_text("entk:\n  block_size: 16\n  max_memory_gb: 1.0\n")
    run = _snakemake_on_slurm(
        workdir,
        "--profile", "profiles/slurm",
        "--configfile", "configs/smoke.yaml", "slurm-test.yaml",
        # Site-specific values a user passes on a real cluster (README): the test cluster's account/partition.
        "--default-resources", "slurm_account=root", "slurm_partition=debug", "mem_mb=1000", "runtime=30",
        "--slurm-init-seconds-before-status-checks", "2",
        "--jobs", "4",
        "--retries", "0",
        *TARGETS,
        env=slurm_cluster,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    for target in TARGETS:
        assert (workdir / target).stat().st_size > 0
        assert (workdir / f"{target}.meta.json").exists()
    assert "has been submitted with SLURM jobid" in run.stderr

    jobs = _sacct(slurm_cluster)
    assert all(job["State"] == "COMPLETED" and job["ExitCode"] == "0:0" for job in jobs), jobs
    # The plugin writes "rule_<rule>_wildcards_<values>" into the job comment (AccountingStoreFlags=job_comment).
    rules = [job["Comment"].removeprefix("rule_").split("_wildcards_")[0] for job in jobs]
    assert {rule: rules.count(rule) for rule in set(rules)} == EXPECTED_JOBS

    again = snakemake(workdir, "--configfile", "configs/smoke.yaml", "slurm-test.yaml", "-n", *TARGETS)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_job_that_can_never_start_is_reported_at_once(slurm_cluster):
    # More CPUs than the test node has: SLURM queues the job with reason PartitionConfig for ever.
    env = {**os.environ, **slurm_cluster}
    cpus = os.cpu_count() or 1
    submitted = subprocess.run(["sbatch", "--parsable", "-A", "root", "-p", "debug", "-c", str(cpus + 1), "--wrap",
                                "true"], capture_output=True, text=True, env=env, check=True)
    job = submitted.stdout.strip().split(";")[0]
    try:
        for _ in range(10):  # the controller sets the reason on its first scheduling pass
            stuck = _stuck_jobs(slurm_cluster)
            if stuck:
                break
            time.sleep(1)
        assert [line.split("|")[0] for line in stuck] == [job], stuck
    finally:
        subprocess.run(["scancel", job], capture_output=True, env=env)
