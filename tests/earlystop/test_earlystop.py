"""Kernel GD in closed form, the RWY stopping rule, noise estimates and the synthetic rate check."""

from __future__ import annotations

import numpy as np
import pytest

from kernelft.core.claims import FAILS, HOLDS, UNDECIDED
from kernelft.earlystop.kernel_gd import (
    kernel_gd,
    kernel_gd_iterate,
    noise_variance,
    patience_stop,
    rkhs_norm2,
    run_early_stopping,
    rwy_stopping_time,
    rwy_terms,
    step_grid,
)
from kernelft.earlystop.rates import (
    draw_samples,
    exponential_law_slope,
    fit_rate,
    power_law_slope,
    predict_slope,
    pseudo_truth,
    rate_summary,
    slope_verdict,
    synthetic_rate_check,
)
from kernelft.kernels.spectrum import fit_spectrum


def rbf_problem(n: int = 30, m: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, x_test = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))

    def rbf(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 4)

    f = lambda z: np.sin(z[:, 0]) + 0.5 * z[:, 1]  # noqa: E731
    return rbf(x, x), rbf(x_test, x), f(x) + 0.1 * rng.normal(size=n), f(x_test), rng


@pytest.mark.parametrize("eta_scale", [0.5, 1.0, 1.8])
def test_closed_form_path_equals_iterating_the_updates(eta_scale):
    kernel, cross, y, _, rng = rbf_problem()
    f_init, f_init_cross = 0.2 * rng.normal(size=30), 0.2 * rng.normal(size=12)
    path = kernel_gd(kernel, y, f_init=f_init, eta_scale=eta_scale)
    train, test = kernel_gd_iterate(kernel, y, path.eta, 60, cross, f_init, f_init_cross)
    steps = np.arange(61)
    np.testing.assert_allclose(path.predict_train(steps), train, atol=1e-10)
    np.testing.assert_allclose(path.predict(cross, steps, f_init_cross), test, atol=1e-10)
    np.testing.assert_allclose(path.train_mse(steps), ((train - y) ** 2).mean(axis=1), atol=1e-12)


def test_closed_form_reaches_far_steps_and_the_interpolant():
    kernel, cross, y, _, _ = rbf_problem()
    path = kernel_gd(kernel + 0.5 * np.eye(30), y)
    far = path.predict_train(np.array([10**9]))[0]
    np.testing.assert_allclose(far, y, atol=1e-8)  # with K ≻ 0, GD interpolates as t → ∞


def test_rule_on_a_diagonal_kernel_by_hand():
    # K = n I → λ_i = 1 for all i. With η = 0.5: for ηT ≥ 1, Σ min(λ_i, 1/(ηT)) = n/(ηT), and the rule
    # n/(ηT) > n R²/(4e²σ²η²T²) reads T > R²/(4e²σ²η). Choose R² so that R²/(4e²σ²η) = 10.5 → T̂ = 11.
    # For ηT < 1 (T ≤ 1) the rule reads T > sqrt(10.5/η) ≈ 4.6, false. So T̂ = 11.
    n, eta, sigma2 = 4, 0.5, 0.3
    r2 = 10.5 * 4 * np.e**2 * sigma2 * eta
    lam = np.ones(n)
    assert rwy_stopping_time(lam, eta, sigma2, r2) == 11
    terms = rwy_terms(lam, eta, sigma2, r2, np.arange(1, 20))
    assert terms.loc[terms["fired"], "step"].min() == 11 and terms["fired"].sum() == 9


def test_stopping_conventions_differ_by_exactly_one_step():
    """The diagonal case above crosses at T = 11: first_crossing stops there, before_crossing (RWY 2014,
    the authors' ``T[Tind] - 1``) at 10; a rule that fires at T = 1 stops at step 0 before the crossing."""
    n, eta, sigma2 = 4, 0.5, 0.3
    r2 = 10.5 * 4 * np.e**2 * sigma2 * eta
    lam = np.ones(n)
    assert rwy_stopping_time(lam, eta, sigma2, r2, convention="first_crossing") == 11
    assert rwy_stopping_time(lam, eta, sigma2, r2, convention="before_crossing") == 10
    assert rwy_stopping_time(lam, eta, sigma2, 0.0, convention="before_crossing") == 0
    with pytest.raises(ValueError, match="stopping_convention"):
        rwy_stopping_time(lam, eta, sigma2, r2, convention="last")
    kernel, cross, y, target, _ = rbf_problem(n=40, m=20)
    steps = step_grid(2000, 40)
    first, before = (run_early_stopping(kernel, y, cross, target, steps, sigma2=0.01, patience=5,
                                        stopping_convention=c).summary for c in ("first_crossing", "before_crossing"))
    assert first["stop_crossing"] == before["stop_crossing"] == first["stop_rule"] == before["stop_rule"] + 1
    assert (first["stopping_convention"], before["stopping_convention"]) == ("first_crossing", "before_crossing")


