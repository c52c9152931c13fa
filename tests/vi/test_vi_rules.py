"""The vi rules' params (workflow/rules/vi.smk) carry the `vi` keys the jobs' outputs depend on, new ones included:
read from the parsed workflow (Snakemake's API, in a subprocess, in a copy of the repository), nothing run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from workflow_helpers import copy_workflow

PRINT_PARAMS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

out = {}
for label, files in (("default", []), ("override", ["override.yaml"])):
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
                                config_settings=ConfigSettings(configfiles=[Path(f) for f in files]),
                                snakefile=Path("Snakefile"), workdir=Path("."))
        workflow.dag()
        out[label] = {rule.name: dict(rule.params.items()) for rule in workflow._workflow.rules
                      if rule.name.startswith("vi_")}
print("PARAMS" + json.dumps(out, default=str))
"""

OVERRIDE = """
vi:
  hidden_layers: 2
  drop_mean: split
  shapley: {design: logistic, beta: [0, 10, 20]}
  highdim: {design: teacher, features: [1], teacher: {width: 5}}
"""


@pytest.fixture(scope="module")
def vi_params(tmp_path_factory) -> dict:
    workdir = copy_workflow(tmp_path_factory.mktemp("vi_rules"))
    (workdir / "override.yaml").write_text(OVERRIDE)
    run = subprocess.run([sys.executable, "-c", PRINT_PARAMS], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("PARAMS"))
    return json.loads(line.removeprefix("PARAMS"))


FITTING_RULES = ("vi_simulate", "vi_coverage", "vi_shapley", "vi_highdim", "vi_real")


def test_every_fitting_rule_holds_the_network_depth_and_the_drop_mean(vi_params):
    for rule in FITTING_RULES:
        assert vi_params["default"][rule]["vi"]["hidden_layers"] == 1, rule  # the schema default, filled in
        assert vi_params["default"][rule]["vi"]["drop_mean"] == "train", rule
        assert vi_params["override"][rule]["vi"]["hidden_layers"] == 2, rule
        assert vi_params["override"][rule]["vi"]["drop_mean"] == "split", rule
    for rule in ("vi_table", "vi_tree_kernel", "vi_full_table"):  # no fit: a new learner key does not rerun them
        assert "hidden_layers" not in vi_params["override"][rule]["vi"], rule


def test_the_studies_hold_their_design_keys(vi_params):
    default, override = vi_params["default"], vi_params["override"]
    assert default["vi_shapley"]["vi"]["shapley"]["design"] == "linear"
    shapley = override["vi_shapley"]["vi"]["shapley"]
    assert (shapley["design"], shapley["beta"], shapley["n"]) == ("logistic", [0, 10, 20], 1000)
    highdim = default["vi_highdim"]["vi"]["highdim"]
    assert highdim["design"] == "linear" and highdim["features"] is None and highdim["teacher"]["width"] == 12
    highdim = override["vi_highdim"]["vi"]["highdim"]
    assert highdim["design"] == "teacher" and highdim["features"] == [1] and highdim["teacher"]["width"] == 5
    assert "shapley" not in override["vi_highdim"]["vi"] and "highdim" not in override["vi_shapley"]["vi"]
