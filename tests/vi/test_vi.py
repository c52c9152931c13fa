"""Variable importance by early-stopped warm starts (kernelft.vi, F8): data, truth, early stopping, pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kernelft.core.config import ConfigError
from kernelft.vi import boosting as vi_boosting
from kernelft.vi import datasets as vi_data
from kernelft.vi import network as vi_network
from kernelft.vi import simulation as vi

# --- data generator and the true VI ---------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8, -0.3])
def test_simulated_features_have_the_requested_correlation(rho):
    x, y = vi_data.simulate(40_000, rho, np.random.default_rng(1), noise_sd=0.1)
    corr = np.corrcoef(x, rowvar=False)
    expected = vi_data.covariance(6, rho)
    assert x.shape == (40_000, 6) and y.shape == (40_000,)
    np.testing.assert_allclose(corr, expected, atol=0.02)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=0.02)
    residual = y - x @ np.array(vi_data.BETA)
    assert residual.std() == pytest.approx(0.1, rel=0.03)


def test_covariance_rejects_a_singular_correlation():
    with pytest.raises(ValueError, match="rho"):
        vi_data.covariance(6, 1.0)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_true_vi_formula(rho):
    truth = vi_data.true_vi(vi_data.BETA, vi_data.covariance(6, rho))
    expected = [1.5**2 * (1 - rho**2), 1.2**2 * (1 - rho**2), 1.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(truth, expected, atol=1e-12)


def test_true_vi_matches_monte_carlo_of_the_definition():
    """VI_1 = E[(f(X) − E[f(X) | X_{−1}])²], with E[· | X_{−1}] fitted by least squares on a big sample."""
    rho = 0.6
    x, _ = vi_data.simulate(200_000, rho, np.random.default_rng(2), noise_sd=0.0)
    f = x @ np.array(vi_data.BETA)
    rest = np.delete(x, 0, axis=1)
    coef, *_ = np.linalg.lstsq(rest, f, rcond=None)
    monte_carlo = np.mean((f - rest @ coef) ** 2)
    assert monte_carlo == pytest.approx(1.5**2 * (1 - rho**2), rel=0.02)


def test_split_sizes_and_drop_feature():
    x, y = vi_data.simulate(1000, 0.5, np.random.default_rng(3))
    data = vi_data.split(x, y, np.random.default_rng(4))
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (562, 188, 250)
    dropped = vi_data.drop_feature(data.x_test, 0, 0.25)
    assert np.all(dropped[:, 0] == 0.25) and np.array_equal(dropped[:, 1:], data.x_test[:, 1:])
    assert not np.all(data.x_test[:, 0] == 0.25)  # the input is not modified


def test_drop_in_splits_uses_the_training_mean_or_each_splits_own():
    rng = np.random.default_rng(6)
    x, y = vi_data.simulate(400, 0.5, rng)
    data = vi_data.split(x, y, rng)
    splits = (data.x_train, data.x_val, data.x_test)
    train = vi_data.drop_in_splits(data, 1, "train")
    assert all(np.all(a[:, 1] == data.x_train[:, 1].mean()) for a in train)
    own = vi_data.drop_in_splits(data, 1, "split")
    assert all(np.all(a[:, 1] == s[:, 1].mean()) and np.array_equal(a[:, 0], s[:, 0]) for a, s in zip(own, splits))
    assert vi.VIConfig.from_dict({"drop_mean": "split"}).drop_mean == "split"
    with pytest.raises(ValueError, match="vi.drop_mean"):
        vi_data.drop_in_splits(data, 1, "test")


# --- the VI estimators ----------------------------------------------------------------------------


def _least_squares(x_tr, y_tr, x_va, y_va, init, k):
    design = np.column_stack([np.ones(len(x_tr)), x_tr])
    coef, *_ = np.linalg.lstsq(design, y_tr, rcond=None)
    return vi.Fit(lambda x: np.column_stack([np.ones(len(x)), x]) @ coef, 0.0, 0, 0)


def test_loss_difference_of_a_linear_model_is_near_zero_at_a_null_feature_and_can_be_negative():
    """Known answer with least-squares reduced models, Y = 1.5 X1 + X2 + ε, X ~ N(0, I): replacing X1 by
    its mean costs β_1² Var(X1) = 2.25 of test loss; replacing the null X4 costs ≈ 0, of either sign,
    while the squared prediction difference is > 0 at every null feature (biased upwards)."""
    beta = (1.5, 1.0, 0.0, 0.0)
    null, important = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        data = vi_data.split(*vi_data.simulate(2000, 0.0, rng, beta=beta), rng)
        truth = vi_data.true_vi(beta, np.eye(4))
        rows = vi.model_rows("ls", _least_squares, data, truth, {"rep": seed}, methods=("retrain", "drop"))
        rows = pd.DataFrame(rows)
        null.append(rows[rows["feature"] == 4])
        important.append(rows[rows["feature"] == 1])
    null, important = pd.concat(null), pd.concat(important)
    assert (null["vi_loss"].abs() < 1e-3).all()
    assert (null["vi_loss"] < 0).any() and (null["vi_loss"] > 0).any()
    assert (null["vi_sqdiff"] > 0).all()
    np.testing.assert_allclose(important["vi_loss"], 2.25, rtol=0.15)
    assert (important["vi_loss"] > 0).all()
    # the estimate is the mean of the per-example loss differences, with its standard error beside it
    rng = np.random.default_rng(9)
    y, f, reduced = rng.standard_normal((3, 50))
    est = vi._vi_estimates(f, reduced, y)
    assert est["vi_loss"] == pytest.approx(np.mean((y - reduced) ** 2 - (y - f) ** 2))
    assert est["vi_sqdiff"] == pytest.approx(np.mean((f - reduced) ** 2))


# --- early stopping --------------------------------------------------------------------------------


def test_early_stopping_waits_patience_checks_without_improvement():
    stopper = vi_network.EarlyStopping(patience=3, min_delta=0.0)
    losses = [1.0, 0.8, 0.7, 0.71, 0.72, 0.70, 0.9]
    stops = [stopper.update(t, loss) for t, loss in enumerate(losses)]
    assert stops == [False, False, False, False, False, True, True]
    assert stopper.best_step == 2 and stopper.best == 0.7


def test_early_stopping_min_delta_counts_small_gains_as_no_improvement():
    stopper = vi_network.EarlyStopping(patience=2, min_delta=0.05)
    stops = [stopper.update(t, loss) for t, loss in enumerate([1.0, 0.99, 0.98])]
    assert stops == [False, False, True]
    assert stopper.best_step == 2  # still the lowest loss seen, although not a "real" improvement


def test_manual_gradient_step_matches_autograd_sgd():
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.randn(40)
    reference = vi_network.TwoLayerNet(6, 64, generator=torch.Generator().manual_seed(1))
    manual = vi_network.warm_start(reference)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.7)
    gd = vi_network.FullBatchGD(manual, x, y, lr=0.7)
    for _ in range(5):
        optimizer.zero_grad()
        (0.5 * torch.mean((reference(x) - y) ** 2)).backward()
        optimizer.step()
        gd.step()
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(manual.state_dict()[name], value, atol=1e-5, rtol=1e-5)


def test_training_stops_early_and_restores_the_best_step():
    """Tiny noisy problem: validation loss turns up, training stops well before max_steps at the best step."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 2))
    y = x[:, 0] + 1.0 * rng.standard_normal(60)
    tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (x[:20], y[:20], x[20:], y[20:])]
    net = vi_network.TwoLayerNet(2, 256, generator=torch.Generator().manual_seed(0))
    result = vi_network.train(net, *tensors, lr=2.0, max_steps=5000, patience=20, min_delta=0.0)
    assert result.steps < 5000
    assert result.steps - result.stopping_time == 20  # stopped after `patience` checks without a new best
    assert len(result.val_losses) == result.steps + 1
    assert result.val_loss == min(result.val_losses)
    with torch.no_grad():
        kept = torch.mean((net(tensors[2]) - tensors[3]) ** 2).item()
    assert kept == pytest.approx(result.val_loss, rel=1e-5)


