"""The paper configuration (configs/paper.yaml): its whole graph once on CPU with tiny stand-ins, its DAG's
job counts, and a GPU request on every rule that runs a model.

The stand-in override (:func:`paper_stand_ins`) changes only model names to tiny random local checkpoints
(an MLM encoder, and a decoder where the paper config uses one), hub dataset paths to small local folders
laid out as hub repositories (the same config names, split names, columns and label ids), ``model.device``
to cpu, and sizes; :func:`test_stand_ins_change_only_models_data_and_sizes` holds it to that.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny_models import WORDS, save_tiny_checkpoint
from workflow_helpers import ROOT, copy_workflow, snakemake

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
PAPER = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())

SIZE_KEYS = {
    "test_size", "seeds", "tasks", "sample_sizes", "shots", "sizes", "finetune_sizes", "pool_size", "n", "n_test",
    "n_train", "n_rep", "finetune_reps", "finetune_steps", "finetune_eval_every", "steps", "eval_every",
    "batch_size", "block_size", "kernel_size", "top_k", "dims", "repetitions", "ns", "rhos", "width", "max_steps",
    "iterations", "samples", "p", "epochs", "linearized_seeds", "linearized_shots", "max_length", "val_size",
    "probe_size", "lora_rank", "lora_alpha", "rank", "alpha", "grid_points", "patience", "n_boot", "pool",
    "borders", "lambdas", "negation_lambdas", "truth_samples",
}
"""Keys whose values set how much is computed (sample sizes, steps, seeds, task lists, widths), not what."""

ALLOWED = [r"model\.(name|device)", r"\w+\.model\.name", r"tasks\.[\w-]+\.path"]
"""Besides size keys, what the stand-ins may change: model names, the device, dataset locations."""


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        return {key: value for k, v in tree.items() for key, value in _flatten(v, f"{prefix}{k}.").items()}
    return {prefix[:-1]: tree}


def _merge(base, override):
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))).capitalize() + "." for _ in range(n)]


def write_hub_stand_in(root: Path, task: dict, rows: int = 48, seed: int = 0) -> str:
    """A local folder laid out as the hub repository of ``task`` (``<config>/<split>-00000-of-00001.parquet``
    and the README's ``configs``): its train split and test split, with the task's columns and label ids
    0..C-1 (balanced). ``datasets.load_dataset(folder, task["name"], split=...)`` reads it."""
    config_name = task.get("name") or "default"
    (root / config_name).mkdir(parents=True, exist_ok=True)
    classes = len(task["labels"])
    files = []
    for i, split in enumerate(dict.fromkeys([task.get("split", "train"), task["test_split"]])):
        frame = pd.DataFrame({task.get("text_column", "text"): _sentences(rows, seed + i),
                              task.get("label_column", "label"): np.arange(rows) % classes})
        if task.get("text_column2"):
            frame[task["text_column2"]] = _sentences(rows, seed + 10 + i)
        frame.to_parquet(root / config_name / f"{split}-00000-of-00001.parquet")
        files.append(f"  - split: {split}\n    path: {config_name}/{split}-*")
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config_name}\n  data_files:\n"
                                    + "\n".join(files) + "\n---\n")
    return str(root)


def paper_stand_ins(folder: Path) -> dict:
    """The override of configs/paper.yaml that runs its whole graph on CPU in minutes (see the module doc)."""
    words = {w for task in PAPER["tasks"].values() for w in task.get("label_words", [])}
    encoder = save_tiny_checkpoint("roberta", folder / "encoder", extra_words=sorted(words))
    decoder = save_tiny_checkpoint("gpt-neo", folder / "decoder", extra_words=sorted(words))
    tasks = {name: {"path": write_hub_stand_in(folder / "data" / name, task, seed=i)}
             for i, (name, task) in enumerate(PAPER["tasks"].items()) if task["source"] == "hub"}
    override = yaml.safe_load((ROOT / "tests/workflow/paper_sizes.yaml").read_text())
    override["model"] = {**override.get("model", {}), "name": encoder, "device": "cpu"}
    for stage in ("entk", "earlystop", "taskvec"):
        if "model" in PAPER.get(stage, {}):
            override.setdefault(stage, {})["model"] = {"name": decoder}
    override["tasks"] = tasks
    return override


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """The paper configuration's whole graph, run once on CPU with the stand-ins."""
    folder = tmp_path_factory.mktemp("paper")
    workdir = copy_workflow(folder)
    override = paper_stand_ins(folder / "stand-ins")
    (workdir / "stand-ins.yaml").write_text(yaml.safe_dump(override, sort_keys=False))
    env = {**OFFLINE, "HF_HOME": str(folder / "hf-home")}
    dry = snakemake(workdir, "--configfile", "configs/paper.yaml", "stand-ins.yaml", "-n", env=env)
    assert dry.returncode == 0, dry.stderr[-4000:]
    run = snakemake(workdir, "--configfile", "configs/paper.yaml", "stand-ins.yaml", env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    return workdir, override, _job_counts(dry.stdout + dry.stderr), run.stdout + run.stderr


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats") :]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)
            if rule != "total"}


def _model_rules(workdir: Path) -> set[str]:
    """The rules whose jobs loaded a pretrained model (kernelft.text.models logs "loaded model")."""
    return {log.relative_to(workdir / "results/logs").parts[0]
            for log in (workdir / "results/logs").rglob("*.log") if "loaded model " in log.read_text()}


def test_stand_ins_change_only_models_data_and_sizes(tmp_path):
    override = paper_stand_ins(tmp_path)
    merged = _flatten(_merge(PAPER, override))
    changed = {key for key, value in merged.items() if _flatten(PAPER).get(key, object()) != value}
    others = {key for key in changed
              if key.split(".")[-1] not in SIZE_KEYS and not any(re.fullmatch(p, key) for p in ALLOWED)}
    assert not others, f"the stand-ins change more than models, data locations and sizes: {sorted(others)}"
    assert not set(_flatten(override)) - set(merged)  # nothing new: every key is one of the paper config's


def test_paper_dag_plans_every_task_without_downloads(tmp_path):
    """`snakemake -n --configfile configs/paper.yaml` from a fresh copy: the 14 tasks of Malladi et al. (the
    six sentence-pair tasks and TREC among them) at k in {16, 64} and five seeds, offline."""
    workdir = copy_workflow(tmp_path)
    dry = snakemake(workdir, "--configfile", "configs/paper.yaml", "-n", env=OFFLINE)
    assert dry.returncode == 0, dry.stderr[-4000:]
    counts = _job_counts(dry.stdout + dry.stderr)
    runs = 14 * 2 * 2 * 5  # tasks x heads x k x seeds
    assert counts["malladi_kernel"] == runs  # K(SGD), K(A-SignGD) and the LoRA kernel in one job
    assert counts["malladi_finetune"] == counts["malladi_linearized"] == runs  # every optimizer in one job
    assert counts["data_dev_sample"] == 14 * 2 * 5  # the k-shot dev set of each (task, k, seed)
    # entk: 3 binary tasks x n in {32, 128} (k = 16, 64 per label) x 5 seeds; spectrum: one per kernel.
    assert counts["entk"] == counts["spectrum"] == 3 * 2 * 5
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_paper_graph_runs_end_to_end_on_cpu(paper_run):
    workdir, _, planned, output = paper_run
    ran = _job_counts(output)
    assert set(planned) == set(ran), set(planned) ^ set(ran)  # every rule of the paper DAG executed
    figures = sorted(p.name for p in (workdir / "figures").glob("*.png"))
    assert len(figures) == 14, figures
    # The stand-ins are what ran: the decoder where the paper config names one, the hub-layout folders.
    logs = "".join(p.read_text() for p in (workdir / "results/logs").rglob("*.log"))
    assert "causal LM" in logs and "masked LM" in logs
    for task in ("trec", "mnli"):
        if task in yaml.safe_load((ROOT / "tests/workflow/paper_sizes.yaml").read_text())["malladi"]["tasks"]:
            assert (workdir / f"results/malladi/{task}").is_dir()


@pytest.mark.slow
def test_every_rule_that_runs_a_model_requests_a_gpu_on_the_paper_dag(paper_run, tmp_path):
    """Over the paper configuration's whole DAG (model.device: cuda), every job of a rule that loaded a model
    in the CPU run asks for one GPU, and no other job asks for one."""
    model_rules = _model_rules(paper_run[0])
    assert {"malladi_kernel", "malladi_finetune", "entk_block", "lpft_run", "taskvec_finetune"} <= model_rules
    workdir = copy_workflow(tmp_path)
    dry = snakemake(workdir, "--configfile", "configs/paper.yaml", "-n", env=OFFLINE)
    assert dry.returncode == 0, dry.stderr[-4000:]
    output = dry.stdout + dry.stderr
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", output, flags=re.MULTILINE | re.DOTALL)
    gpu = {}
    for rule, body in jobs:
        match = re.search(r"resources: .*\bgpu=(\d+)", body)
        gpu.setdefault(rule, set()).add(int(match.group(1)) if match else 0)
    assert model_rules <= set(gpu), model_rules - set(gpu)
    assert {rule: count for rule, count in gpu.items() if rule in model_rules and count != {1}} == {}
    assert {rule: count for rule, count in gpu.items() if rule not in model_rules and count != {0}} == {}
