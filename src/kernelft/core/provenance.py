"""Metadata JSON written beside every output: config slice, package versions, seed, git commit."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "kernelft",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "snakemake",
)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, ``None`` where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(directory: str | Path = ".") -> str | None:
    """HEAD commit of the repository holding ``directory`` (``None`` outside git), '+dirty' if modified."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def metadata_path(output: str | Path) -> Path:
    """Where the metadata of ``output`` goes: ``<output>.meta.json``."""
    return Path(f"{output}.meta.json")


def write_metadata(output: str | Path, config: dict[str, Any], seed: int | None = None, **extra: Any) -> Path:
    """Write ``<output>.meta.json`` with the config slice, versions, seed, commit and ``extra``."""
    record = {
        "output": str(output),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "seed": seed,
        "git_commit": git_commit(Path(__file__).parent),
        "python": platform.python_version(),
        "packages": package_versions(),
        **extra,
    }
    path = metadata_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