def test_r2_from_other_values_uses_their_residual():
    """R² (pinv) from the clean target f* at the training points is f*ᵀ K⁺ f* (f_init = 0), as in the
    authors' code; from the noisy labels it is larger (the interpolant fits the noise)."""
    kernel, cross, y, target, rng = rbf_problem(n=40, m=20)
    clean = np.sin(rng.normal(size=40))  # any values: the estimate must use them, not y
    steps = step_grid(2000, 40)
    common = dict(sigma2=0.01, r2_method="pinv", rcond=1e-12, patience=5)
    from_clean = run_early_stopping(kernel, y, cross, target, steps, r2_values=clean, **common).summary
    from_labels = run_early_stopping(kernel, y, cross, target, steps, **common).summary
    assert from_clean["r2"] == pytest.approx(clean @ np.linalg.pinv(kernel, rcond=1e-12, hermitian=True) @ clean,
                                             rel=1e-6)
    assert from_labels["r2"] == pytest.approx(y @ np.linalg.pinv(kernel, rcond=1e-12, hermitian=True) @ y, rel=1e-6)
    same = run_early_stopping(kernel, y, cross, target, steps, r2_values=y, **common).summary
    assert same["r2"] == pytest.approx(from_labels["r2"]) and same["stop_rule"] == from_labels["stop_rule"]


def test_rule_two_level_diagonal_and_brute_force():
    # λ = (1, 1, 1e-4, 1e-4), n = 4, η = 1, σ² = 1. For 1 ≤ T ≤ 10⁴: Σ min(λ_i, 1/T) = 2/T + 2e-4, so
    # the rule T² · LHS > n R²/(4e²) =: B reads 2e-4 T² + 2T > B. With B = 500 (R² = e² · 500):
    # T² + 10⁴ T − 2.5·10⁶ > 0  ⇔  T > (−10⁴ + √(1.1·10⁸))/2 = 244.04  →  T̂ = 245.
    lam = np.array([1.0, 1.0, 1e-4, 1e-4])
    assert rwy_stopping_time(lam, 1.0, 1.0, np.e**2 * 500) == 245
    rng = np.random.default_rng(0)
    lam = np.sort(rng.exponential(size=25))[::-1] ** 3
    t_hat = rwy_stopping_time(lam, 0.3, 0.2, 5.0)
    terms = rwy_terms(lam, 0.3, 0.2, 5.0, np.arange(1, t_hat + 5))
    assert terms.loc[terms["fired"], "step"].min() == t_hat


def test_noise_estimate_and_rkhs_norm():
    n = 200
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, size=n)
    kernel = np.exp(-((x[:, None] - x[None]) ** 2))
    truth = np.sin(2 * x)
    path = kernel_gd(kernel, truth + 0.3 * rng.normal(size=n))
    assert noise_variance(path).sigma2 == pytest.approx(0.09, rel=0.3)
    ridge, pinv = rkhs_norm2(path, "ridge"), rkhs_norm2(path, "pinv", rcond=1e-6)
    assert 0 < ridge < pinv  # the pseudo-inverse also fits the noise
    with pytest.raises(ValueError, match="r2_method"):
        rkhs_norm2(path, "exact")
    holdout, others = np.arange(0, n, 2), np.arange(1, n, 2)
    smooth = pseudo_truth(kernel, truth + 0.3 * rng.normal(size=n), holdout)
    assert np.mean((smooth[others] - truth[others]) ** 2) < 0.3 * 0.09  # out of its fit set, far closer to f*


def test_pseudo_truth_never_sees_a_label_outside_its_holdout():
    """Every label outside the held-out set (test and training labels alike) can change: f̂ does not."""
    kernel, _, y, _, rng = rbf_problem(n=40)
    f_init = 0.1 * rng.normal(size=40)
    split = draw_samples(40, [8, 16], n_test=10, n_rep=2, seed=3, n_holdout=12)
    used = np.concatenate([split.test, *[train for *_, train in split.draws]])
    assert np.intersect1d(split.holdout, used).size == 0 and np.intersect1d(split.test, used[10:]).size == 0
    before = pseudo_truth(kernel, y, split.holdout, f_init)
    outside = np.setdiff1d(np.arange(40), split.holdout)
    changed = y.copy()
    changed[outside] = rng.normal(size=outside.size) * 5
    np.testing.assert_array_equal(pseudo_truth(kernel, changed, split.holdout, f_init), before)
    changed[split.holdout[0]] += 1.0  # a held-out label does move it
    assert not np.allclose(pseudo_truth(kernel, changed, split.holdout, f_init), before)


def test_draws_without_a_holdout_are_the_two_way_split():
    """n_holdout = 0 keeps the earlier draws (test first, then each draw from the rest)."""
    split = draw_samples(50, [10, 20], n_test=12, n_rep=2, seed=5)
    rng = np.random.default_rng(5)
    perm = rng.permutation(50)
    np.testing.assert_array_equal(split.test, perm[:12])
    for n, rep, run_seed, train in split.draws:
        assert run_seed == int(rng.integers(2**31))
        expected = np.sort(np.random.default_rng(run_seed).choice(perm[12:], n, replace=False))
        np.testing.assert_array_equal(train, expected)
    held = draw_samples(50, [10, 20], n_test=12, n_rep=2, seed=5, n_holdout=8)
    np.testing.assert_array_equal(held.test, split.test)
    assert held.holdout.size == 8 and not np.isin(held.holdout, split.test).any()
    with pytest.raises(ValueError, match="pseudo_truth_size"):
        draw_samples(50, [10, 31], n_test=12, n_rep=2, seed=5, n_holdout=8)