def test_warm_start_of_a_null_feature_stops_quickly():
    """Dropping a feature the full model ignores leaves little to learn: few steps, VI near 0."""
    cfg = vi.VIConfig.from_dict({"width": 128, "boosting": False})
    rows = pd.DataFrame(vi.run_replicate(0.5, 300, 0, cfg, seed=0))
    warm = rows[(rows["method"] == "warm_start") & (rows["feature"] >= 4)]
    full = rows[rows["method"] == "full"].iloc[0]
    assert (warm["steps"] < full["steps"]).all()
    assert (warm["vi_loss"].abs() < 0.05).all() and (warm["vi_sqdiff"] < 0.05).all()


# --- the pipeline: replicate -> table -> headline -> figure ----------------------------------------


@pytest.fixture(scope="module")
def raw_results() -> pd.DataFrame:
    cfg = vi.VIConfig.from_dict({"width": 32, "max_steps": 100, "boosting_params": {"iterations": 20}})
    frames = [vi.run_cell(rho, n, 2, cfg, seed=0, progress=False) for rho in (0.0, 0.8) for n in (60, 100)]
    return pd.concat(frames, ignore_index=True)


def test_run_cell_rows(raw_results):
    # 2 models x (1 full + 6 features x 3 methods) x 2 reps x 4 cells
    assert len(raw_results) == 2 * 19 * 2 * 4
    assert set(raw_results["method"]) == {"full", *vi.METHODS}
    features = raw_results[raw_results["feature"] > 0]
    assert features[["vi_loss", "vi_sqdiff", "truth", "seconds"]].notna().all().all()
    assert (features["vi_sqdiff"] >= 0).all()
    assert (features["vi_loss"] < 0).any()  # the loss difference scatters around 0 at null features


