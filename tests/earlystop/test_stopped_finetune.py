"""Real fine-tuning stopped at T̂: the runner's full-batch step is a kernel GD step to first order, and
the plan/summary/rate tables of kernelft.earlystop.finetune."""

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import tiny_batch, tiny_classifier

from kernelft.core.claims import FAILS
from kernelft.earlystop.finetune import StopPlan, finetune_config, mse_curve, rate_points, stop_plan, stop_summary
from kernelft.earlystop.study import pool_targets
from kernelft.entk import empirical_ntk_fn
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.runner import finetune

SECTION = {"finetune_steps": 2, "finetune_eval_every": 1}


@pytest.mark.parametrize("head", ["prompt", "linear"])
def test_one_full_batch_step_is_a_kernel_gd_step(head):
    """f_test(θ1) − f_test(θ0) = −η (K_test,train / n)(f_train − y) + O(η²) (Sun & Raskutti 2026)."""
    model = tiny_classifier("bert", head, 2)
    train, test = tiny_batch(6, seed=0), tiny_batch(3, seed=1)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    with torch.no_grad():
        logits = model(**train)
    f_train, y = (logits[:, 1] - logits[:, 0]).numpy(), 2.0 * labels.numpy() - 1.0
    cross = empirical_ntk_fn(model, show_progress=False)(test, train)
    eta = 1e-3 / np.abs(cross).max()
    plan = StopPlan(n=6, rep=0, eta=eta, stop_rule=1, stop_oracle=2, r2_method="ridge", test_target="labels")
    result = finetune(model, train, labels, test, torch.tensor([0, 1, 0]), finetune_config(plan, SECTION, seed=0),
                      show_progress=False)
    moved = [result.test_logits[step][:, 1] - result.test_logits[step][:, 0] for step in (0, 1)]
    expected = -eta * cross @ (f_train - y) / 6
    np.testing.assert_allclose(moved[1] - moved[0], expected, rtol=2e-2, atol=1e-3 * np.abs(expected).max())
    assert sorted(result.test_logits) == [0, 1, 2]


def test_the_stage_path_on_a_tiny_gpt_neo(tiny_checkpoint, toy_table):
    """The scripts' path (earlystop/entk.py, then finetune.py) on a decoder, as the paper's GPT-Neo:
    model and head from a checkpoint folder, one pool eNTK, pool_targets, and a full-batch step of the
    runner that moves the test outputs by one kernel GD step of the pool kernel's blocks."""
    model_config = {"name": tiny_checkpoint("gpt-neo"), "head": "prompt", "max_length": 24, "dtype": "float64",
                    "device": "cpu"}
    task = {"id": "toy", "labels": ["negative", "positive"], "label_words": ["terrible", "great"],
            "template": "{sentence} It was {mask} ."}
    model, tokenizer, head = build_model(model_config, task, seed=0)
    assert head.causal
    pool = toy_table.iloc[:9]
    batch, labels = encode_frame(pool, tokenizer, head, 24)
    kernel = empirical_ntk_fn(model, show_progress=False)(batch)
    with torch.no_grad():
        logits = model(**batch).numpy()
    y, f_init = pool_targets(labels.numpy(), logits)
    train, test = np.arange(6), np.arange(6, 9)
    part = lambda rows: {key: value[rows] for key, value in batch.items()}  # noqa: E731
    eta = 1e-3 / np.abs(kernel).max()
    plan = StopPlan(n=6, rep=0, eta=eta, stop_rule=1, stop_oracle=1, r2_method="pinv", test_target="labels")
    result = finetune(model, part(train), labels[train], part(test), labels[test],
                      finetune_config(plan, SECTION, seed=0), show_progress=False)
    moved = [result.test_logits[step][:, 1] - result.test_logits[step][:, 0] for step in (0, 1)]
    np.testing.assert_allclose(moved[0], f_init[test], rtol=1e-10)
    expected = -eta * kernel[np.ix_(test, train)] @ (f_init[train] - y[train]) / 6
    np.testing.assert_allclose(moved[1] - moved[0], expected, rtol=2e-2, atol=1e-3 * np.abs(expected).max())


