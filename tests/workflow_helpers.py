"""Run the workflow in a temporary copy of the repository (shared by the report, SLURM and reliability tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_workflow(destination: Path) -> Path:
    """Copy what `snakemake` needs (Snakefile, config, workflow/, configs/, profiles/, the library in src/) into
    ``destination``; the Snakefile puts that src/ first on the path of every job."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, destination / name)
    for name in ("workflow", "configs", "profiles", "src"):
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return destination


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float | None = None, **kwargs):
    """``snakemake --cores 2 *args`` in ``workdir``; returns the CompletedProcess (stdout and stderr captured)."""
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        **kwargs,
    )
