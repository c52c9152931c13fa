"""A regular (non-editable) install ships the config schema and the `kernelft` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_validates_configs_without_the_source_tree(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("kernelft-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    # Run from an empty folder with only the installed copy on the path: no src/ to fall back on.
    env = {**os.environ, "PYTHONPATH": str(target)}
    check = subprocess.run([sys.executable, "-m", "kernelft", "check", str(ROOT / "config.yaml")], cwd=tmp_path,
                           capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr[-3000:]
    assert "config OK" in check.stdout
    where = subprocess.run([sys.executable, "-m", "kernelft", "schema"], cwd=tmp_path, capture_output=True,
                           text=True, env=env)
    assert where.stdout.strip().startswith(str(target))
    assert (target / "bin" / "kernelft").exists()  # the console script
