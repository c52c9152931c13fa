"""The boosting kernel of symmetric (oblivious) trees and its early-stopping rate check (Sun & Raskutti, AISTATS 2025).

Boosting with randomised symmetric trees of depth d and a small learning rate behaves like kernel
gradient descent with the kernel averaged over the random tree structure (reference code:
``cal_stationk`` in ZexuanSun/Early-stopping-VI, ``utils_gdbt.py``). A symmetric tree picks d splits
(feature, border) and sends x to the cell of its d answers; one boosting step with leaf values equal
to the mean residual of each cell is a step with the kernel

    K_tree(x, x') = Σ_cells 1[x ∈ c] 1[x' ∈ c] · N / N_c,        N_c = #{training points in c},

so K_tree/N = Σ_c 1_c 1_cᵀ / N_c is the projection onto cell-wise constants. With the structure
drawn uniformly among all sets of d distinct candidate splits (CatBoost's ``random_strength`` → ∞),
the stationary kernel is the average

    K(x, x') = E_tree K_tree(x, x'),     K/N has eigenvalues in [0, 1].

:func:`tree_rate_check` feeds this kernel to the known-truth rate check of the early-stopping stage
(:func:`kernelft.earlystop.rates.synthetic_rate_check`: kernel GD with the Raskutti–Wainwright–Yu stopping
rule over sizes n, test error at T̂ vs n on log–log axes, against the slope −α/(α+1) predicted from
the kernel's eigenvalue decay).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import pandas as pd

from kernelft.earlystop.rates import synthetic_rate_check

log = logging.getLogger(__name__)


def median_borders(x: np.ndarray, borders: int) -> list[tuple[int, float]]:
    """Candidate splits (feature, border): per feature the ``borders`` inner quantiles (equal-count bins,
    CatBoost's ``Median`` border type), duplicates dropped. x (n, p)."""
    levels = np.arange(1, borders + 1) / (borders + 1)
    splits = []
    for j in range(x.shape[1]):
        for value in np.unique(np.quantile(x[:, j], levels)):
            splits.append((j, float(value)))
    return splits


def symmetric_tree_kernel(
    x: np.ndarray, splits: list[tuple[int, float]], depth: int, x_other: np.ndarray | None = None
) -> np.ndarray:
    """E_tree K_tree(x_other, x) over all sets of ``depth`` distinct ``splits`` (cell counts from x).

    Returns (m, n) with m = len(x_other), or the (n, n) training kernel when ``x_other`` is None.
    The order of the splits does not change the cells of a symmetric tree, so sets suffice.
    """
    x = np.asarray(x, dtype=np.float64)
    other = x if x_other is None else np.asarray(x_other, dtype=np.float64)
    n = x.shape[0]
    if not 1 <= depth <= len(splits):
        raise ValueError(f"depth must lie in 1..{len(splits)} (the number of candidate splits), got {depth}")
    # answers[s] = 1[x_j > border] of split s, for training and other points: (S, n) and (S, m)
    answers = np.array([x[:, j] > b for j, b in splits])
    answers_other = np.array([other[:, j] > b for j, b in splits])
    powers = 2 ** np.arange(depth)
    kernel = np.zeros((other.shape[0], n))
    trees = 0
    for tree in itertools.combinations(range(len(splits)), depth):
        cell = powers @ answers[list(tree)]
        cell_other = powers @ answers_other[list(tree)]
        counts = np.bincount(cell, minlength=2**depth)
        weight = np.where(counts > 0, n / np.maximum(counts, 1), 0.0)
        kernel += (cell_other[:, None] == cell[None, :]) * weight[cell][None, :]
        trees += 1
    return kernel / trees


def tree_rate_check(section: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rate check with the symmetric-tree kernel on a small case.

    A pool of ``section["pool"]`` points X ~ N(0, I_p) (p = ``section["features"]``), candidate splits
    from :func:`median_borders` (``borders`` per feature), trees of ``depth``; then
    :func:`kernelft.earlystop.rates.synthetic_rate_check` over ``sizes`` with noise ``sigma`` (``n_test``,
    ``n_rep``). Returns (points: one row per run with n and test_mse_rule; summary: one row with the
    measured slope and its interval, the predicted slope, the fitted decay and ``passed``).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(section["pool"]), 7]))
    x = rng.standard_normal((int(section["pool"]), int(section["features"])))
    splits = median_borders(x, int(section["borders"]))
    kernel = symmetric_tree_kernel(x, splits, int(section["depth"]))
    check = synthetic_rate_check(kernel, [int(n) for n in section["sizes"]], float(section["sigma"]), seed,
                                 n_test=int(section["n_test"]), n_rep=int(section["n_rep"]))
    summary = check.to_frame().assign(law_rate=check.spectrum.better.rate, law=check.spectrum.better.law,
                                      power_alpha=check.spectrum.power.rate, splits=len(splits),
                                      depth=int(section["depth"]), pool=len(x))
    return check.points[["n", "rep", "test_mse_rule", "stop_rule"]], summary
