"""Kernel vs fine-tuning (Malladi et al. 2023, F1–F4): kernel_fit on known answers, tiny models,
figures, and the paper config (validated and dry-run without downloading anything)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.figure import Figure

from kernelft.core.config import check_config, seeds_for, validate_schema
from kernelft.entk import KernelKind
from kernelft.entk.naive import naive_kernel
from kernelft.kernels.solvers import solve
from kernelft.malladi.plots import FIGURES
from kernelft.malladi.records import kernel_accuracy, normalized_difference, relative_change, run_record
from kernelft.malladi.runs import balanced_subset, finetune_steps, pretrained_kernels, projection_errors
from kernelft.malladi.tables import figure_table, final_accuracy, mean_std_table
from kernelft.text.encoding import encode
from kernelft.text.models import HeadSpec, load_classifier, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]


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
    assert table.loc["linear", "acc"] == "90.0" and np.isnan(table.loc["linear", "acc_std"])  # one seed: no sd
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
    assert record["ft_accuracy"] == 0.75 and record["pretrained_accuracy"] == 0.5  # f0 = 0 predicts class 0
    assert record["gap"] == pytest.approx(-0.25)
    assert record["kernel_change"] == pytest.approx(0.5)
    assert record["linearized_accuracy"] == 0.625
    assert record["lora_kernel_accuracy"] == 1.0
    assert record["lora_kernel_difference"] == pytest.approx(0.0, abs=1e-12)
    bare = run_record(kernel, _curve(0.5, 0.75))
    assert np.isnan(bare["kernel_change"]) and np.isnan(bare["lora_kernel_accuracy"])
    assert final_accuracy(_curve(0.5, 0.75), "train") == 1.0


def test_run_record_of_an_asymmetric_kernel_measures_the_change_of_k_sgd():
    sgd = _arrays()
    # a non-symmetric kernel with the same class structure (K + a skew part), as K(A-SignGD) is
    skew = np.triu(np.ones((12, 12)), 1) - np.tril(np.ones((12, 12)), -1)
    signgd = {**sgd, "kernel_train": sgd["kernel_train"] + 0.1 * skew, "kernel_train_test": sgd["kernel_test"].T}
    after = {"kernel_train": 2.0 * sgd["kernel_train"]}
    record = run_record(signgd, _curve(0.5, 1.0), kernel_before=sgd, kernel_after=after, solver="asymmetric")
    assert record["kernel_accuracy"] == 1.0
    assert record["kernel_change"] == pytest.approx(1.0)  # against K(SGD), not the asymmetric kernel
    with pytest.raises(ValueError, match="needs kernel_train_test"):
        kernel_accuracy(sgd, "asymmetric")


def test_finetune_steps_from_epochs_or_fixed():
    assert finetune_steps({"epochs": 10, "steps": None, "batch_size": 16}, 32) == 20
    assert finetune_steps({"epochs": 10, "steps": None, "batch_size": 16}, 128) == 80
    assert finetune_steps({"epochs": 1, "steps": None, "batch_size": 16}, 20) == 2  # ceil
    assert finetune_steps({"epochs": 10, "steps": 1000, "batch_size": 8}, 128) == 1000


def test_final_accuracy_reads_the_selected_step():
    """Under select: best_dev the run's accuracy is that of the selected checkpoint, not the last step's."""
    curve = pd.DataFrame({"step": [0, 1, 2], "test_accuracy": [0.5, 0.9, 0.6], "train_accuracy": [0.5, 1.0, 1.0],
                          "selected": [False, True, False]})
    assert final_accuracy(curve) == 0.9 and final_accuracy(curve, "train") == 1.0
    assert final_accuracy(curve, first=True) == 0.5
    assert final_accuracy(curve.drop(columns="selected")) == 0.6


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
    arrays = pretrained_kernels(model, batch, batch)["sgd"]
    k = arrays["kernel_train"]
    assert k.shape == (4, 4) and arrays["kernel_test"].shape == (4, 4)
    np.testing.assert_allclose(k, k.T, rtol=1e-12)
    # the test set equals the train set here, so K(test, train) = K(train, train)
    np.testing.assert_allclose(arrays["kernel_test"], k, rtol=1e-10)
    assert np.all(np.linalg.eigvalsh(k) > -1e-10 * np.abs(k).max())
    assert arrays["f0_train"].shape == (4, 2)


def test_signgd_kernels_of_a_tiny_model_match_the_naive_contraction(tiny_prompt_model):
    model, batch = tiny_prompt_model
    train = {key: value[:3] for key, value in batch.items()}
    test = {key: value[3:] for key, value in batch.items()}
    both = pretrained_kernels(model, train, test, kinds=("sgd", "asymmetric_signgd"))
    arrays = both["asymmetric_signgd"]
    np.testing.assert_allclose(both["sgd"]["kernel_test"], naive_kernel(model, test, train), rtol=1e-10)
    assert both["sgd"]["seconds"] == arrays["seconds"]  # one call, one collection
    # K(A-SignGD)(x, x') = <g(x), sign g(x')> (Malladi et al. Sec. 4), from the plain Jacobian loop
    for key, (left, right) in {"kernel_train": (train, None), "kernel_test": (test, train),
                               "kernel_train_test": (train, test)}.items():
        np.testing.assert_allclose(arrays[key], naive_kernel(model, left, right, kind=KernelKind.SIGNGD), rtol=1e-10)
    assert arrays["kernel_test"].shape == (1, 3) and arrays["kernel_train_test"].shape == (3, 1)


def test_three_class_block_kernel_and_solver(tiny_bert_dir):
    head = HeadSpec("linear", 3)
    model = load_classifier(tiny_bert_dir, head, seed=0, dtype=torch.float64)
    texts = ["great flight", "terrible delay", "the food was great", "terrible wifi", "what a day", "lost my bag"]
    batch = encode(texts, load_tokenizer(tiny_bert_dir), head, max_length=16)
    arrays = pretrained_kernels(model, batch, batch)["sgd"]
    assert arrays["kernel_train"].shape == (6, 6, 3, 3) and arrays["f0_test"].shape == (6, 3)
    labels = np.array([0, 1, 2, 0, 1, 2])
    arrays |= {"train_labels": labels, "test_labels": labels}
    # least squares interpolates the training set: testing on it gives every label back
    assert kernel_accuracy(arrays).accuracy == 1.0
    # K(A-SignGD) of a 3-class task: the asymmetric solver is binary-only, least squares on it instead
    signgd = pretrained_kernels(model, batch, batch, kinds=("asymmetric_signgd",))["asymmetric_signgd"]
    assert signgd["kernel_train"].shape == (6, 6, 3, 3)
    np.testing.assert_allclose(signgd["kernel_test"], signgd["kernel_train"], rtol=1e-10)  # test = train here
    assert kernel_accuracy(signgd | {"train_labels": labels, "test_labels": labels}, "asymmetric").accuracy == 1.0


def test_projection_error_falls_with_the_dimension(tiny_prompt_model):
    model, batch = tiny_prompt_model
    errors = projection_errors(model, batch, [16, 4096], seed=0)
    assert np.isnan(errors["dim"].iloc[0]) and errors["relative_error"].iloc[0] == 0.0
    small, large = errors["relative_error"].iloc[1:]
    assert large < small and large < 0.1


def _runs() -> pd.DataFrame:
    rows = []
    for optimizer, kernel in (("sgd", "K(SGD)"), ("adam", "K(A-SignGD)")):
        for head, offset in (("prompt", 0.0), ("linear", 0.1)):
            for seed in (0, 1):
                sgd = optimizer == "sgd"
                rows.append({"task": "t", "k": 16, "head": head, "seed": seed, "optimizer": optimizer,
                             "kernel": kernel, "kernel_accuracy": 0.7 + 0.01 * seed, "kernel_train_accuracy": 1.0,
                             "ft_accuracy": 0.72 + offset, "ft_train_accuracy": 1.0, "pretrained_accuracy": 0.5,
                             "gap": 0.02 + offset - 0.01 * seed, "kernel_change": 0.1 + offset + (0.0 if sgd else 0.5),
                             "linearized_accuracy": 0.7 if seed == 0 else np.nan,
                             "lora_kernel_accuracy": 0.65 if seed == 0 and sgd else np.nan,
                             "lora_kernel_difference": 0.3 if seed == 0 and sgd else np.nan})
    return pd.DataFrame(rows)


def test_figure_tables_and_plots():
    runs = _runs()
    projection = pd.DataFrame({"task": "t", "head": "prompt", "n": 4, "dim": [np.nan, 64, 256],
                               "relative_error": [0.0, 0.2, 0.1], "seconds": 1.0})
    f1 = figure_table(runs, "F1").set_index(["head", "optimizer"])
    assert f1.loc[("linear", "sgd"), "ft_accuracy"] == "82.0 (0.0)" and f1.loc[("prompt", "adam"), "seeds"] == 2
    assert len(f1) == 4
    f3 = figure_table(runs, "F3").set_index(["head", "optimizer"])
    assert f3.loc[("prompt", "sgd"), "kernel_change"] == "0.100 (0.000)"
    assert f3.loc[("prompt", "adam"), "kernel_change"] == "0.600 (0.000)"
    assert f3.loc[("prompt", "adam"), "linearized_seeds"] == 1
    f4 = figure_table(runs, "F4", projection)
    assert set(f4["panel"]) == {"lora", "projection"} and len(f4) == 4
    assert set(f4.dropna(subset=["optimizer"])["optimizer"]) == {"sgd"}
    assert "abs_gap_mean" in figure_table(runs, "F2")
    for name, plot in FIGURES.items():
        figure = plot(runs, projection) if name == "F4" else plot(runs)
        assert isinstance(figure, Figure)
        if name in ("F1", "F2"):  # one panel per optimizer
            assert [ax.get_title() for ax in figure.axes[:2]] == ["SGD-FT vs K(SGD)", "Adam-FT vs K(A-SignGD)"]
    one_optimizer = FIGURES["F1"](runs[runs["optimizer"] == "sgd"])
    assert len(one_optimizer.axes) == 1
    with pytest.raises(ValueError, match="F1: DataFrame lacks columns"):
        FIGURES["F1"](runs.drop(columns="ft_accuracy"))


def _merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_paper_config_validates():
    config = _merged(yaml.safe_load((ROOT / "config.yaml").read_text()),
                     yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text()))
    validate_schema(config)
    check_config(config)
    assert config["model"]["name"] == "roberta-base"
    assert config["malladi"]["shots"] == [16, 64] and config["malladi"]["seeds"] == [13, 21, 42, 87, 100]
    assert all(seeds_for(config["malladi"], k) == [13, 21, 42, 87, 100] for k in (16, 64))
    assert config["tasks"]["sst2"]["label_words"] == ["terrible", "great"]


def _default_with(malladi: dict) -> dict:
    """config.yaml with k in {16, 64} (k = 64 on seed 0 only) and ``malladi`` over its malladi section."""
    two_k = {"shots": [16, 64], "seeds_by_k": [{"k": 64, "seeds": [0]}]}
    return _merged(yaml.safe_load((ROOT / "config.yaml").read_text()), {"malladi": {**two_k, **malladi}})


def test_bad_malladi_config_names_the_key():
    config = _default_with({"linearized_seeds": [7]})
    with pytest.raises(ValueError, match="malladi.linearized_seeds"):
        check_config(config)
    config = _default_with({"tasks": ["nope"]})
    with pytest.raises(ValueError, match="malladi.tasks names unknown task 'nope'"):
        check_config(config)
    config = _default_with({"linearized_shots": [32]})
    with pytest.raises(ValueError, match=r"malladi.linearized_shots: \[32\] not in malladi.shots=\[16, 64\]"):
        check_config(config)
    config = _default_with({"seeds_by_k": [{"k": 32, "seeds": [0]}]})
    with pytest.raises(ValueError, match=r"malladi.seeds_by_k.0.k=32 is not in malladi.shots=\[16, 64\]"):
        check_config(config)
    config = _default_with({"linearized_shots": [64], "linearized_seeds": [1]})
    with pytest.raises(ValueError, match=r"malladi.linearized_seeds: \[1\] not among the seeds \[0\] .* k = 64"):
        check_config(config)
    config = _default_with({"optimizers": ["adagrad"]})
    with pytest.raises(ValueError, match="malladi.optimizers"):
        validate_schema(config)
    config = _default_with({"finetune": {"lr": 1e-3}})
    with pytest.raises(ValueError, match="malladi.finetune.*'lr' was unexpected"):
        validate_schema(config)


@pytest.mark.slow
def test_seeds_for_each_k():
    section = {"seeds": [0, 1], "seeds_by_k": [{"k": 64, "seeds": [0]}]}
    assert seeds_for(section, 16) == [0, 1] and seeds_for(section, 64) == [0]
    assert seeds_for({"seeds": [3]}, 64) == [3]