def test_same_seed_gives_the_same_numbers():
    cfg = vi.VIConfig.from_dict({"width": 32, "max_steps": 50, "boosting": False})
    first, second = (pd.DataFrame(vi.run_replicate(0.5, 80, 1, cfg, seed=7)) for _ in range(2))
    pd.testing.assert_frame_equal(first[["vi_loss", "vi_sqdiff"]], second[["vi_loss", "vi_sqdiff"]])


def test_summary_headline_and_speedups(raw_results):
    summary = vi.summarize(raw_results, interval=0.9)
    x1 = summary[(summary["feature"] == 1) & (summary["method"] == "warm_start")]
    assert set(x1["truth"].round(4)) == {2.25, round(2.25 * (1 - 0.64), 4)}
    for column in ("vi_loss", "vi_sqdiff"):
        assert (summary[f"{column}_lo"].fillna(0) <= summary[f"{column}_hi"].fillna(0)).all()
    pd.testing.assert_series_equal(summary["bias"], summary["vi_loss_mean"] - summary["truth"], check_names=False)
    numbers = vi.headline(raw_results, summary)
    assert {"vi_loss_mean", "vi_sqdiff_mean", "truth", "distance"} <= set(numbers["x1"][0])
    assert numbers["n"] == 100
    assert {r["rho"] for r in numbers["x1"]} == {0.0, 0.8}
    assert set(numbers["speedup"]) == {"network", "boosting"}
    speed = vi.speedups(raw_results)
    assert (speed["speedup"] > 0).all()


def test_boosting_warm_start_adds_trees_to_the_full_model():
    """CatBoost init_model: the warm-started model holds the full model's trees first, then new ones."""
    rng = np.random.default_rng(0)
    x, y = vi_data.simulate(300, 0.5, rng)
    data = vi_data.split(x, y, rng)
    full = vi_boosting.fit(data.x_train, data.y_train, data.x_val, data.y_val, seed=0, params={"iterations": 200})
    x_tr, x_va, x_te = (vi_data.drop_feature(a, 0, 0.0) for a in (data.x_train, data.x_val, data.x_test))
    warm = vi_boosting.fit(x_tr, data.y_train, x_va, data.y_val, seed=0, params={"iterations": 200}, init=full)
    assert warm.init_trees == full.model.tree_count_ and warm.n_iter >= 1
    assert warm.model.tree_count_ == full.model.tree_count_ + warm.n_iter
    start = warm.model.predict(x_te, ntree_end=full.model.tree_count_)
    np.testing.assert_allclose(start, full.predict(x_te), rtol=1e-10, atol=1e-10)


