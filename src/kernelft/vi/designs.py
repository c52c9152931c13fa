"""Data designs of the VI studies and their population truths (Sun & Raskutti, AISTATS 2025).

Each design draws (x, y) and knows the population quantities the estimates are compared with. X is
Gaussian with the covariance of :func:`kernelft.vi.datasets.covariance` (X1 and X2 correlated, ρ):

- :class:`LinearDesign`: Y = Xᵀβ + ε, the F8 simulation (reference code ``generate_linear_data``,
  ``codes/core/nn_utils.py`` line 541). VI_j = β_j²/(Σ⁻¹)_jj; the value of a kept set K (the MSE of
  E[Y | X_K]) is L(K) = σ² + βᵀ(Σ − Σ_·K Σ_KK⁻¹ Σ_K·)β in closed form.
- :class:`LogisticDesign`: Y = σ(Xᵀβ) + ε with σ the logistic function, the reference's Shapley study
  (``generate_logistic_data``, ``nn_utils.py`` lines 508-538; ``codes/exps/shap_log_*.py``: β = (0, 10,
  ..., 90), ρ = 0.5, N = 5000). Y is the success probability plus Gaussian noise, not a 0/1 label: the
  reference adds N(0, 0.1²) noise to σ(Xᵀβ) and fits the MSE. Xᵀβ given X_K is N(μ_K, s_K²) with
  μ_K = c_Kᵀ x_K, c_K = Σ_KK⁻¹ Σ_K· β, s_K² = βᵀ(Σ − Σ_·K Σ_KK⁻¹ Σ_K·)β, so

      E[Y | X_K] = G(μ_K; s_K),     G(μ; s) = E σ(μ + sZ),  Z ~ N(0, 1),
      L(K) = σ² + E[σ(Xᵀβ)²] − E[G(μ_K; s_K)²],      μ_K ~ N(0, v_K),  v_K = βᵀΣβ − s_K²,

  both one- and two-dimensional integrals done by quadrature (:func:`expected_sigmoid`,
  :func:`mean_square_of_expected_sigmoid`), accurate to ~1e-10.
- :class:`TeacherDesign`: Y = Σ_k V_k relu(W_kᵀ x) + ε, the two-layer teacher network of the reference's
  p = 100 study (``generate_WV`` and ``generate_2lnn_data``, ``nn_utils.py`` lines 125-181;
  ``codes/exps/hdr_nn.py`` lines 25-54: 12 hidden units, W_kj ~ N(β_j, 0.1²), V_k ~ N(0, 1), X ~ N(0, 0.1 Σ),
  no noise). Given X_{−j}, X_j is Gaussian (mean m_j, variance c_j), so W_kᵀx = a_k + W_kj (X_j − m_j) and
  E[relu(a + bZ)] = a Φ(a/|b|) + |b| φ(a/|b|): E[f | X_{−j}] is closed form and VI_j = E[(f − E[f | X_{−j}])²]
  is a Monte-Carlo mean over ``truth_samples`` draws of X.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, ndtr

from kernelft.vi import datasets

DESIGNS = ("linear", "logistic", "teacher")

_HERMITE = np.polynomial.hermite_e.hermegauss(64)
_LOGISTIC_GRID = np.linspace(-40.0, 40.0, 641)
_LEGENDRE = np.polynomial.legendre.leggauss(200)


def expected_sigmoid(mu: np.ndarray | float, s: float) -> np.ndarray:
    """G(μ; s) = E σ(μ + sZ), Z ~ N(0, 1), elementwise over ``mu`` (any shape).

    s ≤ 1: Gauss–Hermite (64 nodes) in z, where σ(μ + sz) is smooth on a scale 1/s ≥ 1. s > 1:
    G = P(L + sZ ≤ μ) = ∫ Φ((μ − l)/s) f_L(l) dl with L logistic (density f_L = σ(1 − σ)), by the
    trapezoid rule on l ∈ [−40, 40] (641 points; f_L(±40) ≈ 4e−18), smooth on a scale 1.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if s <= 1.0:
        nodes, weights = _HERMITE
        return expit(mu[..., None] + s * nodes) @ (weights / math.sqrt(2 * math.pi))
    grid = _LOGISTIC_GRID
    density = expit(grid) * expit(-grid) * (grid[1] - grid[0])
    return ndtr((mu[..., None] - grid) / s) @ density


def mean_square_of_expected_sigmoid(v: float, s: float) -> float:
    """E[G(μ; s)²] for μ ~ N(0, v) (:func:`expected_sigmoid`): E[E[σ(Xᵀβ) | X_K]²] when v = v_K, s = s_K.

    Written as P(μ > 0) + ∫_{−R}^0 G² φ_v + ∫_0^R (G² − 1) φ_v, each piece smooth, by Gauss–Legendre
    (200 nodes each); beyond R = min(9√v, 9√(s² + π²/3) + 40) both integrands are below 1e−17.
    """
    if v <= 1e-300:
        return float(expected_sigmoid(0.0, s) ** 2)
    sd = math.sqrt(v)
    reach = min(9.0 * sd, 9.0 * math.sqrt(s**2 + math.pi**2 / 3) + 40.0)
    nodes, weights = _LEGENDRE
    mu = 0.5 * reach * (nodes + 1.0)  # (0, R)
    density = np.exp(-0.5 * (mu / sd) ** 2) / (sd * math.sqrt(2 * math.pi)) * 0.5 * reach * weights
    right = (expected_sigmoid(mu, s) ** 2 - 1.0) @ density
    left = expected_sigmoid(-mu, s) ** 2 @ density
    return float(0.5 + right + left)