def test_patience_and_step_grid():
    values = np.array([5.0, 4.0, 3.0, 3.5, 3.6, 2.0, 4.0, 4.0, 4.0])
    assert patience_stop(values, patience=2) == 2
    assert patience_stop(values, patience=3) == 5
    grid = step_grid(1000, 20)
    assert grid[0] == 0 and grid[-1] == 1000 and np.all(np.diff(grid) > 0)
    assert np.array_equal(step_grid(5), np.arange(6))


def test_run_early_stopping_summary_is_consistent():
    kernel, cross, y, target, _ = rbf_problem(n=60, m=30)
    result = run_early_stopping(kernel, y, cross, target, step_grid(2000, 60), sigma2=0.01, patience=5)
    s = result.summary
    curve = result.curve.set_index("step")
    assert {s["stop_rule"], s["stop_oracle"], s["stop_validation"]} <= set(curve.index)
    assert s["test_mse_oracle"] == curve["test_mse"].min()
    assert s["excess_rule"] >= 0 and s["excess_validation"] >= 0
    assert s["sigma2_source"] == "given" and s["r2_source"] == "ridge"
    assert list(result.curve.columns) == ["step", "train_mse", "test_mse", "val_mse"]


def test_rate_fit_and_predicted_slopes():
    n = np.repeat([100, 200, 400, 800], 2)
    loss = 3.0 * n**-0.5 * np.exp(0.01 * np.random.default_rng(0).standard_normal(n.size))
    rate = fit_rate(n, loss)
    assert rate.ci_low < -0.5 < rate.ci_high and rate.slope == pytest.approx(-0.5, abs=0.02)
    assert power_law_slope(2.0) == pytest.approx(-2 / 3)
    sizes = np.array([100, 1000])
    expected = (np.log(np.log(1000) / 1000) - np.log(np.log(100) / 100)) / np.log(10)
    assert exponential_law_slope(sizes) == pytest.approx(expected)
    i = np.arange(1, 101, dtype=float)
    prediction = predict_slope(fit_spectrum(i**-3.0), sizes)
    assert prediction["predicted_law"] == "power" and prediction["predicted_slope"] == pytest.approx(-0.75)


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (-0.82, -0.59, HOLDS),  # the default run's synthetic check on the fitted law
        (-0.36, -0.0004, FAILS),  # its real sweep against the pseudo-truth: the prediction lies below
        (-0.60, -0.40, FAILS),  # narrow, just above the prediction
        (-0.90, 0.05, UNDECIDED),  # holds the prediction and 0: cannot tell the rate from no decay
        (-1.30, -0.10, UNDECIDED),  # reaches twice the predicted slope (-1.26)
        (-0.63, -0.63, HOLDS),  # the ends count as inside
    ],
)
def test_slope_verdict_reads_the_interval(low, high, verdict):
    assert slope_verdict(-0.63, low, high) == verdict


def test_slope_verdict_of_what_could_not_be_computed():
    with pytest.raises(ValueError, match="low <= high"):
        slope_verdict(-0.5, -0.2, -0.4)
    # a slope of two sizes has no t-interval (the paper graph's stand-ins), a failed fit no prediction
    assert slope_verdict(-0.73, float("nan"), float("nan")) == UNDECIDED
    assert slope_verdict(float("nan"), -0.7, -0.4) == UNDECIDED


@pytest.mark.parametrize(
    ("law", "eigenvalues", "slope"),
    [
        ("power", lambda i: i**-2.0, -2 / 3),  # −α/(α+1)
        ("exponential", lambda i: np.exp(-0.3 * i), None),  # slope of log(log n / n) vs log n
    ],
)
def test_synthetic_rate_check_recovers_the_predicted_slope(law, eigenvalues, slope):
    # Gaussian-like features of a pool of N examples with a clean spectrum of K/N.
    total = 1000
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((total, total)))
    kernel = total * (q * eigenvalues(np.arange(1, total + 1, dtype=float))) @ q.T
    sizes = [40, 80, 160, 320]
    check = synthetic_rate_check(kernel, sizes, sigma=0.1, seed=0, n_test=200, n_rep=3)
    assert check.spectrum.better.law == law
    expected = slope if slope is not None else exponential_law_slope(np.array(sizes))
    assert check.prediction["predicted_slope"] == pytest.approx(expected, abs=0.02)
    assert check.passed, check.to_frame().T
    assert check.rate.ci_high < 0  # the loss does fall with n
    summary = rate_summary(check.points).iloc[0]
    assert bool(summary["agrees"]) and summary["verdict"] == HOLDS
    expected = {"label", "n", "rep", "step", "test_mse", "stop_rule", "stop_oracle", "stop_validation"}
    assert expected <= set(check.curves.columns)
