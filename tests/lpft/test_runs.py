"""One LP-FT run on a tiny transformer (kernelft.lpft.runs): the feature metrics by hand, the best epoch chosen on
the ID validation draw, and several OOD sets from the run to the stage's tables and F11."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from kernelft.lpft.plots import plot_feature_change, plot_id_ood
from kernelft.lpft.runs import feature_metrics, lpft_run
from kernelft.lpft.stage import figure_tables, run_config, summarize
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.probe import feature_change
from kernelft.training.runner import finetune

matplotlib.use("Agg")

WORDS = ["great flight", "terrible delay", "great crew", "terrible seat", "great price", "terrible wifi"]


def test_feature_metrics_by_hand():
    initial = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    features = torch.tensor([[6.0, 8.0], [0.0, 2.0]])  # the first doubled (same direction), the second turned 90°
    metrics = feature_metrics(features, initial)
    assert metrics["feature_change"] == pytest.approx((5.0 + math.sqrt(5.0)) / 2)  # ‖(3, 4)‖, ‖(−1, 2)‖
    assert metrics["feature_cosine"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["feature_norm_change"] == pytest.approx(((10 - 5) + (2 - 1)) / 2)
    assert metrics["feature_change"] == pytest.approx(feature_change(features, initial))  # the runner's metric
    assert feature_metrics(initial, initial) == {"feature_change": 0.0, "feature_cosine": pytest.approx(1.0),
                                                 "feature_norm_change": 0.0}
    with pytest.raises(ValueError, match="one shape"):
        feature_metrics(features, initial[:1])


def _table(n: int, prefix: str, flip: bool = False) -> pd.DataFrame:
    """``n`` distinct texts, label 1 = 'great' (0 when ``flip``: a set whose labels contradict the others)."""
    texts = [f"{WORDS[i % len(WORDS)]} {prefix} {i}" for i in range(n)]
    labels = [int(("great" in t) != flip) for t in texts]
    return pd.DataFrame({"text": texts, "label": labels, "topic": ""})


def _section(**keys) -> dict:
    return {"n": 8, "test_size": 8, "val_size": 8, "probe_size": 6, "batch_size": 4, "steps": 4, "eval_every": 2,
            "learning_rates": {"ft": 3e-3, "lpft": 3e-3, "lora": 3e-2, "lplora": 3e-2}, "lora_rank": 2,
            "lora_alpha": 2, "lp_cv": False, "lp_C": 1.0, **keys}


def _run(tiny_bert_dir, method, section, ood_tests, pool=None, seed=0):
    model, tokenizer, head = build_model({"name": tiny_bert_dir, "head": "linear", "max_length": 16},
                                         {"labels": ["neg", "pos"]}, seed=seed)
    train = _table(8, "train")
    pool = pd.concat([train, _table(16, "pool")], ignore_index=True) if pool is None else pool
    return lpft_run(model, tokenizer, head, section, method, train=train, id_test=_table(16, "test"), id_pool=pool,
                    ood_tests=ood_tests, max_length=16, seed=seed, data_seed=seed, test_seed=0, show_progress=False)


def test_best_epoch_is_chosen_on_the_validation_draw(tiny_bert_dir):
    # Validation examples with flipped labels: the longer the model learns the task, the worse it does on them,
    # so the epoch the run keeps is the validation draw's choice, not the test set's.
    pool = pd.concat([_table(8, "train"), _table(16, "pool", flip=True)], ignore_index=True)
    section = _section(epochs=3, select="best_dev", dropout=True)
    run = _run(tiny_bert_dir, "ft", section, [_table(16, "ood")], pool=pool)
    curve = run.curve.dropna(subset=["feature_change"])
    assert curve["step"].tolist() == [0, 2, 4, 6]  # one evaluation per epoch of 8 examples in batches of 4
    epochs = curve[curve["step"] > 0]
    best = epochs.loc[epochs["dev_accuracy"] == epochs["dev_accuracy"].max(), "step"].min()  # earliest on ties
    assert run.result.selected_step == best == int(run.arrays["selected_step"])
    # The arrays are the chosen epoch's: test logits of that step, validation accuracy as the curve's dev accuracy.
    np.testing.assert_array_equal(run.arrays["logits"], run.result.test_logits[best])
    chosen = curve.loc[curve["step"] == best].iloc[0]
    val_accuracy = (run.arrays["val_logits"].argmax(1) == run.arrays["val_labels"]).mean()
    assert val_accuracy == pytest.approx(chosen["dev_accuracy"])
    assert run.arrays["feature_change"] == pytest.approx(chosen["feature_change"], rel=1e-5)
    assert best < 6
    # the ID and OOD test sets are evaluated at the chosen epoch only
    assert curve.dropna(subset=["test_accuracy"])["step"].tolist() == [best]
    assert curve.dropna(subset=["ood_accuracy"])["step"].tolist() == [best]
    # select: last keeps the last epoch, with the same training steps (the dev set is only read)
    last = _run(tiny_bert_dir, "ft", {**section, "select": "last"}, [_table(16, "ood")], pool=pool)
    assert last.result.selected_step == 6 and "dev_accuracy" not in last.curve
    pd.testing.assert_series_equal(last.curve["batch_loss"], run.curve["batch_loss"])


def test_several_ood_sets_flow_to_the_tables_and_f11(tiny_bert_dir):
    oods, names = [_table(16, "ood"), _table(16, "other", flip=True)], ["tweets-a", "tweets-b"]
    runs = [_run(tiny_bert_dir, method, _section(), oods, seed=seed) for method in ("ft", "lpft") for seed in (0, 1)]
    for run in runs:
        assert {"ood_accuracy", "ood2_accuracy"} <= set(run.curve.columns)
        assert {"ood_logits", "ood2_logits", "ood2_labels"} <= set(run.arrays)
    tables = summarize([run.curve for run in runs], [run.arrays for run in runs], names)
    ood = tables["ood"]
    assert len(ood) == 2 * len(runs) and ood["ood_task"].tolist()[:2] == names
    last = runs[0].curve.iloc[-1]
    assert ood["accuracy"].tolist()[:2] == [last["ood_accuracy"], last["ood2_accuracy"]]
    row = tables["runs"].iloc[0]
    assert row["ood_accuracy"] == pytest.approx((last["ood_accuracy"] + last["ood2_accuracy"]) / 2)  # the mean
    assert row["ood_ece_before"] == pytest.approx(ood.loc[:1, "ece_before"].mean())
    assert {"feature_cosine", "feature_norm_change", "selected_step"} <= set(tables["runs"].columns)
    table = tables["table"]
    assert list(table.columns[:4]) == ["method", "ID acc", "OOD acc", "OOD acc: tweets-a"]
    assert "OOD acc: tweets-b" in table.columns and "feature cos" in table.columns
    figures = figure_tables(tables["curves"], tables["runs"], pd.DataFrame({"method": ["ft"], **{
        c: [1.0] for c in ("head_norm", "train_accuracy", "train_loss", "trace_pre_train_effective",
                           "trace_ft_effective", "share_trace_ft_effective", "fro_pre_train_effective",
                           "fro_ft_effective", "share_fro_ft_effective", "ratio_fro_ft_to_pre_train")}}), ood)
    f11 = figures["F11"].set_index("method")
    mine = ood[(ood["method"] == "lpft") & (ood["ood_task"] == "tweets-b")]["accuracy"]
    assert f11.loc["lpft", "ood_accuracy:tweets-b_mean"] == pytest.approx(mine.mean())
    assert {"ood_ece_before:tweets-a_mean", "ood_ece_after:tweets-b_std"} <= set(figures["F12"].columns)
    assert figures["F9"].groupby("method")["feature_cosine_mean"].nunique().eq(1).all()
    figure = plot_id_ood(figures["F11"], tables["runs"], ood, id_task="tweets-id")
    assert figure.axes[0].get_xlabel() == "ID accuracy (tweets-id)"
    assert len(figure.axes[1].patches) == 2 * 3  # two methods x (ID and two OOD sets)
    assert len(plot_feature_change(figures["F9"]).axes) == 4


@pytest.mark.parametrize("method,select", [("ft", "last"), ("lplora", "last"), ("lpft", "best_dev")])
def test_evaluating_at_the_selected_step_only_keeps_its_logits(tiny_bert_dir, method, select):
    # The runner's evaluate: selected (the stage's runs) skips the test and OOD sets at the other evaluation steps;
    # the training, the selected step and its logits are those of evaluate: every, bit for bit.
    results = {}
    for evaluate in ("every", "selected"):
        model, tokenizer, head = build_model({"name": tiny_bert_dir, "head": "linear", "max_length": 16},
                                             {"labels": ["neg", "pos"]}, seed=0)
        encoded = [encode_frame(_table(n, name, flip), tokenizer, head, 16)
                   for n, name, flip in ((8, "train", False), (16, "test", False), (8, "ood", True), (8, "dev", True))]
        section = _section(select=select, probe_size=5)
        results[evaluate] = finetune(model, *encoded[0], *encoded[1], run_config(section, method, 0),
                                     show_progress=False, extra_eval={"ood": encoded[2]},
                                     dev=encoded[3] if select == "best_dev" else None, evaluate=evaluate)
    every, selected = results["every"], results["selected"]
    assert selected.selected_step == every.selected_step
    np.testing.assert_array_equal(selected.final_logits, every.final_logits)
    np.testing.assert_array_equal(selected.extra_logits["ood"], every.extra_logits["ood"])
    assert list(selected.test_logits) == [every.selected_step]
    columns = ["step", "batch_loss", "head_norm"]
    pd.testing.assert_frame_equal(selected.curve[columns], every.curve[columns])
    np.testing.assert_allclose(selected.curve["feature_change"], every.curve["feature_change"], atol=1e-6)
    rows = selected.curve.dropna(subset=["feature_change"])
    assert rows.dropna(subset=["test_accuracy"])["step"].tolist() == [every.selected_step]
    assert set(selected.probe_features) == set(rows["step"]) and selected.probe_features[0].shape == (5, 32)
    at = every.curve.set_index("step").loc[every.selected_step]
    assert rows.set_index("step").loc[every.selected_step, "ood_accuracy"] == at["ood_accuracy"]
    with pytest.raises(ValueError, match="evaluate"):
        finetune(model, *encoded[0], *encoded[1], run_config(_section(), "ft", 0), evaluate="never")
