"""The LP-FT stage (Tomihari & Sato 2024): data sets, per-method configs, calibration rows, tables,
and the eNTK decomposition of a real (tiny) transformer with a linear head."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.func import functional_call, jacrev

from kernelft.core.config import ConfigError, check_config, load_config, section_defaults, validate
from kernelft.core.tables import mean_sd
from kernelft.entk import add_lora, naive_kernel
from kernelft.lpft import METHODS
from kernelft.lpft.calibration import feature_kernel_from_jacobians, ft_effective_kernel, pre_train_effective_kernel
from kernelft.lpft.ntk import entk_decomposition, start_of_ft_decompositions
from kernelft.lpft.stage import (
    ADDED_KEYS,
    calibration_row,
    epoch_ends,
    evaluation_sets,
    paper_table,
    pooled_reliability,
    run_config,
    run_params,
)
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.inference import extract_features
from kernelft.training.runner import FinetuneConfig

ROOT = Path(__file__).resolve().parents[2]

# --- data and configs -----------------------------------------------------------------------------


def _table(n: int, prefix: str) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"{prefix} {i}" for i in range(n)], "label": [i % 2 for i in range(n)], "topic": ""})


def test_evaluation_sets_are_balanced_fixed_and_disjoint_from_training():
    pool, train = _table(40, "pool"), _table(40, "pool").iloc[:10]
    oods = [_table(20, "ood"), _table(20, "other")]
    sets = evaluation_sets(_table(20, "test"), oods, pool, train, test_size=8, val_size=6,
                           num_classes=2, seed=0, data_seed=1)
    assert {name: len(frame) for name, frame in sets.items()} == {"test": 8, "ood": 8, "ood2": 8, "val": 6}
    for frame in sets.values():
        assert frame["label"].value_counts().tolist() == [len(frame) // 2] * 2
    assert sets["ood2"]["text"].str.startswith("other").all()  # the i-th OOD set is the i-th task's
    assert not set(sets["val"]["text"]) & set(train["text"])
    again = evaluation_sets(_table(20, "test"), oods[:1], pool, train, 8, 6, 2, seed=0, data_seed=2)
    pd.testing.assert_frame_equal(sets["test"], again["test"])  # the test sets do not depend on the data seed
    pd.testing.assert_frame_equal(sets["ood"], again["ood"])  # nor on the other OOD sets
    assert list(sets["val"]["text"]) != list(again["val"]["text"])
    with pytest.raises(TypeError, match="list of OOD test tables"):
        evaluation_sets(_table(20, "test"), oods[0], pool, train, 8, 6, 2, seed=0, data_seed=1)


def test_validation_draw_avoids_the_id_test_set_too():
    # A hub corpus may repeat a text across its splits: a pool row equal to an ID test row is never validation.
    pool, train, test = _table(40, "pool"), _table(40, "pool").iloc[:10], _table(40, "pool").iloc[10:30]
    sets = evaluation_sets(test, [_table(20, "ood")], pool, train, test_size=8, val_size=10, num_classes=2,
                           seed=0, data_seed=1)
    assert set(sets["val"]["text"]) == set(pool["text"].iloc[30:])


def test_epochs_give_the_steps_and_one_evaluation_per_epoch():
    assert epoch_ends(3, 10, 4) == (3, 5, 8)  # ceil(10/4), ceil(20/4), ceil(30/4)
    assert epoch_ends(2.5, 10, 4) == (3, 5, 7)  # two whole epochs, then the last step
    assert epoch_ends(1, 4, 16) == (1,)  # a batch larger than the sample: one step
    section = {"learning_rates": {"ft": 1e-5, "lpft": 1e-6}, "n": 10, "batch_size": 4, "eval_every": 6,
               "epochs": 3, "batch_sizes": {"lpft": 2, "ft": None}, "select": "best_dev", "dropout": True,
               "lr_schedule": "linear", "max_grad_norm": 1.0}
    ft, lpft = run_config(section, "ft", seed=0), run_config(section, "lpft", seed=0)
    assert (ft.batch_size, ft.steps, ft.eval_every, ft.eval_steps) == (4, 8, 8, (3, 5, 8))
    assert (lpft.batch_size, lpft.steps, lpft.eval_steps, lpft.lr) == (2, 15, (5, 10, 15), 1e-6)
    assert (ft.select, ft.dropout, ft.lr_schedule, ft.max_grad_norm) == ("best_dev", True, "linear", 1.0)
    plain = run_config({**section, "epochs": None}, "ft", seed=0)  # without epochs: steps and eval_every
    assert (plain.steps, plain.eval_every, plain.eval_steps) == (FinetuneConfig.from_section({}).steps, 6, ())


def _params_before_the_added_keys(section: dict, method: str) -> dict:
    """A run's params as workflow/rules/common.smk built them before the keys of ADDED_KEYS existed (the
    section then had `ood_task` where it has `ood_tasks` now)."""
    old = {("ood_task" if key == "ood_tasks" else key): (value[0] if key == "ood_tasks" else value)
           for key, value in section.items() if key == "ood_tasks" or key not in ADDED_KEYS}
    unused = [*(() if method in ("lora", "lplora") else ("lora_rank", "lora_alpha")),
              *(() if method in ("lp", "lpft", "lplora") else ("lp_cv", "lp_C"))]
    skipped = {"methods", "seeds", "kernel_size", "learning_rates", "max_length", *unused}
    params = {key: value for key, value in old.items() if key not in skipped}
    return {**params, "learning_rates": {k: v for k, v in old["learning_rates"].items() if k == method}}


def test_run_params_of_the_default_config_are_those_of_runs_made_before_the_added_keys():
    section = load_config(ROOT / "config.yaml", ROOT / "configs" / "smoke.yaml")["lpft"]  # schema defaults filled
    defaults = section_defaults("lpft")
    for key in (k for k in ADDED_KEYS if k not in ("ood_tasks", "batch_sizes")):
        assert section[key] == defaults[key], key  # the default config leaves every added key at its default
    assert not any(section["batch_sizes"].values())
    for method in METHODS:
        # Snakemake compares params by their repr: the same keys in the same order.
        assert repr(run_params(section, method)) == repr(_params_before_the_added_keys(section, method))


def test_run_params_name_an_added_key_only_where_it_is_set():
    section = load_config(ROOT / "config.yaml")["lpft"]
    base = run_params(section, "lpft")
    assert base["ood_task"] == "tweets-other-sentiment2" and "ood_tasks" not in base
    assert run_params({**section, "select": "last", "epochs": None}, "lpft") == base  # defaults spelled out
    changed = run_params({**section, "select": "best_dev", "epochs": 10, "dropout": True,
                          "batch_sizes": {"lpft": 8, "ft": 32}}, "lpft")
    assert {k: v for k, v in changed.items() if k not in base} == {
        "select": "best_dev", "epochs": 10, "dropout": True, "batch_sizes": {"lpft": 8}}
    assert set(base) - set(changed) == {"steps", "eval_every"}  # epochs replace them
    assert run_params({**section, "batch_sizes": {"ft": 32}}, "lpft") == base  # another method's batch size
    several = run_params({**section, "ood_tasks": ["tweets-other-sentiment2", "tweets-topic2"]}, "ft")
    assert several["ood_tasks"] == ["tweets-other-sentiment2", "tweets-topic2"] and "ood_task" not in several


def test_check_config_names_the_ood_task_at_fault():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    lpft = {"id_task": "tweets-airline-sentiment2", "ood_tasks": ["tweets-other-sentiment2"]}
    check_config({**config, "lpft": {**config["lpft"], **lpft}})
    for ood, message in ((["nope"], "unknown task 'nope'"), (["tweets-airline-sentiment2"], "is lpft.id_task"),
                         (["tweets-other-sentiment2", "tweets-sentiment3"], "'tweets-sentiment3' has the labels")):
        with pytest.raises(ConfigError, match=message):
            check_config({**config, "lpft": {**config["lpft"], **lpft, "ood_tasks": ood}})


def test_run_config_takes_the_method_learning_rate():
    section = {"id_task": "a", "methods": ["ft", "lora"], "learning_rates": {"ft": 1e-5, "lora": 1e-3},
               "steps": 7, "batch_size": 4, "probe_size": 3, "lora_rank": 2, "n": 8}
    ft, lora = run_config(section, "ft", seed=3), run_config(section, "lora", seed=3)
    assert (ft.method, ft.lr, ft.steps, ft.batch_size, ft.probe_size, ft.seed) == ("ft", 1e-5, 7, 4, 3, 3)
    assert (lora.lr, lora.lora_rank, lora.loss) == (1e-3, 2, "ce")
    with pytest.raises(ValueError, match="learning_rates"):
        run_config(section, "lpft", seed=0)
    assert run_config({"learning_rates": {}}, "lp", seed=0).lr == 1.0  # the probe takes no steps and no rate
    with pytest.raises(ValueError, match="lpft.methods"):
        run_config(section, "linearized", seed=0)


def test_default_and_smoke_lpft_sections_are_valid():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(config)
    load_config(ROOT / "config.yaml", ROOT / "configs" / "smoke.yaml")
    for key, value, message in (("id_task", "nope", r"lpft\.id_task.*'nope'"), ("n", 7, r"lpft\.n=7"),
                                ("test_size", 10_000, r"lpft\.test_size.*data\.test_size")):
        bad = copy.deepcopy(config)
        bad["lpft"][key] = value
        with pytest.raises(ConfigError, match=message):
            validate(bad)


# --- calibration and tables -----------------------------------------------------------------------


def _margin(confidence: float) -> float:
    """Binary margin whose top-label softmax confidence is ``confidence``."""
    return float(np.log(confidence / (1 - confidence)))


def test_calibration_row_by_hand():
    # 10 ID predictions of class 1 at confidence 0.9, 7 right: one bin, ECE = MCE = |0.7 - 0.9| = 0.2.
    z = _margin(0.9)
    logits = np.tile([0.0, z], (10, 1))
    labels = np.array([1] * 7 + [0] * 3)
    # The validation split is the same: the NLL-optimal temperature makes the confidence 0.7 exactly.
    arrays = {"logits": logits, "labels": labels, "ood_logits": logits[:4], "ood_labels": np.array([1, 1, 0, 0]),
              "val_logits": logits, "val_labels": labels}
    row = calibration_row(arrays)
    assert row["id_ece_before"] == pytest.approx(0.2)
    assert row["id_mce_before"] == pytest.approx(0.2)
    assert row["id_accuracy_before"] == row["id_accuracy_after"] == pytest.approx(0.7)
    assert row["temperature"] == pytest.approx(z / _margin(0.7), rel=1e-5)
    assert row["id_ece_after"] == pytest.approx(0.0, abs=1e-5)
    assert row["id_confidence_after"] == pytest.approx(0.7, abs=1e-5)
    assert row["ood_ece_before"] == pytest.approx(0.4)  # 4 at 0.9, 2 right
    assert row["ood_ece_after"] == pytest.approx(0.2, abs=1e-5)


def test_pooled_reliability_pools_the_seeds_and_scales():
    z = _margin(0.9)
    a = {"logits": np.tile([0.0, z], (4, 1)), "labels": np.array([1, 1, 1, 0])}
    b = {"logits": np.tile([0.0, z], (6, 1)), "labels": np.array([1, 1, 1, 1, 0, 0])}
    table = pooled_reliability([("lpft", a, 1.0), ("lpft", b, z / _margin(0.7))])
    before = table[(table["scaling"] == "before") & (table["count"] > 0)]
    assert before["count"].tolist() == [10]
    assert before["accuracy"].iloc[0] == pytest.approx(0.7)
    after = table[(table["scaling"] == "after") & (table["count"] > 0)]
    assert sorted(after["confidence"].round(6)) == [0.7, 0.9]  # only seed b was tempered


def test_mean_sd_and_paper_table():
    runs = pd.DataFrame({"method": ["lpft", "lpft", "ft", "ft"], "id_accuracy": [0.7, 0.8, 0.6, 0.6]})
    for column in ("ood_accuracy", "feature_change", "head_norm_end", "temperature", "id_ece_before",
                   "id_ece_after", "id_mce_before", "id_mce_after", "ood_ece_before", "ood_ece_after"):
        runs[column] = 1.0
    stats = mean_sd(runs, "method", ["id_accuracy"])
    assert stats["method"].tolist() == ["lpft", "ft"]
    assert stats["id_accuracy_mean"].tolist() == pytest.approx([0.75, 0.6])
    assert stats["id_accuracy_std"].tolist() == pytest.approx([np.sqrt(0.005), 0.0])
    table = paper_table(runs)
    assert table["method"].tolist() == ["FT", "LP-FT"]  # the paper's order
    assert table.loc[1, "ID acc"] == "0.750 ± 0.071"
    assert table["seeds"].tolist() == [2, 2]


# --- the eNTK decomposition on a transformer with a linear head ------------------------------------


@pytest.fixture
def tiny_linear(tiny_bert_dir, toy_table):
    model, tokenizer, spec = build_model({"name": tiny_bert_dir, "head": "linear", "max_length": 12},
                                         {"labels": ["neg", "pos"]}, seed=0, dtype=torch.float64)
    batch, labels = encode_frame(toy_table.iloc[:6], tokenizer, spec, 12)
    return model, batch, labels


def _feature_jacobians(model, batch) -> np.ndarray:
    """J_φ(x_i) = ∂φ(x_i)/∂θ_backbone for every example, (n, H, P), straight from torch.func."""
    params = {name: p.detach() for name, p in model.backbone.named_parameters()}

    def phi(p, ids, mask):
        hidden = functional_call(model.backbone, p, (), {"input_ids": ids[None], "attention_mask": mask[None]})
        return hidden.last_hidden_state[0, 0]

    rows = []
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        additive = (1.0 - mask[None, None, :].double()) * torch.finfo(torch.float64).min
        jac = jacrev(phi)(params, ids, additive)
        rows.append(torch.cat([jac[name].reshape(jac[name].shape[0], -1) for name in params], dim=1))
    return torch.stack(rows).numpy()


def test_decomposition_from_the_engine_is_the_two_kernels_of_a_linear_head(tiny_linear):
    model, batch, _ = tiny_linear
    decomposition = entk_decomposition(model, batch, params="all")
    phi = extract_features(model, batch).numpy()
    v = model.head.linear.weight.detach().numpy()
    # pre-train-effective part: the kernel of the head's parameters, (φᵀφ′ + 1) I
    np.testing.assert_allclose(decomposition.pre_train_effective, pre_train_effective_kernel(phi, 2), rtol=1e-12)
    # FT-effective part: V J_φ J_φ′ᵀ Vᵀ with J_φ from torch.func, independent of the engine
    expected = ft_effective_kernel(v, feature_kernel_from_jacobians(_feature_jacobians(model, batch)))
    np.testing.assert_allclose(decomposition.ft_effective, expected, rtol=1e-8, atol=1e-10)
    # and the two parts sum to the full eNTK of every parameter (naive per-example autograd)
    full = naive_kernel(model, batch, params="all", output="logits")
    np.testing.assert_allclose(decomposition.full, full, rtol=1e-8, atol=1e-10)
    summary = decomposition.summary()
    assert summary["trace_pre_train_effective"] + summary["trace_ft_effective"] == pytest.approx(
        np.einsum("iicc->", full))


def test_lora_decomposition_is_the_adapter_kernel_plus_the_head(tiny_linear):
    model, batch, _ = tiny_linear
    add_lora(model, rank=2, alpha=4.0, target_modules=("query", "value"), seed=0)
    decomposition = entk_decomposition(model, batch, params="lora")
    np.testing.assert_allclose(decomposition.ft_effective, naive_kernel(model, batch, params="lora", output="logits"),
                               rtol=1e-8, atol=1e-12)
    assert decomposition.ft_effective.any()  # ∇_B ≠ 0 at B = 0


def test_start_of_ft_rows_use_the_random_and_the_probe_head(tiny_linear):
    model, batch, labels = tiny_linear
    random_norm = float(torch.linalg.norm(model.head.linear.weight.detach()))
    config = run_config({"learning_rates": {"lplora": 1e-3}, "lora_rank": 2, "lora_alpha": 4.0}, "lplora", seed=0)
    rows = start_of_ft_decompositions(model, batch, labels, config, kernel_size=4).set_index("method")
    assert list(rows.index) == ["ft", "lpft", "lora", "lplora"]
    assert rows.loc["ft", "head_norm"] == pytest.approx(random_norm)
    assert rows.loc["lpft", "head_norm"] == pytest.approx(rows.loc["lplora", "head_norm"])
    assert rows.loc["lpft", "head_norm"] != pytest.approx(random_norm)
    # the encoder is the same at every start, so is the head's part of the kernel
    assert rows["trace_pre_train_effective"].nunique() == 1
    # LP fits the training set (toy labels are separable) and lowers the loss at the start of FT
    assert rows.loc["lpft", "train_loss"] < rows.loc["ft", "train_loss"]
    assert rows.loc["lpft", "train_accuracy"] == 1.0
    # with the same head, the LoRA part is far smaller than the full encoder's part
    assert rows.loc["lora", "trace_ft_effective"] < rows.loc["ft", "trace_ft_effective"]
