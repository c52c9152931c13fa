"""The early-stopping stage's glue (kernelft.earlystop.study) and its F6/F7 figures, on small toy kernels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from kernelft.core.config import ConfigError  # noqa: E402
from kernelft.earlystop.plots import plot_learning_curves_with_finetune, plot_rates  # noqa: E402
from kernelft.earlystop.study import (  # noqa: E402
    law_kernel,
    learning_curve_table,
    pool_spectrum,
    pool_targets,
    r2_methods,
    rate_tables,
    real_rate_study,
    rule_options,
    sweep_draws,
    synthetic_study,
)

SPECTRUM = {"skip": 1, "rel_floor": 1e-10, "max_fraction": 0.5, "n_boot": 10, "boot_fraction": 0.5}


def section(**overrides) -> dict:
    base = {
        "pool_size": 80, "sizes": [10, 20, 40], "n_test": 20, "pseudo_truth_size": 16, "n_rep": 2, "eta_scale": 1.0,
        "max_steps": 2000, "grid_points": 40, "sigma2": None, "r2": None, "r2_methods": ["ridge", "pinv"],
        "rcond": 1e-8, "val_fraction": 0.2, "patience": 5, "test_targets": ["pseudo_truth"], "level": 0.95,
        "synthetic": {"sigma": 0.1, "seed": 0},
    }
    return {**base, **overrides}


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    kernel = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / 2)
    labels = (x[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    logits = np.stack([np.zeros(80), 0.1 * rng.normal(size=80)], axis=1)
    y, f_init = pool_targets(labels, logits)
    return kernel, y, f_init


def test_pool_targets_are_signed_labels_and_logit_differences():
    y, f_init = pool_targets(np.array([0, 1, 1]), np.array([[1.0, 3.0], [0.5, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(y, [-1, 1, 1])
    np.testing.assert_array_equal(f_init, [2.0, -0.5, 0.0])
    with pytest.raises(ValueError, match="binary task"):
        pool_targets(np.array([0, 1]), np.zeros((2, 3)))


def test_r2_methods_follow_the_config():
    assert r2_methods(section()) == ["ridge", "pinv"]
    assert r2_methods(section(r2=2.0)) == [None]
    with pytest.raises(ValueError, match="r2_methods"):
        r2_methods(section(r2_methods=["exact"]))


def test_real_study_runs_every_estimator_on_the_same_draws(pool):
    kernel, y, f_init = pool
    fit, intervals, spectrum = pool_spectrum(kernel, SPECTRUM, label="toy pool")
    assert {"eigenvalue", "alpha", "c", "alpha_ci_low"} <= set(spectrum.columns) and len(spectrum) == 80
    points, curves, rates = real_rate_study(kernel, y, f_init, section(), fit, intervals, task="toy")
    assert len(points) == 2 * 3 * 2  # estimators x sizes x repetitions
    assert set(points["label"]) == {"toy, R² ridge, vs pseudo_truth", "toy, R² pinv, vs pseudo_truth"}
    by_method = {m: g.reset_index(drop=True) for m, g in points.groupby("r2_method")}
    # Same training draws and test set: the oracle does not depend on the R² estimator.
    np.testing.assert_allclose(by_method["ridge"]["test_mse_oracle"], by_method["pinv"]["test_mse_oracle"])
    assert (points["excess_rule"] >= 0).all() and (points["excess_validation"] >= 0).all()
    assert list(rates["label"]) == ["toy, R² ridge, vs pseudo_truth", "toy, R² pinv, vs pseudo_truth"]
    for column in ("slope", "ci_low", "ci_high", "predicted_slope", "agrees", "mean_excess_rule", "rule_after_oracle"):
        assert column in rates
    assert set(curves["r2_method"]) == {"ridge", "pinv"} and {"stop_rule", "val_mse"} <= set(curves.columns)


def test_held_out_pseudo_truth_sees_no_test_or_training_label(pool):
    """The pseudo-truth is fitted on the held-out examples only: every other label (the test set's and
    every training draw's) can change without moving it, and the sweeps scored against it do not move
    when only the test labels change."""
    kernel, y, f_init = pool
    config = section(test_targets=["pseudo_truth"], r2_methods=["ridge"])
    arrays = sweep_draws(kernel, y, f_init, config)
    holdout, test = arrays["pseudo_truth_holdout"], arrays["test"]
    trains = np.concatenate([v for k, v in arrays.items() if k.startswith("train_")])
    assert holdout.size == 16 and not np.isin(holdout, np.concatenate([test, trains])).any()
    changed = y.copy()
    outside = np.setdiff1d(np.arange(y.size), holdout)
    changed[outside] = -changed[outside]
    np.testing.assert_array_equal(sweep_draws(kernel, changed, f_init, config)["pseudo_truth"], arrays["pseudo_truth"])

    fit, _, _ = pool_spectrum(kernel, SPECTRUM)
    before, _, _ = real_rate_study(kernel, y, f_init, config, fit)
    flipped = y.copy()
    flipped[test] = -flipped[test]
    after, _, _ = real_rate_study(kernel, flipped, f_init, config, fit)
    pd.testing.assert_frame_equal(before, after)
    with pytest.raises(ConfigError, match="pseudo_truth_size=0"):
        real_rate_study(kernel, y, f_init, section(pseudo_truth_size=0), fit)


def test_stopping_convention_and_r2_target_in_the_study(pool):
    kernel, y, f_init = pool
    fit, _, _ = pool_spectrum(kernel, SPECTRUM)
    config = section(test_targets=["labels"], r2_methods=["pinv"])
    first, _, _ = real_rate_study(kernel, y, f_init, config, fit)
    before, _, rates = real_rate_study(kernel, y, f_init, {**config, "stopping_convention": "before_crossing"}, fit)
    np.testing.assert_array_equal(before["stop_rule"], first["stop_rule"] - 1)
    np.testing.assert_array_equal(before["stop_crossing"], first["stop_crossing"])
    assert set(rates["stopping_convention"]) == {"before_crossing"} and set(first["r2_target"]) == {"labels"}
    clean, _, rates = real_rate_study(kernel, y, f_init, {**config, "r2_target": "pseudo_truth"}, fit)
    assert set(rates["r2_target"]) == {"pseudo_truth"}
    assert clean["r2"].mean() < first["r2"].mean()  # y_Rᵀ K⁺ y_R of the ±1 labels fits their noise
    np.testing.assert_array_equal(clean["test_mse_oracle"], first["test_mse_oracle"])  # same draws and target
    assert rule_options(section())["pseudo_truth_size"] == 16 and rule_options(section(pseudo_truth_size=None))[
        "pseudo_truth_size"] == 20  # null: as many as n_test
    for key, value in (("stopping_convention", "last"), ("r2_target", "noise")):
        with pytest.raises(ConfigError, match=f"earlystop.{key}"):
            rule_options(section(**{key: value}))


def test_law_kernel_keeps_the_eigenvectors_and_takes_the_law(pool):
    kernel = pool[0]
    fit, _, _ = pool_spectrum(kernel, SPECTRUM)
    replaced = law_kernel(kernel, fit.power)
    expected = fit.power.predict(np.arange(1, 81))
    np.testing.assert_allclose(np.linalg.eigvalsh(replaced / 80)[::-1], expected, rtol=1e-8, atol=1e-12 * expected[0])
    np.testing.assert_allclose(replaced, replaced.T)


def test_labels_as_the_test_target_and_a_given_r2(pool):
    kernel, y, f_init = pool
    fit, _, _ = pool_spectrum(kernel, SPECTRUM)
    config = section(test_targets=["labels", "pseudo_truth"], r2=1.0, n_rep=1)
    points, _, rates = real_rate_study(kernel, y, f_init, config, fit)
    assert set(points["r2_source"]) == {"given"} and set(points["r2_method"]) == {"given"}
    assert list(rates["test_target"]) == ["labels", "pseudo_truth"]
    with pytest.raises(ValueError, match="test_targets"):
        real_rate_study(kernel, y, f_init, section(test_targets=["noise"]), fit)


def test_synthetic_study_tables_and_figures(pool):
    kernel, y, f_init = pool
    fit, intervals, _ = pool_spectrum(kernel, SPECTRUM)
    points, curves, rates = real_rate_study(kernel, y, f_init, section(), fit, intervals, task="toy")
    synthetic_points, check = synthetic_study(kernel, section(), fit, task="toy")
    assert list(check["kernel"]) == [f"fitted {fit.better.law} law", "eNTK spectrum"]
    assert check["passed"].dtype == bool and (synthetic_points["r2_source"] == "given").all()
    summary, all_points = rate_tables([rates, check], [points, synthetic_points])
    assert summary["panel"].nunique() == 2 and len(summary) == 4
    fig = plot_rates(all_points)
    assert len(fig.axes) == 2 and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)

    finetune = pd.DataFrame(
        [{"task": "toy", "n": n, "rep": 0, "step": t, "test_mse_labels": 1.0 / (t + 1),
          "test_mse_pseudo_truth": 0.5 / (t + 1), "test_accuracy": 0.5 + 0.01 * t}
         for n in (10, 20) for t in (0, 5, 10)]
    )
    table = learning_curve_table([curves], [finetune])
    assert set(table["source"]) == {"kernel_gd", "finetune"}
    assert set(table.loc[table["source"] == "kernel_gd", "r2_method"]) == {"ridge"}  # the primary estimator
    primary = table.loc[table["source"] == "kernel_gd", "test_target"].iloc[0]
    ft_rows = table[table["source"] == "finetune"]
    np.testing.assert_array_equal(ft_rows["test_mse"], ft_rows[f"test_mse_{primary}"])
    fig = plot_learning_curves_with_finetune(table)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3  # one panel per size, real FT drawn into its size's panel
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in visible)
    labels = visible[0].get_legend_handles_labels()[1]
    assert "real FT, test (same η, loss)" in labels
    # one legend below the panels, none inside one (it hid the first panel's real-FT markers)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in visible)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels
    plt.close(fig)
    with pytest.raises(ValueError, match="kernel_gd and finetune"):
        plot_learning_curves_with_finetune(table[table["source"] == "finetune"])