def test_config_is_full_batch_sgd_on_the_squared_loss_with_the_rule_step_evaluated():
    plan = StopPlan(n=24, rep=1, eta=2e-4, stop_rule=7, stop_oracle=30, r2_method="ridge", test_target="labels")
    config = finetune_config(plan, {"finetune_steps": 24, "finetune_eval_every": 4}, seed=3)
    summary = (config.optimizer, config.loss, config.batch_size, config.lr, config.method)
    assert summary == ("sgd", "mse", 24, 2e-4, "ft")
    assert config.eval_steps == (7,) and config.steps == 24
    beyond = finetune_config(plan, {"finetune_steps": 5, "finetune_eval_every": 4}, seed=3)
    assert beyond.eval_steps == ()


def test_plan_takes_the_first_estimator_and_target():
    points = pd.DataFrame([
        {"r2_method": "ridge", "test_target": "pseudo_truth", "n": 24, "rep": 0, "eta": 1e-4, "stop_rule": 3,
         "stop_oracle": 9},
        {"r2_method": "pinv", "test_target": "pseudo_truth", "n": 24, "rep": 0, "eta": 1e-4, "stop_rule": 17,
         "stop_oracle": 9},
    ])
    plan = stop_plan(points, 24, 0)
    assert (plan.stop_rule, plan.r2_method, plan.test_target) == (3, "ridge", "pseudo_truth")
    with pytest.raises(ValueError, match="n=48, rep=0"):
        stop_plan(points, 48, 0)


def test_curve_summary_and_rate_points():
    logits = {step: np.stack([np.zeros(2), np.array([1.0, -1.0]) * step / 4], axis=1) for step in (0, 2, 4)}
    curve = mse_curve(logits, {"labels": np.array([1.0, -1.0])})
    np.testing.assert_allclose(curve["test_mse_labels"], [1.0, 0.25, 0.0])  # f = (1, −1)·t/4
    curve["task"] = "toy"
    plan = StopPlan(n=8, rep=0, eta=1.0, stop_rule=2, stop_oracle=4, r2_method="ridge", test_target="labels")
    summary = stop_summary(curve, plan)
    assert summary["reached"] and summary["test_mse_rule"] == 0.25 and summary["stop_best_finetune"] == 4
    assert summary["excess_rule"] == pytest.approx(0.25)
    late = stop_summary(curve, StopPlan(8, 0, 1.0, 9, 4, "ridge", "labels"))
    assert not late["reached"] and np.isnan(late["test_mse_rule"])

    points = pd.DataFrame([{"task": "toy", "r2_method": "ridge", "test_target": "labels", "n": 8, "rep": 0,
                            "predicted_slope": -0.5, "predicted_law": "power"}])
    frame = rate_points([{"task": "toy", **summary}, {"task": "toy", **late}], points)
    assert len(frame) == 1 and frame["source"].eq("finetune").all()
    assert frame.loc[0, "predicted_slope"] == -0.5 and frame.loc[0, "test_mse_oracle"] == 0.0
    assert frame.loc[0, "label"] == "toy, real FT at T̂ (R² ridge), vs labels"


def test_real_finetune_points_join_the_primary_panel_of_f6():
    from kernelft.earlystop.study import rate_tables, summarize_rates

    kernel_points = pd.DataFrame([{"label": "toy, R² ridge, vs labels", "task": "toy", "r2_method": "ridge",
                                   "test_target": "labels", "n": n, "rep": 0, "test_mse_rule": 1.0 / n,
                                   "predicted_slope": -0.5} for n in (8, 16)])
    runs = [{"task": "toy", "n": n, "rep": 0, "eta": 1.0, "stop_rule": 2, "stop_best_finetune": 3, "reached": True,
             "test_target": "labels",
             "test_mse_rule": 2.0 / n, "test_mse_best": 1.5 / n, "excess_rule": 0.5 / n} for n in (8, 16)]
    finetune = rate_points(runs, kernel_points)
    rates = summarize_rates(pd.concat([finetune] * 2, ignore_index=True))  # a slope needs three points
    assert rates.loc[0, "mean_excess_rule"] == pytest.approx(0.5 * (1 / 8 + 1 / 16) / 2)
    # the loss falls exactly as 1/n: slope -1 with an interval of width 0, the predicted -0.5 outside it
    assert rates.loc[0, "slope"] == pytest.approx(-1.0) and rates.loc[0, "verdict"] == FAILS
    _, points = rate_tables([rates.assign(source="finetune")], [kernel_points, finetune])
    assert points["panel"].nunique() == 1
    assert set(points["series"]) == {"R² ridge", "real FT, R² ridge"}
