"""VI in full (kernelft.vi.shapley, vi_intervals, vi_full; F14): Shapley values, intervals, warm starts, studies."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kernelft.core.config import load_config, validate_schema
from kernelft.vi import boosting as vi_boosting
from kernelft.vi import datasets as vi_data
from kernelft.vi import designs as vi_designs
from kernelft.vi import full as vi_full
from kernelft.vi import intervals as vi_intervals
from kernelft.vi import network as vi_network
from kernelft.vi import shapley as vi_shapley
from kernelft.vi import simulation as vi
from kernelft.vi import tree_kernel as vi_tree_kernel

ROOT = Path(__file__).resolve().parents[2]

# --- Shapley values ---------------------------------------------------------------------------------


def test_shapley_weights_sum_to_one_and_sampling_follows_them():
    p, j = 4, 1
    subsets_by_size = {k: math.comb(p - 1, k) for k in range(p)}
    assert sum(vi_shapley.shapley_weight(p, k) * count for k, count in subsets_by_size.items()) == pytest.approx(1.0)
    draws = vi_shapley.sample_subsets(p, j, 40_000, np.random.default_rng(0))
    assert all(j not in s and list(s) == sorted(s) for s in draws)
    counts = Counter(draws)
    assert len(counts) == 2 ** (p - 1)
    for subset, count in counts.items():
        assert count / len(draws) == pytest.approx(vi_shapley.shapley_weight(p, len(subset)), abs=0.01)


def test_exact_shapley_of_independent_features_is_beta_squared_times_variance():
    beta = np.array([1.5, -1.2, 1.0, 0.0])
    variances = np.array([1.0, 4.0, 0.25, 2.0])
    phi = vi_shapley.exact_shapley(beta, np.diag(variances))
    np.testing.assert_allclose(phi, beta**2 * variances, atol=1e-12)


def test_exact_shapley_with_correlation_is_efficient_and_splits_the_shared_part():
    beta = np.array(vi_data.BETA)
    sigma = vi_data.covariance(6, 0.8)
    phi = vi_shapley.exact_shapley(beta, sigma)
    assert phi.sum() == pytest.approx(beta @ sigma @ beta)  # efficiency: Σφ = L(∅) − L(all) = Var(Xᵀβ)
    np.testing.assert_allclose(phi[2:], [1.0, 0.0, 0.0, 0.0], atol=1e-12)
    assert phi[0] > 1.5**2 * (1 - 0.8**2)  # more than the leave-one-out VI: part of the shared variance


def _least_squares_learner(x_tr, y_tr, x_va, y_va, init, k):
    design = np.column_stack([np.ones(len(x_tr)), x_tr])
    coef, *_ = np.linalg.lstsq(design, y_tr, rcond=None)
    return vi.Fit(lambda x: np.column_stack([np.ones(len(x)), x]) @ coef, 0.0, 0, 0)


def test_sampled_shapley_of_a_fitted_linear_model_recovers_the_exact_values():
    """Tiny case: p = 4 independent features, least-squares reduced models, 40 subsets per feature."""
    beta = (1.5, 1.0, 0.5, 0.0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40_000, 4))
    y = x @ np.array(beta) + 0.1 * rng.standard_normal(40_000)
    data = vi_data.split(x, y, rng)
    full = _least_squares_learner(data.x_train, data.y_train, None, None, None, 0)
    subsets = {j: vi_shapley.sample_subsets(4, j, 40, rng) for j in range(4)}
    rows, cost = vi_shapley.estimate_shapley(_least_squares_learner, data, full, subsets, ("retrain", "drop"))
    exact = vi_shapley.exact_shapley(beta, np.eye(4))
    for method in ("retrain", "drop"):  # with independent features dropping is as good as refitting
        phi = np.array([r["phi"] for r in rows if r["method"] == method])
        np.testing.assert_allclose(phi, exact, atol=0.06)  # test-split noise: cross terms 2β_jβ_k·cov(x_j, x_k)
    regression = vi_designs.LinearDesign(beta, 0.0).regression  # Σ = I
    oracle = np.array([r["phi"] for r in vi_shapley.oracle_shapley(data, regression, subsets)])
    retrain = np.array([r["phi"] for r in rows if r["method"] == "retrain"])
    np.testing.assert_allclose(retrain, oracle, atol=0.01)  # fitted ≈ true regression functions: same noise
    assert all(c["fits"] <= 2**4 for c in cost)  # each kept set fitted once


# --- intervals ------------------------------------------------------------------------------------


def test_wald_interval_matches_the_formula():
    d = np.array([1.0, 2.0, 4.0, 5.0])
    estimate, lo, hi = vi_intervals.interval(d, level=0.95)
    half = 1.959964 * d.std() / 2.0
    assert estimate == 3.0 and lo == pytest.approx(3.0 - half, rel=1e-6) and hi == pytest.approx(3.0 + half, rel=1e-6)
    np.testing.assert_allclose(vi_intervals.loss_differences([1.0, 0.0], [1.0, 0.5], [0.0, 0.0]), [1.0, -0.25])


def test_interval_coverage_is_nominal_when_the_variance_is_known():
    """d_i ~ N(μ, 4): the Wald interval covers μ in about 95% (or 80%) of 2000 data sets."""
    rng = np.random.default_rng(2)
    mu, reps, n = 0.7, 2000, 400
    d = mu + 2.0 * rng.standard_normal((reps, n))
    table = pd.DataFrame({"model": "m", "method": "warm_start", "feature": 1, "rho": 0.0, "truth": mu,
                          "vi_loss": d.mean(axis=1), "vi_loss_se": [vi_intervals.standard_error(r) for r in d]})
    for level in (0.95, 0.8):
        cover = vi_intervals.coverage(table, level=level)
        assert cover["repetitions"].item() == reps
        assert cover["coverage"].item() == pytest.approx(level, abs=0.025)
        assert cover["width_mean"].item() == pytest.approx(2 * vi_intervals.z_value(level) * 2 / 20, rel=0.02)


def test_coverage_counts_which_intervals_contain_the_truth():
    table = pd.DataFrame({"model": "m", "method": "drop", "feature": 1, "rho": 0.5, "truth": 1.0,
                          "vi_loss": [1.0, 1.5, 0.2, 0.9], "vi_loss_se": [0.1, 0.1, 0.1, 0.1]})
    cover = vi_intervals.coverage(table, level=0.95)
    assert cover["coverage"].item() == 0.5  # 1.0 ± 0.196 and 0.9 ± 0.196 contain 1.0
    assert cover["coverage_se"].item() == pytest.approx(0.25)


# --- the warm start starts from the full model's state ------------------------------------------------


def _split(p: int = 6, n: int = 300):
    rng = np.random.default_rng(3)
    x, y = vi_data.simulate(n, 0.5, rng, beta=vi_data.BETA[:p])
    return vi_data.split(x, y, rng)


def test_network_warm_start_begins_at_the_full_model():
    data = _split()
    cfg = vi.VIConfig.from_dict({"width": 64, "max_steps": 300})
    learn = vi.network_learner(cfg, 6, np.arange(7))
    full = learn(data.x_train, data.y_train, data.x_val, data.y_val, None, 0)
    before = {k: v.clone() for k, v in full.state.state_dict().items()}
    frozen = vi.network_learner(vi.VIConfig.from_dict({"width": 64, "max_steps": 0}), 6, np.arange(7))
    start = frozen(data.x_train, data.y_train, data.x_val, data.y_val, full, 1)  # zero steps: the starting point
    np.testing.assert_allclose(start.predict(data.x_test), full.predict(data.x_test))
    assert start.state is not full.state
    x_tr, x_va = (vi_data.drop_feature(a, 0, 0.0) for a in (data.x_train, data.x_val))
    warm = learn(x_tr, data.y_train, x_va, data.y_val, full, 1)
    for name, value in full.state.state_dict().items():  # training the copy leaves the full model alone
        torch.testing.assert_close(value, before[name])
    cold = vi.network_learner(cfg, 6, np.arange(7))(x_tr, data.y_train, x_va, data.y_val, None, 1)
    assert not torch.equal(cold.state.weight, warm.state.weight)
    assert isinstance(warm.state, vi_network.TwoLayerNet)


def test_catboost_warm_start_keeps_the_full_trees_and_needs_few_new_ones():
    data = _split()
    params = {"iterations": 300}
    full = vi_boosting.fit(data.x_train, data.y_train, data.x_val, data.y_val, seed=0, params=params)
    same = vi_boosting.fit(data.x_train, data.y_train, data.x_val, data.y_val, seed=0, params=params, init=full)
    head = same.model.predict(data.x_test, ntree_end=full.model.tree_count_)
    np.testing.assert_allclose(head, full.predict(data.x_test), atol=1e-10)
    assert same.n_iter < full.n_iter  # nothing changed: the full model is already early-stopped


# --- studies, F14 table, headline, figure ---------------------------------------------------------


@pytest.fixture(scope="module")
def f14() -> pd.DataFrame:
    cfg = vi.VIConfig.from_dict({"width": 32, "max_steps": 100, "boosting_params": {"iterations": 20}})
    coverage = pd.concat([vi_full.run_coverage(rho, {"n": 80, "repetitions": 3}, cfg, 0) for rho in (0.0, 0.8)])
    shapley = vi_full.run_shapley({"n": 80, "rho": 0.0, "samples": 2}, cfg, 0)
    highdim = vi_full.run_highdim({"n": 80, "p": 12, "nonzero": [5, 4, 3, 2, 1], "rho": 0.5, "width": 16}, cfg, 0)
    real = vi_full.run_real({"source": "diabetes"}, cfg, 0)
    f8 = vi.summarize(vi.run_cell(0.5, 80, 2, cfg, seed=0, progress=False))
    tree = vi_tree_kernel.tree_rate_check({"pool": 100, "features": 2, "borders": 3, "depth": 2, "sizes": [20, 40, 60],
                                           "n_test": 30, "n_rep": 2, "sigma": 0.5}, 0)
    return vi_full.f14_table(f8, coverage, shapley, highdim, real, *tree, level=0.95)


def test_f14_table_has_every_panel_and_the_headline(f14):
    assert set(f14["panel"]) == {"truth", "coverage", "shapley", "runtime", "highdim", "real", "rate"}
    for panel in ("truth", "highdim", "real"):  # the loss difference is the estimate, the squared difference beside it
        rows = f14[f14["panel"] == panel]
        assert rows[["estimate", "estimate_sqdiff"]].notna().all().all() and (rows["estimate_sqdiff"] >= 0).all()
    assert (f14[f14["panel"] == "truth"]["estimate"] < 0).any()  # null features: the loss difference can be < 0
    real = f14[f14["panel"] == "real"]
    assert len(real) == 2 * 3 * 10 and (real["lo"] <= real["hi"]).all()
    assert set(real["feature_name"]) >= {"bmi", "s5"}
    shap = f14[f14["panel"] == "shapley"]
    np.testing.assert_allclose(shap.groupby("feature")["truth"].first(), np.array(vi_data.BETA) ** 2)
    numbers = vi_full.headline(f14)
    assert {r["rho"] for r in numbers["coverage"]} == {0.0, 0.8}
    assert set(numbers["speedup"]["VI, all p = 12"]) == {"network", "boosting"}
    assert all(s["speedup"] > 0 for s in numbers["speedup"]["VI, all p = 12"].values())


def test_f14_figure_has_seven_drawn_panels(f14):
    from kernelft.vi.plots import plot_vi_full

    fig = plot_vi_full(f14)
    axes = fig.get_axes()
    assert len(axes) == 8  # seven panels and the legend
    for ax in axes[:7]:
        assert ax.lines or ax.collections or ax.patches, ax.get_title()
        assert ax.get_title()
    with pytest.raises(ValueError, match="coverage"):
        plot_vi_full(f14[f14["panel"] != "coverage"])


# --- real data and the paper config ------------------------------------------------------------------


def test_diabetes_is_loaded_offline_and_standardised():
    real = vi_data.load_real("diabetes")
    assert real.x.shape == (442, 10) and real.feature_names[2] == "bmi"
    np.testing.assert_allclose(real.x.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(real.y.std(), 1.0)


def test_a_user_csv_is_loaded_by_column_names(tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.standard_normal((30, 4)), columns=["AT", "AP", "CO", "NOX"])
    path = tmp_path / "gt_2015.csv"
    frame.to_csv(path, index=False)
    real = vi_data.load_real(str(path), target="CO", features=["AT", "AP"])
    assert real.x.shape == (30, 2) and real.name == "gt_2015:CO"
    with pytest.raises(KeyError, match="vi.real.target"):
        vi_data.load_real(str(path), target="co")
    with pytest.raises(FileNotFoundError, match="vi.real.source"):
        vi_data.load_real(str(tmp_path / "missing.csv"), target="CO")


@pytest.mark.parametrize("names", [("paper.yaml", "paper-vi.yaml"), ("paper-vi.yaml",), ("smoke.yaml",)])
def test_vi_configs_validate_over_the_default(names):
    merged = load_config(ROOT / "config.yaml", *(ROOT / "configs" / name for name in names))
    validate_schema(merged)
    cfg = vi.VIConfig.from_dict(merged["vi"])
    hd = vi_full.highdim_config(merged["vi"]["highdim"], cfg)
    assert len(hd.beta) == merged["vi"]["highdim"]["p"] and hd.beta[:5] == (5.0, 4.0, 3.0, 2.0, 1.0)


def test_paper_config_is_the_reference_protocol():
    """The reference code's protocol (ZexuanSun/Early-stopping-VI): two hidden layers of width 2048, each
    split's own mean, the rho sweep at n = 5000, the logistic Shapley design, the p = 100 teacher."""
    section = load_config(ROOT / "config.yaml", *(ROOT / "configs" / name for name in ("paper.yaml", "paper-vi.yaml")))
    section = section["vi"]
    cfg = vi.VIConfig.from_dict(section)
    assert (cfg.hidden_layers, cfg.width, cfg.drop_mean) == (2, 2048, "split") and max(section["ns"]) == 5000
    assert cfg.boosting_params["random_strength"] == 10000
    shap = vi_full.shapley_design(section["shapley"], cfg)
    assert isinstance(shap, vi_designs.LogisticDesign) and shap.beta == tuple(float(b) for b in range(0, 100, 10))
    assert (shap.rho, section["shapley"]["n"], section["shapley"]["samples"]) == (0.5, 5000, 50)
    teacher = vi_full.highdim_design(section["highdim"], vi_full.highdim_config(section["highdim"], cfg), 0)
    assert isinstance(teacher, vi_designs.TeacherDesign) and teacher.weights.shape == (12, 100)
    assert section["real"]["target"] == "CO" and len(section["real"]["features"]) == 9


