"""Shapley values of the features by early-stopped warm starts (Sun & Raskutti, AISTATS 2025, Section on SHAP).

With the MSE value function, the value of a set K of kept features is minus the test loss of a model
that sees only X_K (the other columns set to their training means), L(K) = E(Y − f_K(X_K))², and

    φ_j = Σ_{S ⊆ [p]∖{j}} w(S) [L(S) − L(S ∪ {j})],   w(S) = 1 / (p · C(p−1, |S|)),

the weights summing to one. Drawing S with probability w(S) (a size k uniform on 0..p−1, then a
uniform subset of that size) gives the unbiased Monte-Carlo estimate φ̂_j = (1/s) Σ_t [L̂(S_t) − L̂(S_t ∪ {j})],
each term a difference of two reduced models (reference code: ``gt_shap_tree.py``, s = 50). The
reduced models come from the same three methods as VI: warm-started from the full model and early
stopped (the method), retrained from scratch, or the full model evaluated on the reduced input (drop).
Models of a kept set are fitted once and reused when a set is drawn again.

Truth for a linear model with Gaussian features, Y = Xᵀβ + ε, X ~ N(0, Σ):

    L(K) = σ² + βᵀ(Σ − Σ_{·K} Σ_{KK}⁻¹ Σ_{K·})β,

so :func:`exact_shapley` enumerates all subsets; for independent features every difference
L(S) − L(S ∪ {j}) equals β_j² Var(X_j), hence φ_j = β_j² Var(X_j). For other designs (the reference's
logistic design, :class:`kernelft.vi.designs.LogisticDesign`) :func:`shapley_values` takes their L(K).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kernelft.vi.datasets import check_drop_mean

log = logging.getLogger(__name__)

Subset = tuple[int, ...]


def shapley_weight(p: int, size: int) -> float:
    """w(S) = 1 / (p · C(p−1, |S|)) for a subset S of the p − 1 other features."""
    if not 0 <= size <= p - 1:
        raise ValueError(f"subset size must lie in 0..{p - 1}, got {size}")
    return 1.0 / (p * math.comb(p - 1, size))


def sample_subsets(p: int, j: int, samples: int, rng: np.random.Generator) -> list[Subset]:
    """``samples`` subsets S of [p]∖{j} drawn with probability w(S): |S| uniform on 0..p−1, then S uniform."""
    others = np.array([k for k in range(p) if k != j])
    draws = []
    for size in rng.integers(0, p, size=samples):
        draws.append(tuple(sorted(int(k) for k in rng.choice(others, size=int(size), replace=False))))
    return draws


def conditional_mse(beta: np.ndarray, sigma: np.ndarray, kept: Subset, noise_sd: float = 0.0) -> float:
    """L(K) = σ² + βᵀ(Σ − Σ_{·K} Σ_{KK}⁻¹ Σ_{K·})β: the MSE of E[Y | X_K] for the linear Gaussian model."""
    beta = np.asarray(beta, dtype=np.float64)
    residual = np.array(sigma, dtype=np.float64)
    if kept:
        k = list(kept)
        residual = residual - sigma[:, k] @ np.linalg.solve(sigma[np.ix_(k, k)], sigma[k, :])
    return float(noise_sd**2 + beta @ residual @ beta)


def shapley_values(loss: Callable[[Subset], float], p: int) -> np.ndarray:
    """φ_j = Σ_S w(S) [L(S) − L(S ∪ {j})] for every feature by enumerating all 2^(p−1) subsets (p ≤ ~16),
    with ``loss(kept)`` the population value L(K) of a sorted kept set (each evaluated once); shape (p,).

    The values add up to L(∅) − L([p]) (efficiency)."""
    cache: dict[Subset, float] = {}

    def value(kept: Subset) -> float:
        if kept not in cache:
            cache[kept] = loss(kept)
        return cache[kept]

    phi = np.zeros(p)
    for j in range(p):
        others = [k for k in range(p) if k != j]
        for size in range(p):
            for subset in itertools.combinations(others, size):
                gain = value(subset) - value(tuple(sorted((*subset, j))))
                phi[j] += shapley_weight(p, size) * gain
    return phi


def exact_shapley(beta: np.ndarray | tuple[float, ...], sigma: np.ndarray) -> np.ndarray:
    """φ_j of the linear Gaussian model (L(K) from :func:`conditional_mse`) for every feature; shape (p,).

    The values add up to L(∅) − L([p]) = Var(Xᵀβ) (efficiency)."""
    beta = np.asarray(beta, dtype=np.float64)
    return shapley_values(lambda kept: conditional_mse(beta, sigma, kept), len(beta))


def oracle_shapley(data, regression: Callable[[np.ndarray, Subset], np.ndarray], subsets: dict[int, list[Subset]]
                   ) -> list[dict]:
    """The Monte-Carlo estimator of :func:`estimate_shapley` with the true regression functions
    ``regression(x, kept)`` = E[Y | X_K = x_K] (a design's, :mod:`kernelft.vi.designs`; for the linear
    design βᵀΣ_{·K}Σ_{KK}⁻¹ x_K) in place of fitted models: same test split, same subsets. Its distance to
    the exact values is the test-split and subset sampling error that every method shares; a method's
    distance to it is the error of its fitted models."""

    def loss(kept: Subset) -> float:
        return float(np.mean((data.y_test - regression(data.x_test, kept)) ** 2))

    rows = []
    for j, draws in subsets.items():
        gains = np.array([loss(s) - loss(tuple(sorted((*s, j)))) for s in draws])
        rows.append({"method": "oracle", "feature": j + 1, "phi": float(gains.mean()),
                     "phi_se": float(gains.std(ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else 0.0,
                     "samples": len(gains)})
    return rows


@dataclass
class Reduced:
    """Test predictions of the model of one kept set, and what its fit cost."""

    test: np.ndarray
    seconds: float
    steps: int


def reduce_inputs(x: np.ndarray, dropped: Subset, means: np.ndarray) -> np.ndarray:
    """Copy of x (n, p) with every column in ``dropped`` set to its entry of ``means`` (p,)."""
    out = np.array(x, copy=True)
    if dropped:
        out[:, list(dropped)] = means[list(dropped)]
    return out


def reduced_model(learn: Callable, data, full, kept: Subset, method: str, drop_mean: str = "train") -> Reduced:
    """The model of kept set K by ``method`` (warm_start, retrain or drop), its test predictions and cost.

    The dropped columns are set to their training means (``drop_mean = "train"``) or to each split's own
    means (``"split"``, the reference's ``dropdata``).

    K = all features is the full model itself; K = ∅ (every input constant) is the training mean of y
    for warm_start and retrain (no tree can split a constant), the full model at the mean for drop.
    ``learn`` is a learner of :mod:`kernelft.vi.simulation` (``learn(x_tr, y_tr, x_va, y_va, init, k)``); every
    retrain uses k = 0, the full model's initialisation (common random numbers across kept sets, so
    a difference L(S) − L(S ∪ {j}) is not blurred by two different random starts).
    """
    p = data.x_train.shape[1]
    dropped = tuple(k for k in range(p) if k not in kept)
    splits = (data.x_train, data.x_val, data.x_test)
    check_drop_mean(drop_mean)
    if drop_mean == "train":
        means = data.x_train.mean(axis=0)
        x_tr, x_va, x_te = (reduce_inputs(a, dropped, means) for a in splits)
    else:
        x_tr, x_va, x_te = (reduce_inputs(a, dropped, a.mean(axis=0)) for a in splits)
    start = time.perf_counter()
    if not dropped:
        return Reduced(full.predict(data.x_test), 0.0, 0)
    if method == "drop":
        test = full.predict(x_te)
        return Reduced(test, time.perf_counter() - start, 0)
    if not kept:
        return Reduced(np.full(len(data.y_test), data.y_train.mean()), time.perf_counter() - start, 0)
    if method not in ("warm_start", "retrain"):
        raise ValueError(f"unknown method {method!r}; expected warm_start, retrain or drop")
    fit = learn(x_tr, data.y_train, x_va, data.y_val, full if method == "warm_start" else None, 0)
    return Reduced(fit.predict(x_te), fit.seconds, fit.steps)


def estimate_shapley(
    learn: Callable, data, full, subsets: dict[int, list[Subset]], methods: tuple[str, ...], drop_mean: str = "train"
) -> tuple[list[dict], list[dict]]:
    """φ̂_j = mean over the drawn S of L̂(S) − L̂(S ∪ {j}) on the test split, for each feature j in ``subsets``.

    Returns (per-feature rows: method, feature (1-based), phi, phi_se (Monte-Carlo sd/√s), samples;
    per-method rows: seconds and fits, the total cost of the distinct kept sets).
    """
    feature_rows, cost_rows = [], []
    for method in methods:
        cache: dict[Subset, Reduced] = {}

        def loss(kept: Subset) -> float:
            if kept not in cache:
                cache[kept] = reduced_model(learn, data, full, kept, method, drop_mean)
            return float(np.mean((data.y_test - cache[kept].test) ** 2))

        for j, draws in subsets.items():
            gains = np.array([loss(s) - loss(tuple(sorted((*s, j)))) for s in draws])
            feature_rows.append({"method": method, "feature": j + 1, "phi": float(gains.mean()),
                                 "phi_se": float(gains.std(ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else 0.0,
                                 "samples": len(gains)})
        cost_rows.append({"method": method, "seconds": sum(r.seconds for r in cache.values()),
                          "steps": sum(r.steps for r in cache.values()), "fits": len(cache)})
        log.info("Shapley %s: %d kept sets fitted in %.1f s", method, len(cache), cost_rows[-1]["seconds"])
    return feature_rows, cost_rows
