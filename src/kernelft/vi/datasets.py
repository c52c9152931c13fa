"""Simulated data for variable importance (VI), after Sun & Raskutti (AISTATS 2025).

The simulation of the paper (Sun & Raskutti, "Reliable and scalable variable importance estimation
via warm-start and early stopping", AISTATS 2025, arXiv:2412.01120; reference code
ZexuanSun/Early-stopping-VI, ``generate_linear_data``):

    X ~ N(0, Σ),  Σ = I_p except Σ_12 = Σ_21 = ρ   (only X1 and X2 are correlated)
    Y = Xᵀβ + ε,  ε ~ N(0, σ²),  β = (1.5, 1.2, 1, 0, 0, 0).

The VI of feature j is the expected squared change of the regression function when X_j is removed,

    VI_j = E[(f(X) − f_{−j}(X_{−j}))²],  f = E[Y | X],  f_{−j} = E[Y | X_{−j}].

For a linear f and Gaussian X, f − f_{−j} = β_j (X_j − E[X_j | X_{−j}]), so

    VI_j = β_j² · Var(X_j | X_{−j}) = β_j² / (Σ⁻¹)_{jj},

which for the design above gives VI_1 = 1.5² (1 − ρ²), VI_2 = 1.2² (1 − ρ²), VI_3 = 1 and
VI_4 = VI_5 = VI_6 = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BETA = (1.5, 1.2, 1.0, 0.0, 0.0, 0.0)


def covariance(p: int, rho: float, pair: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Covariance of the features: the identity with correlation ``rho`` between the two ``pair`` columns.

    Returns a (p, p) array. Raises ``ValueError`` unless |rho| < 1 (Σ must be positive definite).
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(f"correlation rho must lie in (-1, 1), got {rho}")
    i, k = pair
    if not (0 <= i < p and 0 <= k < p and i != k):
        raise ValueError(f"correlated pair {pair} must be two distinct columns of 0..{p - 1}")
    sigma = np.eye(p)
    sigma[i, k] = sigma[k, i] = rho
    return sigma


def true_vi(beta: np.ndarray | tuple[float, ...], sigma: np.ndarray) -> np.ndarray:
    """Population VI of every feature for Y = Xᵀβ + ε with X ~ N(0, Σ): VI_j = β_j² / (Σ⁻¹)_{jj}.

    Shape (p,). With Σ from :func:`covariance`, VI_1 = β_1² (1 − ρ²).
    """
    beta = np.asarray(beta, dtype=float)
    precision = np.linalg.inv(sigma)
    return beta**2 / np.diag(precision)


@dataclass(frozen=True)
class Split:
    """Train / validation / test arrays of one simulated data set (X: (n_split, p), y: (n_split,))."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def simulate(
    n: int, rho: float, rng: np.random.Generator, beta: tuple[float, ...] = BETA, noise_sd: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` examples of the linear design: X (n, p) ~ N(0, Σ(ρ)), y (n,) = Xβ + N(0, noise_sd²)."""
    beta = np.asarray(beta, dtype=float)
    sigma = covariance(len(beta), rho)
    x = rng.multivariate_normal(np.zeros(len(beta)), sigma, size=n, method="cholesky")
    y = x @ beta + noise_sd * rng.standard_normal(n)
    return x, y


def split(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, test_fraction: float = 0.25, val_fraction: float = 0.25
) -> Split:
    """Shuffle and split into test (``test_fraction`` of n), then validation (``val_fraction`` of the rest) and train.

    The defaults follow the reference code (two ``train_test_split`` calls with 25 %): with n = 1000,
    562 train, 188 validation, 250 test examples.
    """
    n = len(y)
    order = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * (n - n_test)))
    if n - n_test - n_val < 2 or n_val < 1 or n_test < 1:
        raise ValueError(f"n = {n} is too small for test_fraction {test_fraction} and val_fraction {val_fraction}")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Split(x[train], y[train], x[val], y[val], x[test], y[test])


def drop_feature(x: np.ndarray, j: int, value: float) -> np.ndarray:
    """Copy of ``x`` with column ``j`` replaced by the constant ``value`` (a mean of X_j, :func:`drop_in_splits`).

    This is the "dropout" reduction of the paper: the reduced model keeps the input layout, so it can
    start from the full model's weights.
    """
    dropped = np.array(x, copy=True)
    dropped[:, j] = value
    return dropped


DROP_MEANS = ("train", "split")
"""Values of ``vi.drop_mean``: which mean replaces a dropped feature (:func:`drop_in_splits`)."""


def check_drop_mean(drop_mean: str) -> None:
    """Raise ``ValueError`` naming the config key unless ``drop_mean`` is one of :data:`DROP_MEANS`."""
    if drop_mean not in DROP_MEANS:
        raise ValueError(f"config key vi.drop_mean: {drop_mean!r} is not one of {list(DROP_MEANS)}")


def drop_in_splits(data: Split, j: int, drop_mean: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_val, x_test) of ``data`` with column ``j`` replaced by a constant (:func:`drop_feature`).

    ``drop_mean = "train"``: the training mean of X_j in all three splits; ``"split"``: each split's own
    mean, as the reference code's ``dropdata`` (``codes/core/nn_utils.py``, lines 118-120).
    """
    check_drop_mean(drop_mean)
    splits = (data.x_train, data.x_val, data.x_test)
    if drop_mean == "train":
        value = float(data.x_train[:, j].mean())
        return tuple(drop_feature(a, j, value) for a in splits)
    return tuple(drop_feature(a, j, float(a[:, j].mean())) for a in splits)


def sparse_beta(nonzero: tuple[float, ...] | list[float], p: int) -> tuple[float, ...]:
    """β of the high-dimensional design: the ``nonzero`` coefficients, then zeros up to length p.

    The reference code's ``hdr_*.py`` use (5, 4, 3, 2, 1) and p = 100."""
    if len(nonzero) > p:
        raise ValueError(f"{len(nonzero)} non-zero coefficients do not fit in p = {p} features")
    return tuple(float(b) for b in nonzero) + (0.0,) * (p - len(nonzero))


@dataclass(frozen=True)
class RealData:
    """A real regression data set, standardised: x (n, p) and y (n,) with mean 0 and sd 1 per column."""

    name: str
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def load_real(source: str, target: str | None = None, features: list[str] | None = None) -> RealData:
    """Load a real data set offline and standardise X and y (VI is then in units of Var(Y)).

    ``source`` is ``"diabetes"`` (scikit-learn's copy of Efron et al. 2004: 442 patients, 10 features,
    disease progression after one year; shipped with scikit-learn, no download) or the path of a CSV
    file, e.g. the UCI gas-turbine emissions data of the paper (``gt_2015.csv``, target ``CO``,
    features AT, AP, AH, AFDP, GTEP, TIT, TAT, TEY, CDP), which the user provides. For a CSV,
    ``target`` names the response column and ``features`` the inputs (default: all other columns;
    the gas-turbine file also holds NOX, a second response, so the paper config lists the nine inputs).
    """
    if source == "diabetes":
        from sklearn.datasets import load_diabetes

        bunch = load_diabetes(scaled=False)
        x, y, names = np.asarray(bunch.data, float), np.asarray(bunch.target, float), tuple(bunch.feature_names)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config key vi.real.source: no file {path} (use 'diabetes' or a CSV path)")
        frame = pd.read_csv(path)
        if target is None or target not in frame.columns:
            raise KeyError(f"config key vi.real.target: {target!r} is not a column of {path}; "
                           f"columns are {list(frame.columns)}")
        names = tuple(features) if features else tuple(c for c in frame.columns if c != target)
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise KeyError(f"config key vi.real.features: {missing} are not columns of {path}")
        x, y = frame[list(names)].to_numpy(float), frame[target].to_numpy(float)
    name = source if source == "diabetes" else f"{Path(source).stem}:{target}"
    return RealData(name=name, x=_standardise(x), y=_standardise(y), feature_names=names)
