"""Data designs of the VI studies (kernelft.vi.designs): linear, the reference's logistic Shapley design and
its two-layer teacher network of the p = 100 study; their population truths and the studies that use them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import expit

from kernelft.vi import datasets as vi_data
from kernelft.vi import designs
from kernelft.vi import full as vi_full
from kernelft.vi import shapley as vi_shapley
from kernelft.vi import simulation as vi

# --- the logistic design and its quadratures ---------------------------------------------------------


@pytest.mark.parametrize(("mu", "s"), [(0.3, 0.0), (1.0, 0.5), (-2.0, 1.0), (3.0, 1.5), (10.0, 50.0), (-40.0, 120.0)])
def test_expected_sigmoid_matches_adaptive_quadrature(mu, s):
    def integrand(z):
        return expit(mu + s * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    expected = integrate.quad(integrand, -12, 12, points=[-mu / s] if s else None, limit=400, epsabs=1e-13)[0]
    assert designs.expected_sigmoid(mu, s) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize(("v", "s"), [(170.0**2, 0.0), (4.0, 0.3), (1.0, 30.0), (900.0, 5.0), (0.0, 10.0)])
def test_mean_square_of_expected_sigmoid_matches_adaptive_quadrature(v, s):
    if v == 0:
        assert designs.mean_square_of_expected_sigmoid(v, s) == pytest.approx(0.25)  # G(0; s) = 1/2
        return
    sd = math.sqrt(v)

    def integrand(mu):
        density = math.exp(-0.5 * (mu / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        return float(designs.expected_sigmoid(mu, s)) ** 2 * density

    reach = 12 * sd
    expected = sum(integrate.quad(integrand, a, b, limit=400, epsabs=1e-12)[0] for a, b in ((-reach, 0), (0, reach)))
    assert designs.mean_square_of_expected_sigmoid(v, s) == pytest.approx(expected, abs=1e-9)


def test_logistic_design_draws_probabilities_plus_noise():
    """The reference's generate_logistic_data: Y = σ(Xᵀβ) + N(0, 0.1²), a probability plus noise, not a 0/1
    label (with β = 0, 10, ..., 90 the probability itself is within 0.01 of 0 or 1 for ~99 % of X);
    X1, X2 correlated (ρ); the same seed gives the same data."""
    beta = tuple(float(b) for b in range(0, 100, 10))
    design = designs.LogisticDesign(beta, 0.5, noise_sd=0.1)
    x, y = design.simulate(20_000, np.random.default_rng(0))
    assert x.shape == (20_000, 10) and y.shape == (20_000,) and design.p == 10
    prob = expit(x @ np.array(beta))
    assert ((prob >= 0) & (prob <= 1)).all() and np.mean(np.minimum(prob, 1 - prob) < 0.01) > 0.97
    assert len(np.unique(y)) == len(y)  # continuous: not labels
    assert (y - prob).std() == pytest.approx(0.1, rel=0.03) and abs((y - prob).mean()) < 0.003
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] == pytest.approx(0.5, abs=0.02)
    again_x, again_y = design.simulate(20_000, np.random.default_rng(0))
    assert np.array_equal(x, again_x) and np.array_equal(y, again_y)
    assert not np.array_equal(y, design.simulate(20_000, np.random.default_rng(1))[1])


def test_logistic_truth_efficiency_small_signal_limit_and_null_feature():
    beta = (0.0, 10.0, 20.0, 30.0)
    design = designs.LogisticDesign(beta, 0.5, noise_sd=0.1)
    phi = design.exact_shapley()
    x = np.random.default_rng(1).multivariate_normal(np.zeros(4), design.sigma, size=400_000)
    variance = np.var(expit(x @ np.array(beta)))
    assert phi.sum() == pytest.approx(design.loss(()) - design.loss((0, 1, 2, 3)), rel=1e-12)  # efficiency
    assert phi.sum() == pytest.approx(variance, rel=0.01)  # L(∅) − L(all) = Var σ(Xᵀβ)
    assert design.loss((0, 1, 2, 3)) == pytest.approx(0.01)  # the noise variance
    vi_true = design.true_vi()
    assert abs(vi_true[0]) < 1e-12  # β_1 = 0: Xᵀβ does not involve X1, although X1 is correlated with X2
    assert (vi_true[1:] > 0).all()
    # σ(t) ≈ 1/2 + t/4 for small signals: φ_j → (linear φ_j)/16
    small = tuple(0.01 * b for b in (1.5, 1.2, 1.0, 0.0))
    linear = designs.LinearDesign(small, 0.8).exact_shapley()
    np.testing.assert_allclose(designs.LogisticDesign(small, 0.8).exact_shapley(), linear / 16, rtol=2e-3, atol=1e-12)


def test_logistic_regression_function_is_the_conditional_mean():
    beta = (0.0, 10.0, 20.0, 30.0)
    design = designs.LogisticDesign(beta, 0.5)
    x = np.random.default_rng(2).multivariate_normal(np.zeros(4), design.sigma, size=40_000)
    np.testing.assert_allclose(design.regression(x[:50], (0, 1, 2, 3)), expit(x[:50] @ np.array(beta)), rtol=1e-9)
    np.testing.assert_allclose(design.regression(x[:5], ()), 0.5)
    h = design.regression(x, (1, 2))
    assert h.mean() == pytest.approx(0.5, abs=0.01)
    assert np.mean(h**2) == pytest.approx(design._mean_square((1, 2)), rel=0.02)
    # E[(σ(Xᵀβ) − h_K)²] = E σ² − E h_K²: h_K is the projection
    g = expit(x @ np.array(beta))
    assert np.mean((g - h) ** 2) == pytest.approx(design.loss((1, 2)) - 0.1**2, rel=0.03)


# --- the two-layer teacher -----------------------------------------------------------------------------


def test_teacher_weights_inputs_and_outputs():
    beta = vi_data.sparse_beta([5, 4, 3, 2, 1], 8)
    section = {"width": 4000, "weight_sd": 0.1, "input_variance": 0.1, "noise_sd": 0.0, "truth_samples": 2000}
    design = designs.teacher(beta, 0.5, section, np.random.default_rng(0))
    assert design.weights.shape == (4000, 8) and design.head.shape == (4000,) and design.p == 8
    np.testing.assert_allclose(design.weights.mean(axis=0), beta, atol=0.01)
    assert design.weights.std(axis=0) == pytest.approx(np.full(8, 0.1), rel=0.05)
    same = designs.teacher(beta, 0.5, section, np.random.default_rng(0))
    assert np.array_equal(same.weights, design.weights) and np.array_equal(same.head, design.head)
    small = designs.teacher(beta, 0.5, {"width": 12}, np.random.default_rng(1))
    x, y = small.simulate(30_000, np.random.default_rng(3))
    assert x.shape == (30_000, 8) and y.shape == (30_000,)
    np.testing.assert_allclose(y, np.maximum(x @ small.weights.T, 0) @ small.head)  # no noise by default
    np.testing.assert_allclose(np.cov(x, rowvar=False), 0.1 * vi_data.covariance(8, 0.5), atol=0.005)


def test_teacher_conditional_mean_and_true_vi():
    beta = vi_data.sparse_beta([5, 4, 3], 5)
    design = designs.teacher(beta, 0.5, {"width": 6, "truth_samples": 20_000}, np.random.default_rng(4))
    rng = np.random.default_rng(5)
    point = rng.multivariate_normal(np.zeros(5), design.sigma, size=3)
    for j in (0, 3):  # X1 (correlated with X2) and a null feature
        precision = np.linalg.inv(design.sigma)
        others = [k for k in range(5) if k != j]
        mean = -(point[:, others] @ precision[j, others]) / precision[j, j]
        draws = np.repeat(point[:, None, :], 100_000, axis=1)
        draws[:, :, j] = mean[:, None] + rng.standard_normal((3, 100_000)) / math.sqrt(precision[j, j])
        monte_carlo = design.function(draws.reshape(-1, 5)).reshape(3, -1).mean(axis=1)
        np.testing.assert_allclose(design.conditional_mean(point, j), monte_carlo, rtol=0.01, atol=0.01)
    truth = design.true_vi()
    assert truth.shape == (5,) and (truth > 0).all()
    assert truth[:3].min() > 10 * truth[3:].max()  # null features matter only through W_kj ~ N(0, 0.1²)
    exact_null = designs.teacher(beta, 0.5, {"width": 6, "weight_sd": 0.0, "truth_samples": 2000},
                                 np.random.default_rng(4))
    np.testing.assert_allclose(exact_null.true_vi()[3:], 0.0, atol=1e-12)


# --- the studies with these designs ---------------------------------------------------------------------


def test_linear_design_is_the_simulation_of_run_replicate():
    cfg = vi.VIConfig.from_dict({"width": 16, "max_steps": 20, "boosting": False})
    design = designs.LinearDesign(cfg.beta, 0.5, cfg.noise_sd)
    plain = pd.DataFrame(vi.run_replicate(0.5, 80, 0, cfg, seed=1, features=(0,)))
    given = pd.DataFrame(vi.run_replicate(0.5, 80, 0, cfg, seed=1, features=(0,), design=design))
    pd.testing.assert_frame_equal(plain.drop(columns="seconds"), given.drop(columns="seconds"))
    rng = np.random.default_rng(0)
    data = vi_data.split(*design.simulate(500, rng), rng)
    subsets = {0: [(), (1,), (2, 3)]}
    oracle = vi_shapley.oracle_shapley(data, design.regression, subsets)
    assert oracle[0]["feature"] == 1 and oracle[0]["samples"] == 3


def test_shapley_study_with_the_logistic_design():
    cfg = vi.VIConfig.from_dict({"width": 16, "max_steps": 30, "boosting": False})
    section = {"n": 120, "rho": 0.5, "samples": 2, "design": "logistic", "beta": [0, 10, 20, 30],
               "methods": ["warm_start", "drop"]}
    table = vi_full.run_shapley(section, cfg, 0)
    assert set(table["design"]) == {"logistic"}
    exact = designs.LogisticDesign((0.0, 10.0, 20.0, 30.0), 0.5, cfg.noise_sd).exact_shapley()
    per_feature = table[(table["feature"] > 0) & (table["model"] == "network")]
    assert set(per_feature["method"]) == {"warm_start", "drop"} and set(per_feature["feature"]) == {1, 2, 3, 4}
    np.testing.assert_allclose(per_feature.groupby("feature")["exact"].first(), exact)
    assert set(table[table["model"] == "oracle"]["feature"]) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="vi.shapley.design"):
        vi_full.shapley_design({**section, "design": "probit"}, cfg)


def test_highdim_study_with_the_teacher_and_chosen_features():
    cfg = vi.VIConfig.from_dict({"width": 16, "max_steps": 30, "boosting": False})
    section = {"n": 100, "p": 12, "nonzero": [5, 4, 3, 2, 1], "rho": 0.5, "width": 16, "design": "teacher",
               "features": [1, 7], "teacher": {"width": 12, "truth_samples": 5000}}
    table = vi_full.run_highdim(section, cfg, 0)
    assert set(table["feature"]) == {0, 1, 7} and set(table["design"]) == {"teacher"}
    design = vi_full.highdim_design(section, vi_full.highdim_config(section, cfg), 0)
    truth = table[table["feature"] > 0].groupby("feature")["truth"].first()
    np.testing.assert_allclose(truth.to_numpy(), design.true_vi()[[0, 6]])
    assert truth[1] > truth[7] > 0
    again = vi_full.highdim_design(section, vi_full.highdim_config(section, cfg), 0)
    assert np.array_equal(again.weights, design.weights)  # drawn once per study from its own stream
    with pytest.raises(ValueError, match="vi.highdim.features"):
        vi_full.run_highdim({**section, "features": [13]}, cfg, 0)
    with pytest.raises(ValueError, match="vi.highdim.design"):
        vi_full.highdim_design({**section, "design": "deep"}, cfg, 0)


def test_shapley_reduced_inputs_take_each_splits_own_mean():
    rng = np.random.default_rng(7)
    data = vi_data.split(*vi_data.simulate(400, 0.5, rng), rng)
    seen = []

    def learner(x_tr, y_tr, x_va, y_va, init, k):
        seen.append((x_tr, x_va))
        return vi.Fit(lambda x: x[:, 2], 0.0, 0, 0)

    full = learner(data.x_train, data.y_train, data.x_val, data.y_val, None, 0)
    seen.clear()
    reduced = vi_shapley.reduced_model(learner, data, full, (2, 3, 4, 5), "retrain", drop_mean="split")
    x_tr, x_va = seen[0]
    np.testing.assert_allclose(x_tr[:, 0], data.x_train[:, 0].mean(), rtol=1e-12)
    np.testing.assert_allclose(x_va[:, 0], data.x_val[:, 0].mean(), rtol=1e-12)
    assert x_tr[0, 0] != x_va[0, 0]
    np.testing.assert_array_equal(reduced.test, data.x_test[:, 2])
