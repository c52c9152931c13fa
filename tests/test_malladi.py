"""Kernel vs fine-tuning (Malladi et al. 2023, F1–F4): kernel_fit on known answers, tiny models,
figures, and the paper config (validated and dry-run without downloading anything)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.figure import Figure

from kernelft.config import check_config, validate_schema
from kernelft.encoding import encode
from kernelft.kernel_fit import (
    balanced_subset,
    figure_table,
    final_accuracy,
    kernel_accuracy,
    mean_std_table,
    normalized_difference,
    pretrained_kernels,
    projection_errors,
    relative_change,
    run_record,
)
from kernelft.models import HeadSpec, load_classifier, load_tokenizer
from kernelft.plots.malladi import FIGURES
from kernelft.solvers import solve

ROOT = Path(__file__).resolve().parents[1]


def test_relative_change_and_normalized_difference_by_hand():
    before = np.eye(2)
    assert relative_change(2 * before, before) == pytest.approx(1.0)  # ‖I‖/‖I‖
    assert relative_change(before + np.array([[0, 0.1], [0.1, 0]]), before) == pytest.approx(0.1)
    assert normalized_difference(1e-6 * before, before) == pytest.approx(0.0, abs=1e-12)  # scale-free
    a, b = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    assert normalized_difference(a, b) == pytest.approx(np.sqrt(2))
    with pytest.raises(ValueError, match="shapes differ"):
        relative_change(np.eye(3), np.eye(2))


def test_mean_std_table_in_the_papers_style():
    runs = pd.DataFrame({"task": "t", "k": 16, "head": ["prompt", "prompt", "linear"], "acc": [0.5, 0.7, 0.9]})
    table = mean_std_table(runs, ["task", "k", "head"], ["acc"]).set_index("head")
    assert table.loc["prompt", "acc_mean"] == pytest.approx(60.0)
    assert table.loc["prompt", "acc_std"] == pytest.approx(100 * np.std([0.5, 0.7], ddof=1))
    assert table.loc["prompt", "acc"] == "60.0 (14.1)"
    assert table.loc["linear", "acc"] == "90.0 (0.0)"  # one seed: std 0
    assert list(table["seeds"]) == [1, 2]


def test_balanced_subset_keeps_labels_balanced():
    test = pd.DataFrame({"text": [f"x{i}" for i in range(40)], "label": [i % 2 for i in range(40)]})
    subset = balanced_subset(test, 10, 2, seed=0)
    assert len(subset) == 10 and subset["label"].value_counts().tolist() == [5, 5]
    assert len(balanced_subset(test, 100, 2, seed=0)) == 40


def test_svm_on_two_points_has_the_max_margin_decision():
    # x = ±1 with a linear kernel: α = 1/2 each (≤ C), w = 1, b = 0, so the decision is x itself.
    k_train = np.array([[1.0, -1.0], [-1.0, 1.0]])
    k_test = np.array([[0.5, -0.5], [-2.0, 2.0]])  # x = 0.5 and x = -2
    result = solve("svm", k_train, k_test, np.array([1, 0]), np.array([1, 0]))
    np.testing.assert_allclose(result.decision, [0.5, -2.0], atol=1e-6)
    assert result.accuracy == 1.0


def _arrays(seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    """A separable binary problem with a linear kernel, in the layout of pretrained_kernels."""
    rng = np.random.default_rng(seed)
    y_tr, y_te = np.arange(12) % 2, np.arange(8) % 2
    x_tr, x_te = rng.normal(size=(12, 3)) * 0.3, rng.normal(size=(8, 3)) * 0.3
    x_tr[:, 0] += 3 * (2 * y_tr - 1)
    x_te[:, 0] += 3 * (2 * y_te - 1)
    return {
        "kernel_train": scale * x_tr @ x_tr.T,
        "kernel_test": scale * x_te @ x_tr.T,
        "f0_train": np.zeros((12, 2)),
        "f0_test": np.zeros((8, 2)),
        "train_labels": y_tr,
        "test_labels": y_te,
    }


def _curve(start: float, end: float, train: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"step": [0, 1, 2], "test_accuracy": [start, np.nan, end],
                         "train_accuracy": [0.5, np.nan, train]})


def test_run_record_numbers():
    kernel = _arrays()
    after = {"kernel_train": 1.5 * kernel["kernel_train"]}
    lora = {**_arrays(scale=1e-3)}  # the same kernel up to scale: same predictions, difference 0
    record = run_record(kernel, _curve(0.5, 0.75), kernel_after=after, linearized_curve=_curve(0.5, 0.625), lora=lora)
    assert record["kernel_accuracy"] == 1.0 and record["kernel_train_accuracy"] == 1.0
    assert record["ft_accuracy"] == 0.75 and record["pretrained_accuracy"] == 0.5
    assert record["gap"] == pytest.approx(-0.25)
    assert record["kernel_change"] == pytest.approx(0.5)
    assert record["linearized_accuracy"] == 0.625
    assert record["lora_kernel_accuracy"] == 1.0
    assert record["lora_kernel_difference"] == pytest.approx(0.0, abs=1e-12)
    bare = run_record(kernel, _curve(0.5, 0.75))
    assert np.isnan(bare["kernel_change"]) and np.isnan(bare["lora_kernel_accuracy"])
    assert final_accuracy(_curve(0.5, 0.75), "train") == 1.0


def test_kernel_accuracy_adjust_for_init_uses_f0():
    arrays = _arrays()
    # f0 equal to the ±1 truth on both sets: the residual is 0 and the predictions are f0 itself
    arrays["f0_train"] = np.stack([np.zeros(12), 2.0 * arrays["train_labels"] - 1], axis=1)
    arrays["f0_test"] = np.stack([np.zeros(8), 2.0 * arrays["test_labels"] - 1], axis=1)
    arrays["kernel_test"] = -arrays["kernel_test"]  # a kernel that alone would get every test point wrong
    assert kernel_accuracy(arrays).accuracy == 0.0
    assert kernel_accuracy(arrays, adjust_for_init=True).accuracy == 1.0


@pytest.fixture(scope="module")
def tiny_prompt_model(tiny_bert_dir):
    head = HeadSpec("prompt", 2, ("great", "terrible"))
    model = load_classifier(tiny_bert_dir, head, dtype=torch.float64)
    texts = ["great flight and a great crew", "terrible delay", "the food was great", "terrible wifi"]
    batch = encode(texts, load_tokenizer(tiny_bert_dir), head, max_length=16)
    return model, batch


def test_pretrained_kernels_on_a_tiny_model(tiny_prompt_model):
    model, batch = tiny_prompt_model
    arrays = pretrained_kernels(model, batch, batch)
    k = arrays["kernel_train"]
    assert k.shape == (4, 4) and arrays["kernel_test"].shape == (4, 4)
    np.testing.assert_allclose(k, k.T, rtol=1e-12)
    # the test set equals the train set here, so K(test, train) = K(train, train)
    np.testing.assert_allclose(arrays["kernel_test"], k, rtol=1e-10)
    assert np.all(np.linalg.eigvalsh(k) > -1e-10 * np.abs(k).max())
    assert arrays["f0_train"].shape == (4, 2)


def test_three_class_block_kernel_and_solver(tiny_bert_dir):
    head = HeadSpec("linear", 3)
    model = load_classifier(tiny_bert_dir, head, seed=0, dtype=torch.float64)
    texts = ["great flight", "terrible delay", "the food was great", "terrible wifi", "what a day", "lost my bag"]
    batch = encode(texts, load_tokenizer(tiny_bert_dir), head, max_length=16)
    arrays = pretrained_kernels(model, batch, batch)
    assert arrays["kernel_train"].shape == (6, 6, 3, 3) and arrays["f0_test"].shape == (6, 3)
    labels = np.array([0, 1, 2, 0, 1, 2])
    arrays |= {"train_labels": labels, "test_labels": labels}
    # least squares interpolates the training set: testing on it gives every label back
    assert kernel_accuracy(arrays).accuracy == 1.0


def test_projection_error_falls_with_the_dimension(tiny_prompt_model):
    model, batch = tiny_prompt_model
    errors = projection_errors(model, batch, [16, 4096], seed=0)
    assert np.isnan(errors["dim"].iloc[0]) and errors["relative_error"].iloc[0] == 0.0
    small, large = errors["relative_error"].iloc[1:]
    assert large < small and large < 0.1


def _runs() -> pd.DataFrame:
    rows = []
    for head, offset in (("prompt", 0.0), ("linear", 0.1)):
        for seed in (0, 1):
            rows.append({"task": "t", "k": 16, "head": head, "seed": seed, "kernel_accuracy": 0.7 + 0.01 * seed,
                         "kernel_train_accuracy": 1.0, "ft_accuracy": 0.72 + offset, "ft_train_accuracy": 1.0,
                         "pretrained_accuracy": 0.5, "gap": 0.02 + offset - 0.01 * seed, "kernel_change": 0.1 + offset,
                         "linearized_accuracy": 0.7 if seed == 0 else np.nan,
                         "lora_kernel_accuracy": 0.65 if seed == 0 else np.nan,
                         "lora_kernel_difference": 0.3 if seed == 0 else np.nan})
    return pd.DataFrame(rows)


def test_figure_tables_and_plots():
    runs = _runs()
    projection = pd.DataFrame({"task": "t", "head": "prompt", "n": 4, "dim": [np.nan, 64, 256],
                               "relative_error": [0.0, 0.2, 0.1], "seconds": 1.0})
    f1 = figure_table(runs, "F1").set_index("head")
    assert f1.loc["linear", "ft_accuracy"] == "82.0 (0.0)" and f1.loc["prompt", "seeds"] == 2
    f3 = figure_table(runs, "F3").set_index("head")
    assert f3.loc["prompt", "kernel_change"] == "0.100 (0.000)" and f3.loc["prompt", "linearized_seeds"] == 1
    f4 = figure_table(runs, "F4", projection)
    assert set(f4["panel"]) == {"lora", "projection"} and len(f4) == 4
    assert "abs_gap_mean" in figure_table(runs, "F2")
    for name, plot in FIGURES.items():
        figure = plot(runs, projection) if name == "F4" else plot(runs)
        assert isinstance(figure, Figure)
    with pytest.raises(ValueError, match="F1: DataFrame lacks columns"):
        FIGURES["F1"](runs.drop(columns="ft_accuracy"))


def _merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_paper_config_validates():
    config = _merged(yaml.safe_load((ROOT / "config.yaml").read_text()),
                     yaml.safe_load((ROOT / "configs" / "paper-malladi.yaml").read_text()))
    validate_schema(config)
    check_config(config)
    assert config["model"]["name"] == "roberta-base"
    assert config["malladi"]["shots"] == [16, 64] and config["malladi"]["seeds"] == [13, 21, 42, 87, 100]
    assert config["tasks"]["sst2"]["label_words"] == ["terrible", "great"]


def test_bad_malladi_config_names_the_key():
    config = _merged(yaml.safe_load((ROOT / "config.yaml").read_text()),
                     {"malladi": {"linearized_seeds": [7]}})
    with pytest.raises(ValueError, match="malladi.linearized_seeds"):
        check_config(config)
    config = _merged(yaml.safe_load((ROOT / "config.yaml").read_text()), {"malladi": {"tasks": ["nope"]}})
    with pytest.raises(ValueError, match="malladi.tasks names unknown task 'nope'"):
        check_config(config)


@pytest.mark.slow
def test_paper_config_dry_runs_without_downloads(tmp_path):
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("workflow", "configs", "profiles"):
        shutil.copytree(ROOT / name, tmp_path / name)
    env_run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "figures/F1_kernel_vs_ft.png",
         "figures/F4_lora_projection.png", "--configfile", "configs/paper-malladi.yaml"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                            "HF_DATASETS_OFFLINE": "1"},
    )
    assert env_run.returncode == 0, (env_run.stdout + env_run.stderr)[-3000:]
    out = env_run.stdout + env_run.stderr
    # 8 tasks x 2 heads x 2 k x 5 seeds kernels and FT runs
    assert "malladi_kernel" in out and "160" in out
    assert not (tmp_path / "results").exists()