def test_config_from_dict_rejects_unknown_keys():
    section = {"rhos": [0.0], "ns": [100], "repetitions": 1, "width": 64, "beta": [1, 0]}
    cfg = vi.VIConfig.from_dict(section)
    assert cfg.width == 64 and cfg.beta == (1.0, 0.0)
    with pytest.raises(ConfigError, match="widht"):
        vi.VIConfig.from_dict({**section, "widht": 64})


def test_figure_has_no_empty_panels(raw_results):
    from kernelft.vi.plots import plot_vi_simulation

    fig = plot_vi_simulation(vi.summarize(raw_results))
    axes = fig.get_axes()
    assert len(axes) == 2 + 3  # one top panel per rho, three below
    for ax in axes:
        assert ax.lines or ax.collections, ax.get_title()
        assert ax.get_xlabel() and ax.get_title()


# --- network depth (vi.hidden_layers) ----------------------------------------------------------------


def test_deep_net_of_one_layer_is_the_two_layer_net():
    """Same draws in the same order: DeepNet(hidden_layers=1) is TwoLayerNet."""
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    shallow = vi_network.TwoLayerNet(4, 32, generator=torch.Generator().manual_seed(3))
    deep = vi_network.DeepNet(4, 32, hidden_layers=1, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(deep(x), shallow(x))
    assert isinstance(vi_network.make_network(4, 32, 1), vi_network.TwoLayerNet)
    net = vi_network.make_network(4, 32, 3)
    assert isinstance(net, vi_network.DeepNet) and len(net.weights) == 3 and net(x).shape == (9,)
    assert [tuple(w.shape) for w in net.weights] == [(4, 32), (32, 32), (32, 32)]
    with pytest.raises(ValueError, match="hidden_layers"):
        vi_network.DeepNet(4, 32, hidden_layers=0)


def test_deep_manual_gradient_step_matches_autograd_sgd():
    torch.manual_seed(0)
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    reference = vi_network.DeepNet(5, 16, hidden_layers=3, generator=torch.Generator().manual_seed(2)).double()
    manual = vi_network.warm_start(reference)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    gd = manual.gradient_descent(x, y, lr=0.5)
    for _ in range(4):
        optimizer.zero_grad()
        (0.5 * torch.mean((reference(x) - y) ** 2)).backward()
        optimizer.step()
        gd.step()
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(manual.state_dict()[name], value, atol=1e-12, rtol=1e-10)


def test_vi_with_two_hidden_layers():
    """vi.hidden_layers = 2: the learner builds a DeepNet, warm starts copy it, the VI rows come out."""
    cfg = vi.VIConfig.from_dict({"width": 32, "hidden_layers": 2, "max_steps": 60, "boosting": False})
    assert cfg.hidden_layers == 2
    rows = pd.DataFrame(vi.run_replicate(0.5, 120, 0, cfg, seed=0, features=(0, 3)))
    assert len(rows) == 1 + 2 * 3 and rows[rows["feature"] > 0][["vi_loss", "seconds"]].notna().all().all()
    learn = vi.network_learner(cfg, 6, np.arange(7))
    rng = np.random.default_rng(0)
    data = vi_data.split(*vi_data.simulate(120, 0.5, rng), rng)
    full = learn(data.x_train, data.y_train, data.x_val, data.y_val, None, 0)
    assert isinstance(full.state, vi_network.DeepNet) and full.state.hidden_layers == 2
    assert full.stopping_time > 0  # the validation loss went down
