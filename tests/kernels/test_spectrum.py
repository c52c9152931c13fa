"""Spectra of K/n and the decay-law fits (Sun & Raskutti 2026, F5) on spectra with known laws."""

from __future__ import annotations

import numpy as np
import pytest

from kernelft.kernels.spectrum import (
    bootstrap_rates,
    fit_exponential_law,
    fit_power_law,
    fit_range,
    fit_spectrum,
    kernel_eigenvalues,
    kernel_eigh,
    spectrum_frame,
)


def rotated_kernel(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    """K = n U diag(λ) Uᵀ with a random orthogonal U, so the eigenvalues of K/n are exactly λ."""
    n = eigenvalues.size
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return n * (q * eigenvalues) @ q.T


def test_eigenvalues_of_k_over_n_are_sorted_and_clipped():
    lam = np.array([3.0, 1.0, 0.5, 0.0, 0.0])
    values = kernel_eigenvalues(rotated_kernel(lam))
    assert np.all(np.diff(values) <= 0)
    np.testing.assert_allclose(values, lam, atol=1e-12)
    assert np.all(values >= 0) and values[-1] == 0.0  # round-off negatives are clipped to exactly 0
    s, u = kernel_eigh(rotated_kernel(lam))
    np.testing.assert_allclose(s, lam, atol=1e-12)
    np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-12)


def test_non_square_kernel_is_rejected():
    with pytest.raises(ValueError, match="square"):
        kernel_eigenvalues(np.ones((3, 4)))


def test_fit_range_skips_the_top_and_stops_at_the_floor_and_fraction():
    lam = np.concatenate([np.arange(1, 41, dtype=float) ** -2.0, np.full(60, 1e-14)])
    indices = fit_range(lam, skip=1, rel_floor=1e-10, max_fraction=0.5)
    assert indices[0] == 2 and indices[-1] == 40
    assert fit_range(lam, skip=0, max_fraction=0.2)[-1] == 20
    with pytest.raises(ValueError, match="at least 3"):
        fit_range(lam[:4], skip=1, max_fraction=0.5)


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_power_law_is_recovered_and_preferred(alpha):
    i = np.arange(1, 201, dtype=float)
    noise = np.exp(0.05 * np.random.default_rng(1).standard_normal(i.size))
    fit = fit_spectrum(3.0 * i**-alpha * noise)
    assert fit.power.rate == pytest.approx(alpha, abs=0.03)
    assert fit.power.r2 > 0.99 and fit.better.law == "power"
    exact = fit_power_law(3.0 * i**-alpha)
    assert exact.rate == pytest.approx(alpha, abs=1e-10) and exact.log_scale == pytest.approx(np.log(3.0))
    assert exact.rmse < 1e-10


def test_exponential_law_is_recovered_and_preferred():
    i = np.arange(1, 201, dtype=float)
    noise = np.exp(0.05 * np.random.default_rng(2).standard_normal(i.size))
    fit = fit_spectrum(np.exp(-0.07 * i) * noise)
    assert fit.exponential.rate == pytest.approx(0.07, rel=0.02)
    assert fit.better.law == "exponential" and fit.exponential.r2 > fit.power.r2
    assert fit_exponential_law(np.exp(-0.07 * i)).rate == pytest.approx(0.07, rel=1e-10)
    table = fit.to_frame()
    assert list(table["law"]) == ["power", "exponential"] and table["better"].tolist() == [False, True]


def test_bootstrap_interval_covers_alpha_and_frame_has_the_documented_columns():
    n = 200
    kernel = rotated_kernel(np.arange(1, n + 1, dtype=float) ** -2.0, seed=3)
    intervals = bootstrap_rates(kernel, n_boot=20, seed=0)
    power = intervals.set_index("law").loc["power"]
    assert power["ci_low"] <= power["estimate"] <= power["ci_high"]
    assert power["ci_low"] < 2.0 + 0.3 and power["ci_high"] > 2.0 - 0.3
    assert power["n_boot"] == 20
    lam = kernel_eigenvalues(kernel)
    frame = spectrum_frame(lam, fit_spectrum(lam), "toy", intervals)
    assert len(frame) == n and frame["alpha_ci_low"].notna().all()
    expected = {"label", "n", "i", "eigenvalue", "in_fit_range", "power_fit", "exp_fit", "alpha", "c", "better_law"}
    assert expected <= set(frame.columns)
    assert frame["power_fit"].isna().sum() == n - frame["in_fit_range"].sum()
