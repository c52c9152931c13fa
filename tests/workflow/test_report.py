"""What a user of a published workflow expects: `--report` with every figure, `--archive`, the paper config.

The report and archive tests read the session's smoke run (conftest.smoke_run) and build from it;
the paper-config test only dry-runs (no download: HF_HUB_OFFLINE=1, and a dry run starts no job).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import zipfile

import pytest
from workflow_helpers import ROOT, copy_workflow, snakemake

SMOKE = ("--configfile", "configs/smoke.yaml")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.slow
def test_report_holds_every_figure_its_caption_and_table(smoke_run):
    run = snakemake(smoke_run, *SMOKE, "--report", "report.zip")
    assert run.returncode == 0, run.stderr[-4000:]
    with zipfile.ZipFile(smoke_run / "report.zip") as archive:
        names = archive.namelist()
        pages = [name for name in names if name.endswith((".html", ".js"))]
        html = "".join(archive.read(name).decode("utf-8", "replace") for name in pages)
    figures = sorted(path.name for path in (smoke_run / "figures").glob("*.png"))
    assert len(figures) >= 4
    for png in figures:
        # The report stores each file as report/data/raw/<hash>/<file name>.
        assert any(name.endswith(f"/{png}") for name in names), f"{png} missing from the report"
        table = f"{png.removesuffix('.png')}.csv"
        if (smoke_run / "results" / "tables" / table).exists():
            assert any(name.endswith(f"/{table}") for name in names), f"{table} missing from the report"
    # Captions (one sentence from each of two) and the workflow description, rendered with the config.
    assert "Eigenvalue spectra of the empirical NTK" in html and "Variable importance (VI)" in html
    assert "kernel (empirical NTK) view of fine-tuning" in html
    assert "packaged:all-MiniLM-L6-v2" in html and "{{ snakemake" not in html


@pytest.mark.slow
def test_archive_holds_code_config_and_external_inputs(tmp_path):
    """`snakemake --archive` packs the git-tracked workflow files; here a copy is made a git repository."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    (tmp_path / "workflow").mkdir()
    workdir = copy_workflow(tmp_path / "workflow")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=workdir, check=True)
    subprocess.run([*git, "add", "Snakefile", "config.yaml", "workflow", "configs", "profiles", "src"], cwd=workdir,
                   check=True)
    archive = tmp_path / "kernelft.tar.gz"
    run = snakemake(workdir, *SMOKE, "--archive", str(archive))
    assert run.returncode == 0, run.stderr[-4000:]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"Snakefile", "config.yaml", "configs/smoke.yaml", "src/kernelft/core/config.schema.yaml",
            "workflow/rules/common.smk", "workflow/scripts/entk/block.py", "workflow/report/earlystop/F5.rst"} <= names


def test_every_workflow_file_is_tracked_by_git():
    """--archive packs only git-tracked files: every rule, script, caption, schema, config and env must be."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
                  .stdout.split())
    needed = {str(path.relative_to(ROOT)) for folder in ("workflow", "configs", "profiles", "envs")
              for path in (ROOT / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    needed |= {"Snakefile", "config.yaml"}
    assert not sorted(needed - tracked), f"untracked workflow files: {sorted(needed - tracked)}"
