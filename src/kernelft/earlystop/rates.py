"""Rates of early-stopped kernel GD over sample sizes (Sun & Raskutti 2026; figure F6).

Prediction from the spectrum of K/n (Raskutti, Wainwright & Yu, JMLR 2014): the error at the rule's
stopping time behaves like the critical radius δ_n², which is

- n^(−α/(α+1))  for eigenvalues λ_i ∝ i^(−α)  → slope −α/(α+1) on a log–log plot against n;
- log(n)/n      for λ_i ∝ exp(−c i)           → not a power of n; its comparable slope is the
  least-squares slope of log(log n / n) against log n over the same n grid, i.e. about
  −1 + 1/mean(log n) (for n in 100..1000: ≈ −0.83).

Both are asymptotic: the exponential prediction needs n well past the flat head of the spectrum
(i ≲ 1/c). On the synthetic check with n = 40..320 it held for c = 0.3 but not for c = 0.05 (measured
−1.36 vs −0.79: pre-asymptotic, the spectrum still looks flat at those n).

The measured slope is the least-squares slope of log(test loss at T̂) against log n (all repetitions
pooled), with a t-interval: slope ± t_{k−2, (1+level)/2} · stderr (scipy.stats.linregress, k points).
The verdict on the claim "the measured slope is the predicted one" reads only that interval
(:func:`slope_verdict`, the strings of :mod:`kernelft.core.claims`).

:func:`synthetic_rate_check` guards the code (not the science): a target with known RKHS norm is
drawn in the span of a given kernel, labels get Gaussian noise σ, and the measured slope of the
excess risk at T̂ must agree with the slope predicted from the kernel's spectrum.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from kernelft.core.claims import FAILS, HOLDS, UNDECIDED
from kernelft.earlystop.kernel_gd import kernel_gd, noise_variance, run_early_stopping, step_grid
from kernelft.kernels.spectrum import SpectrumFit, fit_spectrum, kernel_eigh

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateFit:
    """log(loss) = intercept + slope · log(n), with a ``level`` t-interval [ci_low, ci_high] on the slope."""

    slope: float
    intercept: float
    stderr: float
    ci_low: float
    ci_high: float
    r2: float
    n_points: int
    level: float


def fit_rate(sizes: np.ndarray, losses: np.ndarray, level: float = 0.95) -> RateFit:
    """Least-squares slope of log(losses) on log(sizes) (natural logs; ≥ 3 points, ≥ 2 distinct n)."""
    x, y = np.log(np.asarray(sizes, dtype=np.float64)), np.asarray(losses, dtype=np.float64)
    if (y <= 0).any() or not np.isfinite(y).all():
        raise ValueError("losses must be finite and > 0 for a log–log fit")
    if x.size < 3 or np.unique(x).size < 2:
        raise ValueError(f"need ≥ 3 points over ≥ 2 distinct sizes, got {x.size} points, sizes {np.unique(sizes)}")
    fit = scipy.stats.linregress(x, np.log(y))
    half = scipy.stats.t.ppf((1 + level) / 2, x.size - 2) * fit.stderr
    return RateFit(float(fit.slope), float(fit.intercept), float(fit.stderr), float(fit.slope - half),
                   float(fit.slope + half), float(fit.rvalue**2), int(x.size), level)


def slope_verdict(predicted: float, low: float, high: float) -> str:
    """Verdict on "the slope is ``predicted``" from the measured slope's interval [``low``, ``high``].

    With s = ``predicted`` and the resolution band (s − |s|, s + |s|) — for a falling loss (s < 0) the
    open interval from 2s (twice the predicted rate) to 0 (a loss that does not fall with n):

    - :data:`~kernelft.core.claims.FAILS` when s lies outside [low, high];
    - :data:`~kernelft.core.claims.HOLDS` when s lies inside [low, high] and [low, high] lies inside the
      band: the interval tells the predicted rate apart from no decay and from twice the rate;
    - :data:`~kernelft.core.claims.UNDECIDED` when s lies inside but the interval reaches 0 or 2s: too
      wide to tell the predicted rate from no rate at all (or from one twice as fast).

    E.g. s = −0.63: [−0.82, −0.59] holds, [−0.36, −0.00] does not hold, [−0.90, 0.05] is undecided. An
    interval or prediction that could not be computed (NaN: too few sizes for a slope's t-interval) is
    undecided.
    """
    values = np.array([predicted, low, high], dtype=np.float64)
    if not np.isfinite(values).all():
        return UNDECIDED
    if low > high:
        raise ValueError(f"slope_verdict: need low <= high, got [{low}, {high}]")
    if not low <= predicted <= high:
        return FAILS
    reach = abs(predicted)
    return HOLDS if predicted - reach < low and high < predicted + reach else UNDECIDED


def power_law_slope(alpha: float) -> float:
    """−α/(α+1), the log–log slope of n^(−α/(α+1))."""
    return -alpha / (alpha + 1.0)


def exponential_law_slope(sizes: np.ndarray) -> float:
    """Slope of log(log n / n) against log n, least squares over the distinct ``sizes``."""
    n = np.unique(np.asarray(sizes, dtype=np.float64))
    if n.size < 2 or (n <= 1).any():
        raise ValueError(f"need ≥ 2 distinct sizes > 1, got {n}")
    return float(scipy.stats.linregress(np.log(n), np.log(np.log(n) / n)).slope)


def predict_slope(fit: SpectrumFit, sizes: np.ndarray, intervals: pd.DataFrame | None = None) -> dict[str, Any]:
    """Predicted slope from the better law of ``fit``, with an interval from the rate's CI if given.

    Returns predicted_law, predicted_rate (α or c), predicted_slope, predicted_low, predicted_high
    (for the power law the interval maps [α_low, α_high] through −α/(α+1); the exponential law's
    slope does not depend on c, so low = high = slope), power_slope and exponential_slope (both laws).
    """
    power, expo = power_law_slope(fit.power.rate), exponential_law_slope(sizes)
    law = fit.better.law
    low = high = power if law == "power" else expo
    if law == "power" and intervals is not None:
        row = intervals.set_index("law").loc["power"]
        low, high = power_law_slope(row["ci_high"]), power_law_slope(row["ci_low"])
    return {
        "predicted_law": law,
        "predicted_rate": fit.better.rate,
        "predicted_slope": power if law == "power" else expo,
        "predicted_low": low,
        "predicted_high": high,
        "power_slope": power,
        "exponential_slope": expo,
    }


@dataclass(frozen=True)
class PoolDraws:
    """How :func:`draw_samples` splits a pool of N examples: ``test`` (n_test,) pool indices,
    ``holdout`` (n_holdout,) indices set aside for the pseudo-truth (:func:`pseudo_truth`), and
    ``draws``: (n, rep, run_seed, train) per training draw, ``train`` (n,) sorted indices from the rest.
    The three index sets are disjoint: no training draw sees a test or held-out example."""

    test: np.ndarray
    holdout: np.ndarray
    draws: list[tuple[int, int, int, np.ndarray]]


def draw_samples(
    total: int, sizes: list[int], *, n_test: int, n_rep: int, seed: int, n_holdout: int = 0
) -> PoolDraws:
    """The test set, the pseudo-truth's held-out set and the training draws of :func:`sweep_sizes` on a
    pool of ``total`` examples (:class:`PoolDraws`).

    One permutation drawn from ``seed`` gives the ``n_test`` test indices, then the ``n_holdout``
    held-out ones; for each n in ``sizes`` and repetition rep < ``n_rep``, n sorted indices are drawn
    without replacement from the remaining total − n_test − n_holdout with a run seed drawn from
    ``seed``. ``n_holdout = 0`` gives the draws of the earlier two-way split exactly. The fine-tuning
    runs stopped at T̂ use the same draws, so they see the examples the kernel sweep saw.
    """
    rest = total - n_test - n_holdout
    if max(sizes) > rest:
        raise ValueError(
            f"pool has {total} examples; max size {max(sizes)} + n_test {n_test} + pseudo-truth hold-out "
            f"{n_holdout} do not fit (earlystop.pool_size, sizes, n_test, pseudo_truth_size)"
        )
    if max(sizes) == rest and n_rep > 1:
        log.warning("the %d repetitions at n=%d all draw the same %d examples (pool %d = n + n_test %d + hold-out %d)",
                    n_rep, max(sizes), rest, total, n_test, n_holdout)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(total)
    test, holdout, pool = perm[:n_test], perm[n_test:n_test + n_holdout], perm[n_test + n_holdout:]
    draws = []
    for n in sizes:
        for rep in range(n_rep):
            run_seed = int(rng.integers(2**31))
            train = np.sort(np.random.default_rng(run_seed).choice(pool, size=n, replace=False))
            draws.append((n, rep, run_seed, train))
    return PoolDraws(test, np.sort(holdout), draws)


def sweep_sizes(
    kernel_full: np.ndarray,
    y: np.ndarray,
    sizes: list[int],
    *,
    n_test: int,
    n_rep: int = 3,
    seed: int = 0,
    n_holdout: int = 0,
    steps: np.ndarray | None = None,
    f_init: np.ndarray | None = None,
    target: np.ndarray | None = None,
    r2_values: np.ndarray | None = None,
    label: str = "",
    **early_stop: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Early stopping over training sizes drawn from one pool of N examples.

    ``kernel_full`` (N, N) is the kernel of the pool, ``y`` (N,) its labels, ``f_init`` (N,) the
    initial outputs, ``target`` (N,) what test loss is measured against (default ``y``; pass the
    clean f* for excess risk), ``r2_values`` (N,) what the R² estimate takes as the target at the
    training points (default ``y``). The pool is split by :func:`draw_samples` (``n_test``,
    ``n_holdout``, ``n_rep``, ``seed``): a test set drawn once, a held-out set no run trains on, and
    for each n in ``sizes`` and each repetition n training examples from the rest.
    ``early_stop`` goes to :func:`kernelft.earlystop.kernel_gd.run_early_stopping`; ``steps`` defaults to
    0 plus 200 log-spaced steps up to 10⁵.

    Returns ``points``: one row per run with columns label, n, rep, seed and every key of
    :class:`kernelft.earlystop.kernel_gd.EarlyStopResult` ``summary``; and ``curves``: columns label, n, rep,
    step, train_mse, test_mse, val_mse, stop_rule, stop_oracle, stop_validation.
    """
    kernel_full = np.asarray(kernel_full, dtype=np.float64)
    total = kernel_full.shape[0]
    y = np.asarray(y, dtype=np.float64)
    f0 = np.zeros(total) if f_init is None else np.asarray(f_init, dtype=np.float64)
    target = y if target is None else np.asarray(target, dtype=np.float64)
    steps = step_grid(100_000, 200) if steps is None else steps
    split = draw_samples(total, sizes, n_test=n_test, n_rep=n_rep, seed=seed, n_holdout=n_holdout)
    test = split.test
    points, curves = [], []
    for n, rep, run_seed, train in split.draws:
        result = run_early_stopping(
            kernel_full[np.ix_(train, train)], y[train], kernel_full[np.ix_(test, train)], target[test], steps,
            f_init=f0[train], f_init_cross=f0[test], seed=run_seed,
            r2_values=None if r2_values is None else np.asarray(r2_values, dtype=np.float64)[train], **early_stop,
        )
        points.append({"label": label, "n": n, "rep": rep, "seed": run_seed, **result.summary})
        stops = {key: result.summary[key] for key in ("stop_rule", "stop_oracle", "stop_validation")}
        curves.append(result.curve.assign(label=label, n=n, rep=rep, **stops))
    curve_frame = pd.concat(curves, ignore_index=True)
    first = ["label", "n", "rep"]
    return pd.DataFrame(points), curve_frame[first + [c for c in curve_frame.columns if c not in first]]


def pseudo_truth(
    kernel_full: np.ndarray, y: np.ndarray, holdout: np.ndarray, f_init: np.ndarray | None = None
) -> np.ndarray:
    """A held-out, denoised stand-in for f* on real data: kernel ridge regression fitted on the pool
    examples ``holdout`` only, evaluated at every pool example.

    With H = ``holdout`` (m indices), K_H = K[H, H] = m U diag(s) Uᵀ and the ridge ρ chosen by GCV on
    (K_H, y_H) (:func:`kernelft.earlystop.kernel_gd.noise_variance`),

        f̂(x) = f_init(x) + K(x, X_H) (K_H + mρI)⁻¹ (y_H − f_init(X_H)),      shape (N,),

    so f̂ depends on the labels of H and on no other label. :func:`draw_samples` keeps H disjoint from
    the test set and from every training draw, so the target a test error is scored against has seen
    neither the test labels (whose noise it would fit) nor the training labels (whose noise the
    early-stopped fit shares: with H = every non-test example, the measured excess risk fell the more
    the draw overlapped H — on a synthetic f* on the MiniLM pool, σ = 0.3, n up to 192 of 256, the
    slope came out −0.69 against −0.32 measured against f* itself). Test loss against labels carries
    the noise floor σ², which flattens a log–log slope; against f̂ it approximates the excess risk, at
    the price of judging the kernel by its own smoother and of f̂'s own error (a floor that does not
    depend on n).
    """
    holdout = np.asarray(holdout, dtype=np.int64)
    if holdout.size < 2:
        raise ValueError(f"pseudo_truth needs at least 2 held-out examples, got {holdout.size} "
                         "(earlystop.pseudo_truth_size)")
    kernel_full = np.asarray(kernel_full, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    f0 = np.zeros(y.size) if f_init is None else np.asarray(f_init, dtype=np.float64)
    path = kernel_gd(kernel_full[np.ix_(holdout, holdout)], y[holdout], f_init=f0[holdout])
    rho = noise_variance(path).ridge
    weights = path.eigenvectors @ (path.coef / (holdout.size * (path.eigenvalues + rho)))  # (K_H + mρI)⁻¹ y_R
    return f0 + kernel_full[:, holdout] @ weights


def rate_summary(points: pd.DataFrame, loss: str = "test_mse_rule", level: float = 0.95) -> pd.DataFrame:
    """Measured slope per label of ``points`` (:func:`sweep_sizes`), one row each.

    Columns: label, loss, slope, intercept, stderr, ci_low, ci_high, r2, n_points, level, and, where
    ``points`` carries the :func:`predict_slope` columns, those plus ``agrees`` (predicted slope
    inside [ci_low, ci_high]) and ``verdict`` (:func:`slope_verdict` of the predicted slope).
    """
    rows = []
    for label, group in points.groupby("label", sort=False):
        row = {"label": label, "loss": loss, **asdict(fit_rate(group["n"], group[loss], level))}
        if "predicted_slope" in group:
            keys = [c for c in group.columns if c.startswith(("predicted_", "power_slope", "exponential_slope"))]
            row.update(group.iloc[0][keys].to_dict())
            row["agrees"] = bool(row["ci_low"] <= row["predicted_slope"] <= row["ci_high"])
            row["verdict"] = slope_verdict(row["predicted_slope"], row["ci_low"], row["ci_high"])
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SyntheticTarget:
    """A target in the span of a pool kernel: ``f_star`` (N,), ``y`` = f* + σ ε (N,), ``r2`` = ‖f*‖²_H."""

    f_star: np.ndarray
    y: np.ndarray
    r2: float
    sigma: float


def synthetic_target(
    kernel_full: np.ndarray,
    sigma: float,
    seed: int = 0,
    r2: float = 1.0,
    eigh: tuple[np.ndarray, np.ndarray] | None = None,
) -> SyntheticTarget:
    """Draw f* = Σ_k θ_k φ_k with K_full/N = U diag(μ) Uᵀ, features φ_k(x_j) = √N U_jk.

    θ_k = ±√(μ_k / k) (random signs), rescaled so ‖f*‖²_H = Σ θ_k²/μ_k = r2. The k^(−1) weight puts
    the target near the edge of the RKHS ball (a "worst-case" source condition), so the error at T̂
    is of the order of δ_n², the critical radius the rule targets; fixed magnitudes (random signs
    only) keep the bias curve from depending on the draw. ``eigh``: a precomputed
    :func:`kernelft.kernels.spectrum.kernel_eigh` of ``kernel_full``.
    """
    total = kernel_full.shape[0]
    mu, u = kernel_eigh(kernel_full) if eigh is None else eigh
    rng = np.random.default_rng(seed)
    k = np.arange(1, total + 1)
    theta = np.sqrt(mu / k) * rng.choice([-1.0, 1.0], size=total)
    keep = mu > 0
    theta *= np.sqrt(r2 / (theta[keep] ** 2 / mu[keep]).sum())
    f_star = np.sqrt(total) * (u @ theta)
    return SyntheticTarget(f_star, f_star + sigma * rng.standard_normal(total), float(r2), float(sigma))


@dataclass
class RateCheck:
    """Outcome of :func:`synthetic_rate_check`: the sweep, the rate fit, the prediction, pass/fail."""

    points: pd.DataFrame
    curves: pd.DataFrame
    spectrum: SpectrumFit
    rate: RateFit
    prediction: dict[str, Any]
    passed: bool

    def to_frame(self) -> pd.DataFrame:
        """One row: the :class:`RateFit` fields, the :func:`predict_slope` keys, passed."""
        return pd.DataFrame([{**asdict(self.rate), **self.prediction, "passed": self.passed}])


def synthetic_rate_check(
    kernel_full: np.ndarray,
    sizes: list[int],
    sigma: float,
    seed: int = 0,
    *,
    n_test: int = 200,
    n_rep: int = 3,
    level: float = 0.95,
    steps: np.ndarray | None = None,
    estimate_noise: bool = False,
    fit_ranges: dict[str, Any] | None = None,
    **early_stop: Any,
) -> RateCheck:
    """Known-truth check: slope of the excess risk at T̂ vs n against the spectrum's predicted slope.

    The target comes from :func:`synthetic_target` (R² = 1); runs use the true σ² and R² unless
    ``estimate_noise`` (then σ² by GCV and R² by ``r2_method``). The test loss is measured against the
    clean f*. The spectrum fitted is that of K_full/N (fit range from ``fit_ranges``: skip, rel_floor,
    max_fraction; the defaults of :func:`kernelft.kernels.spectrum.fit_spectrum` otherwise). ``passed``: the
    predicted slope lies in the measured slope's ``level`` t-interval.
    """
    decomposition = kernel_eigh(kernel_full)
    truth = synthetic_target(kernel_full, sigma, seed, eigh=decomposition)
    known = {} if estimate_noise else {"sigma2": sigma**2, "r2": truth.r2}
    points, curves = sweep_sizes(
        kernel_full, truth.y, sizes, n_test=n_test, n_rep=n_rep, seed=seed, steps=steps, target=truth.f_star,
        label="synthetic", **known, **early_stop,
    )
    spectrum = fit_spectrum(decomposition[0], **(fit_ranges or {}))
    prediction = predict_slope(spectrum, np.asarray(sizes))
    rate = fit_rate(points["n"], points["test_mse_rule"], level)
    passed = rate.ci_low <= prediction["predicted_slope"] <= rate.ci_high
    log.info(
        "synthetic rate check: measured slope %.3f [%.3f, %.3f], predicted %.3f (%s) -> %s",
        rate.slope, rate.ci_low, rate.ci_high, prediction["predicted_slope"], prediction["predicted_law"],
        "pass" if passed else "FAIL",
    )
    return RateCheck(points.assign(**prediction), curves, spectrum, rate, prediction, bool(passed))