def _conditional(beta: np.ndarray, sigma: np.ndarray, kept: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """(c_K, s_K²): E[Xᵀβ | X_K] = c_Kᵀ x_K and Var(Xᵀβ | X_K) for X ~ N(0, Σ)."""
    k = list(kept)
    if not k:
        return np.zeros(0), float(beta @ sigma @ beta)
    coef = np.linalg.solve(sigma[np.ix_(k, k)], sigma[k, :] @ beta)
    residual = sigma - sigma[:, k] @ np.linalg.solve(sigma[np.ix_(k, k)], sigma[k, :])
    return coef, max(float(beta @ residual @ beta), 0.0)


def _drop_one(p: int, j: int) -> tuple[int, ...]:
    return tuple(k for k in range(p) if k != j)


@dataclass(frozen=True)
class _GaussianDesign:
    """X ~ N(0, Σ(ρ)) with p = len(β) features, and noise of sd ``noise_sd``."""

    beta: tuple[float, ...]
    rho: float
    noise_sd: float = 0.1

    @property
    def p(self) -> int:
        return len(self.beta)

    @property
    def sigma(self) -> np.ndarray:
        return datasets.covariance(self.p, self.rho)


@dataclass(frozen=True)
class LinearDesign(_GaussianDesign):
    """Y = Xᵀβ + N(0, noise_sd²), X ~ N(0, Σ(ρ)) (see the module docstring)."""

    def simulate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x (n, p), y (n,): :func:`kernelft.vi.datasets.simulate`."""
        return datasets.simulate(n, self.rho, rng, beta=self.beta, noise_sd=self.noise_sd)

    def true_vi(self) -> np.ndarray:
        """VI_j = β_j²/(Σ⁻¹)_jj, shape (p,)."""
        return datasets.true_vi(self.beta, self.sigma)

    def exact_shapley(self) -> np.ndarray:
        """φ_j of the MSE value function, shape (p,) (:func:`kernelft.vi.shapley.exact_shapley`)."""
        from kernelft.vi.shapley import exact_shapley

        return exact_shapley(self.beta, self.sigma)

    def regression(self, x: np.ndarray, kept: tuple[int, ...]) -> np.ndarray:
        """E[Y | X_K] = c_Kᵀ x_K at the rows of x (n, p) (only the kept columns are read); shape (n,)."""
        k = list(kept)
        sigma, beta = self.sigma, np.asarray(self.beta, dtype=np.float64)
        coef = np.linalg.solve(sigma[np.ix_(k, k)], sigma[k, :] @ beta) if k else np.zeros(0)
        return x[:, k] @ coef


@dataclass(frozen=True)
class LogisticDesign(_GaussianDesign):
    """Y = σ(Xᵀβ) + N(0, noise_sd²), X ~ N(0, Σ(ρ)) (see the module docstring)."""

    _values: dict = field(default_factory=dict, repr=False, compare=False)

    def simulate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x (n, p) ~ N(0, Σ(ρ)), y (n,) = σ(xβ) + N(0, noise_sd²), drawn in that order."""
        beta = np.asarray(self.beta, dtype=float)
        x = rng.multivariate_normal(np.zeros(self.p), self.sigma, size=n, method="cholesky")
        return x, expit(x @ beta) + self.noise_sd * rng.standard_normal(n)

    def _mean_square(self, kept: tuple[int, ...]) -> float:
        """E[E[σ(Xᵀβ) | X_K]²], cached per kept set."""
        if kept not in self._values:
            beta = np.asarray(self.beta, dtype=np.float64)
            _, s2 = _conditional(beta, self.sigma, kept)
            self._values[kept] = mean_square_of_expected_sigmoid(max(float(beta @ self.sigma @ beta) - s2, 0.0),
                                                                 math.sqrt(s2))
        return self._values[kept]

    def loss(self, kept: tuple[int, ...]) -> float:
        """L(K) = E(Y − E[Y | X_K])² = σ² + E[σ(Xᵀβ)²] − E[E[σ(Xᵀβ) | X_K]²]."""
        everything = tuple(range(self.p))
        return self.noise_sd**2 + self._mean_square(everything) - self._mean_square(tuple(sorted(kept)))

    def true_vi(self) -> np.ndarray:
        """VI_j = L([p]∖{j}) − L([p]), shape (p,)."""
        full = self.loss(tuple(range(self.p)))
        return np.array([self.loss(_drop_one(self.p, j)) - full for j in range(self.p)])

    def exact_shapley(self) -> np.ndarray:
        """φ_j of the MSE value function by enumerating all subsets, shape (p,)."""
        from kernelft.vi.shapley import shapley_values

        return shapley_values(self.loss, self.p)

    def regression(self, x: np.ndarray, kept: tuple[int, ...]) -> np.ndarray:
        """E[Y | X_K] = G(c_Kᵀ x_K; s_K) at the rows of x (n, p); shape (n,)."""
        beta = np.asarray(self.beta, dtype=np.float64)
        coef, s2 = _conditional(beta, self.sigma, tuple(kept))
        return expected_sigmoid(x[:, list(kept)] @ coef, math.sqrt(s2))


@dataclass(frozen=True, eq=False)
class TeacherDesign:
    """Y = Σ_k V_k relu(W_kᵀ x) + N(0, noise_sd²), X ~ N(0, input_variance · Σ(ρ)) (module docstring).

    ``weights`` W (m, p), ``head`` V (m,). Build it with :func:`teacher`.
    """

    weights: np.ndarray
    head: np.ndarray
    rho: float
    input_variance: float = 0.1
    noise_sd: float = 0.0
    truth_samples: int = 100_000
    truth_seed: int = 0

    @property
    def p(self) -> int:
        return self.weights.shape[1]

    @property
    def sigma(self) -> np.ndarray:
        return self.input_variance * datasets.covariance(self.p, self.rho)

    def function(self, x: np.ndarray) -> np.ndarray:
        """f(x) = relu(x Wᵀ) V for x (n, p); shape (n,)."""
        return np.maximum(x @ self.weights.T, 0.0) @ self.head

    def simulate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x (n, p), y (n,) = f(x) + N(0, noise_sd²) (the noise draw is skipped when noise_sd = 0)."""
        x = rng.multivariate_normal(np.zeros(self.p), self.sigma, size=n, method="cholesky")
        y = self.function(x)
        if self.noise_sd > 0:
            y = y + self.noise_sd * rng.standard_normal(n)
        return x, y

    def conditional_mean(self, x: np.ndarray, j: int, _cache: tuple | None = None) -> np.ndarray:
        """E[f(X) | X_{−j} = x_{−j}] at the rows of x (n, p); shape (n,).

        With P = Σ⁻¹, X_j | x_{−j} ~ N(m_j, 1/P_jj), m_j = x_j − (xP)_j/P_jj (free of x_j)."""
        precision, pre_all, shift = _cache if _cache is not None else self._conditioning(x)
        pre = pre_all - np.outer(shift[:, j], self.weights[:, j])  # W_kᵀx with x_j replaced by m_j: (n, m)
        spread = np.abs(self.weights[:, j]) / math.sqrt(precision[j, j])  # (m,)
        safe = np.where(spread > 0, spread, 1.0)
        z = pre / safe
        smooth = pre * ndtr(z) + spread * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return np.where(spread > 0, smooth, np.maximum(pre, 0.0)) @ self.head

    @functools.cached_property
    def _true_vi(self) -> np.ndarray:
        rng = np.random.default_rng(self.truth_seed)
        x = rng.multivariate_normal(np.zeros(self.p), self.sigma, size=self.truth_samples, method="cholesky")
        f, cache = self.function(x), self._conditioning(x)
        return np.array([np.mean((f - self.conditional_mean(x, j, cache)) ** 2) for j in range(self.p)])

    def _conditioning(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P = Σ⁻¹, xWᵀ (n, m), x − m (n, p)) for :meth:`conditional_mean`."""
        precision = np.linalg.inv(self.sigma)
        return precision, x @ self.weights.T, (x @ precision) / np.diag(precision)

    def true_vi(self) -> np.ndarray:
        """VI_j = E[(f(X) − E[f(X) | X_{−j}])²] by Monte Carlo over ``truth_samples`` draws (seed
        ``truth_seed``), computed once; shape (p,)."""
        return self._true_vi


def teacher(beta: tuple[float, ...], rho: float, section: dict[str, Any], rng: np.random.Generator) -> TeacherDesign:
    """Draw the teacher network as ``generate_WV`` (reference ``nn_utils.py`` lines 138-151): W (m, p)
    with column j ~ N(β_j, weight_sd²), then V (m,) ~ N(0, 1), then the seed of its Monte-Carlo truth;
    ``section`` is ``vi.highdim.teacher`` (width m, weight_sd, input_variance, noise_sd, truth_samples)."""
    width = int(section.get("width", 12))
    beta = np.asarray(beta, dtype=np.float64)
    weights = beta + float(section.get("weight_sd", 0.1)) * rng.standard_normal((width, len(beta)))
    head = rng.standard_normal(width)
    truth_seed = int(rng.integers(0, 2**63 - 1))
    return TeacherDesign(weights=weights, head=head, rho=rho, input_variance=float(section.get("input_variance", 0.1)),
                         noise_sd=float(section.get("noise_sd", 0.0)),
                         truth_samples=int(section.get("truth_samples", 100_000)), truth_seed=truth_seed)