@pytest.mark.parametrize("name", ["paper.yaml", "paper-vi.yaml"])
def test_every_number_of_the_paper_vi_section_says_where_it_comes_from(name):
    """Each line of the `vi` section that sets a number carries a comment (file:line of the reference code,
    "ours", or "paper, not verifiable offline")."""
    lines = (ROOT / "configs" / name).read_text().splitlines()
    start = lines.index("vi:")
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    bare = [line for line in lines[start + 1 : end]
            if ":" in line.split("#")[0] and any(c.isdigit() for c in line.split("#")[0].split(":", 1)[1])
            and "#" not in line]
    assert not bare, bare


# --- the symmetric-tree kernel ----------------------------------------------------------------------


def test_symmetric_tree_kernel_of_one_split_is_the_cell_mean_projection():
    """One split, depth 1: K/n = Σ_c 1_c 1_cᵀ / N_c, the projection onto the two cells' constants."""

    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    kernel = vi_tree_kernel.symmetric_tree_kernel(x, [(0, 1.5)], depth=1)
    left, right = np.r_[1, 1, 0, 0, 0], np.r_[0, 0, 1, 1, 1]
    expected = 5 * (np.outer(left, left) / 2 + np.outer(right, right) / 3)
    np.testing.assert_allclose(kernel, expected)
    np.testing.assert_allclose(kernel / 5 @ (kernel / 5), kernel / 5, atol=1e-12)  # a projection


def test_symmetric_tree_kernel_averages_trees_and_is_psd():

    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 3))
    splits = vi_tree_kernel.median_borders(x, 3)
    assert len(splits) == 9 and all(0 <= j < 3 for j, _ in splits)
    kernel = vi_tree_kernel.symmetric_tree_kernel(x, splits, depth=2)
    eig = np.linalg.eigvalsh(kernel / 60)
    assert eig.min() > -1e-10 and eig.max() == pytest.approx(1.0)  # average of projections, constants kept
    cross = vi_tree_kernel.symmetric_tree_kernel(x, splits, depth=2, x_other=x[:7])
    np.testing.assert_allclose(cross, kernel[:7])
