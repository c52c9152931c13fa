"""Eigenvalue spectra of the eNTK and their decay laws (Sun & Raskutti 2026; figure F5).

The early-stopping rates of Sun & Raskutti depend on how fast the eigenvalues λ_i of ``K/n`` decay
(K the n×n empirical NTK of the training examples):

- power law        λ_i ≈ C i^(−α)      → test error ∝ n^(−α/(α+1))
- exponential law  λ_i ≈ C exp(−c i)   → test error ∝ log(n)/n

Both laws are fitted by least squares in log space (log λ against log i, or against i) over the
same index range, so their R² and RMSE (natural-log units) compare directly; the better law is the
one with the higher R² (equivalently the lower RMSE: same response, same number of parameters).

Fit range (1-based indices i): from ``skip + 1`` (the top eigenvalue is usually an outlier, the
"mean" direction of the kernel) to the last i with λ_i > ``rel_floor`` · λ_1 and i ≤
``max_fraction`` · n (the tail of an empirical spectrum, i of order n, tracks the population
spectrum poorly). At least three points are needed.

Confidence intervals (:func:`bootstrap_rates`) come from m-out-of-n subsampling *without*
replacement: resampling examples with replacement duplicates rows and columns of K, which makes
K rank-deficient (about 37 % exact zero eigenvalues) and wrecks the tail of the spectrum.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.linalg

log = logging.getLogger(__name__)

DEFAULT_SKIP = 1
DEFAULT_REL_FLOOR = 1e-10
DEFAULT_MAX_FRACTION = 0.5
LAWS = ("power", "exponential")


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square (n, n) matrix, got shape {kernel.shape}")
    if not np.all(np.isfinite(kernel)):
        raise ValueError("kernel has NaN or inf entries")
    asym = np.abs(kernel - kernel.T).max()
    if asym > 1e-8 * max(np.abs(kernel).max(), 1e-300):
        log.warning("kernel is not symmetric (max |K - K^T| = %.3g); using (K + K^T)/2", asym)
    return 0.5 * (kernel + kernel.T)


def _clip(values: np.ndarray, n: int) -> np.ndarray:
    """Zero eigenvalues below tol = n · eps · λ_max (numpy's rank tolerance); warn on larger negatives."""
    top = max(float(np.abs(values).max(initial=0.0)), 1e-300)
    tol = n * np.finfo(np.float64).eps * top
    if values.min(initial=0.0) < -tol:
        log.warning(
            "kernel is not PSD: smallest eigenvalue of K/n is %.3g (tolerance %.3g); clipped to 0", values.min(), tol
        )
    return np.where(values > tol, values, 0.0)


def kernel_eigh(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition ``K/n = U diag(s) Uᵀ`` of a symmetric PSD kernel.

    Returns ``s`` (n,) in descending order, clipped at 0 with tolerance n·eps·s_1 (eigenvalues below
    it are set to exactly 0; clearly negative ones are logged as a non-PSD warning), and ``U`` (n, n)
    with orthonormal columns in the same order.
    """
    kernel = _check_kernel(kernel)
    n = kernel.shape[0]
    values, vectors = scipy.linalg.eigh(kernel / n)
    return _clip(values[::-1], n), vectors[:, ::-1]


def kernel_eigenvalues(kernel: np.ndarray) -> np.ndarray:
    """Eigenvalues λ_1 ≥ … ≥ λ_n ≥ 0 of ``K/n`` (shape (n,)), clipped as in :func:`kernel_eigh`."""
    kernel = _check_kernel(kernel)
    n = kernel.shape[0]
    return _clip(scipy.linalg.eigvalsh(kernel / n)[::-1], n)


def fit_range(
    eigenvalues: np.ndarray,
    *,
    skip: int = DEFAULT_SKIP,
    rel_floor: float = DEFAULT_REL_FLOOR,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> np.ndarray:
    """1-based indices i used by the fits: ``skip < i ≤ max_fraction·n`` and ``λ_i > rel_floor·λ_1``.

    The range stops at the first eigenvalue below the floor (the spectrum is sorted descending).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    n = lam.size
    if n == 0 or lam[0] <= 0:
        raise ValueError("spectrum is empty or all zero: nothing to fit")
    above = lam > rel_floor * lam[0]
    last = int(np.argmin(above)) if not above.all() else n  # number of leading eigenvalues above the floor
    i_max = min(last, int(np.floor(max_fraction * n)))
    indices = np.arange(skip + 1, i_max + 1)
    if indices.size < 3:
        raise ValueError(
            f"fit range has {indices.size} points (n={n}, skip={skip}, rel_floor={rel_floor}, "
            f"max_fraction={max_fraction}, {last} eigenvalues above the floor); need at least 3: "
            "lower skip or rel_floor, or raise max_fraction"
        )
    return indices


@dataclass(frozen=True)
class LawFit:
    """Least-squares fit of one decay law in log space.

    ``law="power"``: log λ_i = log_scale − rate · log i   (rate = α)
    ``law="exponential"``: log λ_i = log_scale − rate · i  (rate = c)

    ``r2`` and ``rmse`` are computed on log λ (natural log) over indices ``i_min..i_max``.
    """

    law: str
    rate: float
    log_scale: float
    r2: float
    rmse: float
    i_min: int
    i_max: int
    n_points: int

    def predict(self, i: np.ndarray) -> np.ndarray:
        """Fitted eigenvalues at 1-based indices ``i``."""
        i = np.asarray(i, dtype=np.float64)
        x = np.log(i) if self.law == "power" else i
        return np.exp(self.log_scale - self.rate * x)


def _fit_law(eigenvalues: np.ndarray, law: str, indices: np.ndarray) -> LawFit:
    if law not in LAWS:
        raise ValueError(f"law={law!r}; expected one of {LAWS}")
    lam = np.asarray(eigenvalues, dtype=np.float64)
    y = np.log(lam[indices - 1])
    x = np.log(indices.astype(np.float64)) if law == "power" else indices.astype(np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return LawFit(
        law=law,
        rate=float(-slope),
        log_scale=float(intercept),
        r2=r2,
        rmse=float(np.sqrt((resid**2).mean())),
        i_min=int(indices[0]),
        i_max=int(indices[-1]),
        n_points=int(indices.size),
    )


def fit_power_law(eigenvalues: np.ndarray, **range_kwargs: int | float) -> LawFit:
    """Fit λ_i ≈ C i^(−α): least squares of log λ_i on log i over :func:`fit_range`."""
    return _fit_law(eigenvalues, "power", fit_range(eigenvalues, **range_kwargs))


def fit_exponential_law(eigenvalues: np.ndarray, **range_kwargs: int | float) -> LawFit:
    """Fit λ_i ≈ C exp(−c i): least squares of log λ_i on i over :func:`fit_range`."""
    return _fit_law(eigenvalues, "exponential", fit_range(eigenvalues, **range_kwargs))


@dataclass(frozen=True)
class SpectrumFit:
    """Both decay laws fitted to one spectrum of size ``n``; ``better`` has the higher log-space R²."""

    power: LawFit
    exponential: LawFit
    n: int

    @property
    def better(self) -> LawFit:
        return self.power if self.power.r2 >= self.exponential.r2 else self.exponential

    def to_frame(self) -> pd.DataFrame:
        """One row per law: law, rate, log_scale, r2, rmse, i_min, i_max, n_points, n, better (bool)."""
        rows = [asdict(self.power), asdict(self.exponential)]
        frame = pd.DataFrame(rows)
        frame["n"] = self.n
        frame["better"] = frame["law"] == self.better.law
        return frame


def fit_spectrum(
    eigenvalues: np.ndarray,
    *,
    skip: int = DEFAULT_SKIP,
    rel_floor: float = DEFAULT_REL_FLOOR,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> SpectrumFit:
    """Fit the power and the exponential law over the same index range (see module docstring)."""
    indices = fit_range(eigenvalues, skip=skip, rel_floor=rel_floor, max_fraction=max_fraction)
    power, exponential = (_fit_law(eigenvalues, law, indices) for law in LAWS)
    fit = SpectrumFit(power, exponential, len(eigenvalues))
    log.info(
        "spectrum n=%d: power α=%.3f (R²=%.4f), exponential c=%.4g (R²=%.4f) over i=%d..%d; better: %s",
        fit.n, fit.power.rate, fit.power.r2, fit.exponential.rate, fit.exponential.r2,
        fit.power.i_min, fit.power.i_max, fit.better.law,
    )
    return fit


def bootstrap_rates(
    kernel: np.ndarray,
    *,
    n_boot: int = 100,
    fraction: float = 0.5,
    level: float = 0.95,
    seed: int = 0,
    skip: int = DEFAULT_SKIP,
    rel_floor: float = DEFAULT_REL_FLOOR,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> pd.DataFrame:
    """Subsampling confidence intervals for α (power law) and c (exponential law).

    Each replicate draws m = ⌊fraction·n⌋ examples *without* replacement, takes the principal
    submatrix K[idx, idx], and refits both laws to the eigenvalues of K_m/m (which estimate the same
    operator spectrum as K/n) with the same range rules (so i ≤ max_fraction·m). The deviations of
    the replicates from their mean, θ_m − mean(θ_m), are rescaled by sqrt(m/(n−m)) — the
    finite-population factor that makes their spread match the sampling spread at size n (exact for
    means; fraction=0.5 gives factor 1, "half-sampling"; Politis, Romano & Wolf 1999) — and the
    interval is θ_n + their (1−level)/2 and (1+level)/2 quantiles. Deviations are taken from the
    replicates' mean, not from θ_n: the estimate drifts with the size through its fit range (a
    systematic effect, reported as ``subsample_mean``, not sampling noise). Replicates whose fit range
    has fewer than 3 points are dropped (logged).

    Returns one row per law with columns law, estimate, ci_low, ci_high, level, n_boot (replicates
    used), fraction, subsample_mean.
    """
    kernel = _check_kernel(kernel)
    n = kernel.shape[0]
    m = int(np.floor(fraction * n))
    if not 3 <= m < n:
        raise ValueError(f"bootstrap fraction={fraction} gives m={m} of n={n}; need 3 ≤ m < n")
    ranges = {"skip": skip, "rel_floor": rel_floor, "max_fraction": max_fraction}
    full = fit_spectrum(kernel_eigenvalues(kernel), **ranges)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {law: [] for law in LAWS}
    for _ in range(n_boot):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        lam = _clip(scipy.linalg.eigvalsh(kernel[np.ix_(idx, idx)] / m)[::-1], m)
        try:
            indices = fit_range(lam, **ranges)
        except ValueError:
            continue
        for law in LAWS:
            draws[law].append(_fit_law(lam, law, indices).rate)
    used = len(draws["power"])
    if used < n_boot:
        log.warning("bootstrap: %d of %d replicates had too short a fit range and were dropped", n_boot - used, n_boot)
    scale = np.sqrt(m / (n - m))
    rows = []
    for law, fit in (("power", full.power), ("exponential", full.exponential)):
        rates = np.asarray(draws[law])
        mean = float(rates.mean()) if used else np.nan
        lo, hi = np.quantile(scale * (rates - mean), [(1 - level) / 2, (1 + level) / 2]) if used else (np.nan, np.nan)
        rows.append(
            {"law": law, "estimate": fit.rate, "ci_low": fit.rate + lo, "ci_high": fit.rate + hi,
             "level": level, "n_boot": used, "fraction": fraction, "subsample_mean": mean}
        )
    return pd.DataFrame(rows)


def spectrum_frame(
    eigenvalues: np.ndarray, fit: SpectrumFit, label: str = "", intervals: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Long table of one spectrum and its fits, the input of :func:`kernelft.earlystop.plots.plot_spectrum`.

    One row per eigenvalue; columns:

    - ``label`` (str): which kernel (task, kernel kind, n, ...)
    - ``n`` (int): number of examples; ``i`` (int, 1-based); ``eigenvalue`` (λ_i of K/n)
    - ``in_fit_range`` (bool); ``power_fit``, ``exp_fit`` (fitted λ_i, NaN outside the fit range)
    - ``alpha``, ``alpha_ci_low``, ``alpha_ci_high``, ``power_r2``, ``power_rmse``
    - ``c``, ``c_ci_low``, ``c_ci_high``, ``exp_r2``, ``exp_rmse``
    - ``better_law`` ("power" or "exponential")

    The fit columns repeat on every row of a label so that one CSV holds the whole figure. The CI
    columns come from ``intervals`` (:func:`bootstrap_rates`) and are NaN without it.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    i = np.arange(1, lam.size + 1)
    inside = (i >= fit.power.i_min) & (i <= fit.power.i_max)
    ci = {law: (np.nan, np.nan) for law in LAWS}
    if intervals is not None:
        for row in intervals.itertuples():
            ci[row.law] = (row.ci_low, row.ci_high)
    return pd.DataFrame(
        {
            "label": label,
            "n": fit.n,
            "i": i,
            "eigenvalue": lam,
            "in_fit_range": inside,
            "power_fit": np.where(inside, fit.power.predict(i), np.nan),
            "exp_fit": np.where(inside, fit.exponential.predict(i), np.nan),
            "alpha": fit.power.rate,
            "alpha_ci_low": ci["power"][0],
            "alpha_ci_high": ci["power"][1],
            "power_r2": fit.power.r2,
            "power_rmse": fit.power.rmse,
            "c": fit.exponential.rate,
            "c_ci_low": ci["exponential"][0],
            "c_ci_high": ci["exponential"][1],
            "exp_r2": fit.exponential.r2,
            "exp_rmse": fit.exponential.rmse,
            "better_law": fit.better.law,
        }
    )
