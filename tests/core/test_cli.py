"""The `kernelft` command: --help, config checks that name the key, defaults from the packaged schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kernelft.cli import main, parser
from kernelft.core.config import SCHEMA_PATH, section_defaults

ROOT = Path(__file__).resolve().parents[2]


def test_help_runs_as_a_module():
    run = subprocess.run([sys.executable, "-m", "kernelft", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "check" in run.stdout and "defaults" in run.stdout


def test_check_accepts_the_shipped_configs(capsys):
    for extra in ("configs/smoke.yaml", "configs/paper.yaml"):
        assert main(["check", str(ROOT / "config.yaml"), str(ROOT / extra)]) == 0
    assert "config OK" in capsys.readouterr().out


def test_check_names_the_key_of_a_bad_value(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entk:\n  sample_sizes: [15]\n")
    assert main(["check", str(ROOT / "config.yaml"), str(bad)]) == 2
    assert "entk.sample_sizes" in capsys.readouterr().err


def test_check_names_a_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_defaults_come_from_the_packaged_schema(capsys):
    assert SCHEMA_PATH.is_file() and SCHEMA_PATH.parent.name == "core"
    assert main(["defaults", "spectrum"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"spectrum": section_defaults("spectrum")}
    assert main(["defaults", "no-such-section"]) == 2


def test_entk_help_gives_every_flag_its_default(capsys):
    commands = next(action for action in parser()._actions if action.dest == "command")
    entk = commands.choices["entk"]
    for action in entk._actions:
        if action.option_strings and action.dest not in ("help", "output"):
            assert "default:" in action.help, action.dest
    assert entk.get_default("model") == section_defaults("model")["name"]
    assert entk.get_default("kind") == section_defaults("entk")["kind"]
    with pytest.raises(SystemExit) as done:
        main(["entk", "--help"])
    assert done.value.code == 0
    assert "--label-column" in capsys.readouterr().out
