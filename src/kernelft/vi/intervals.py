"""Confidence intervals for variable importance from per-example loss differences (Sun & Raskutti, AISTATS 2025).

With the full model f̂ and the reduced model f̂_{−j} fitted on training data, the test split gives
i.i.d. loss differences

    d_i = (y_i − f̂_{−j}(x_i^{(−j)}))² − (y_i − f̂(x_i))²,   i = 1..n_test,

whose mean is the VI estimate v̂ = d̄ (the ``vi_loss`` column of :mod:`kernelft.vi.simulation`). Conditional on
the fitted models the central limit theorem gives the Wald interval

    v̂ ± z_{1−α/2} · sd(d) / √n_test,

as in the reference code (``codes/exps/tree_ci.py`` line 81: 1.96 and ``np.var``, ddof 0, which
:func:`standard_error` uses; ``codes/exps/nn_ci.py`` line 82 takes ``torch.var``, ddof 1). Its
coverage of the population VI over repeated data sets is what F14 shows; it is near nominal
only when the fitting error of f̂ and f̂_{−j} is small next to sd(d)/√n_test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def loss_differences(y: np.ndarray, f_full: np.ndarray, f_reduced: np.ndarray) -> np.ndarray:
    """d_i = (y_i − f_reduced_i)² − (y_i − f_full_i)², shape (n,); all inputs (n,)."""
    y, f_full, f_reduced = (np.asarray(a, dtype=np.float64) for a in (y, f_full, f_reduced))
    if not y.shape == f_full.shape == f_reduced.shape:
        raise ValueError(f"shapes differ: y {y.shape}, f_full {f_full.shape}, f_reduced {f_reduced.shape}")
    return (y - f_reduced) ** 2 - (y - f_full) ** 2


def standard_error(d: np.ndarray) -> float:
    """sd(d)/√n with the population sd (ddof 0, as the reference code); 0 for a single value."""
    d = np.asarray(d, dtype=np.float64)
    return float(d.std() / np.sqrt(len(d)))


def z_value(level: float) -> float:
    """Two-sided normal quantile z_{1−α/2} of a ``level`` interval (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"interval level must lie in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2))


def interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the Wald interval d̄ ± z·sd(d)/√n."""
    d = np.asarray(d, dtype=np.float64)
    half = z_value(level) * standard_error(d)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def add_intervals(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Rows with ``vi_loss`` and ``vi_loss_se`` get ``ci_lo``, ``ci_hi`` and (where ``truth`` is known)
    ``covered`` = ci_lo ≤ truth ≤ ci_hi."""
    half = z_value(level) * table["vi_loss_se"]
    out = table.assign(ci_lo=table["vi_loss"] - half, ci_hi=table["vi_loss"] + half, level=level)
    covered = (out["ci_lo"] <= out["truth"]) & (out["truth"] <= out["ci_hi"])
    return out.assign(covered=covered.where(out["truth"].notna()))


def coverage(table: pd.DataFrame, level: float = 0.95, by: tuple[str, ...] = ("model", "method", "feature", "rho")
             ) -> pd.DataFrame:
    """Share of repetitions whose interval covers the truth, per group, with its binomial standard
    error √(c(1 − c)/R) and the mean interval width. ``table`` holds one row per repetition."""
    rows = add_intervals(table[table["truth"].notna()], level)
    rows = rows.assign(covered=rows["covered"].astype(float))
    grouped = rows.groupby(list(by), sort=True)
    out = grouped.agg(
        repetitions=("covered", "size"),
        coverage=("covered", "mean"),
        truth=("truth", "first"),
        estimate_mean=("vi_loss", "mean"),
        se_mean=("vi_loss_se", "mean"),
    ).reset_index()
    out["width_mean"] = 2 * z_value(level) * out["se_mean"]
    out["coverage_se"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / out["repetitions"])
    out["level"] = level
    return out
