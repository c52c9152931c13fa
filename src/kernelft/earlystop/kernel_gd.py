"""Early-stopped kernel gradient descent with the eNTK (Sun & Raskutti 2026; figures F6, F7).

Linearized fine-tuning is kernel gradient descent. With squared loss L = (1/2n) Σ_i (f(x_i) − y_i)²
and step η, the training residual r_t = f_t(X) − y evolves as

    r_{t+1} = (I − η K/n) r_t,        f_{t+1}(X*) = f_t(X*) − (η/n) K(X*, X) r_t,

with K the n×n eNTK of the training examples and K(X*, X) the m×n test-by-train kernel. Writing
K/n = U diag(s) Uᵀ and c = Uᵀ y_R (y_R = y − f_init, the residual target), the whole path is closed
form (:class:`KernelGDPath`):

    y − f_t(X)  = U diag((1 − ηs)^t) c
    f_t(X*)     = f_init(X*) + (1/n) K(X*, X) U diag(A_t) c,   A_t = (1 − (1 − ηs)^t) / s  (= ηt at s=0)

so every step t costs O(n·m) after one eigen-decomposition. :func:`kernel_gd_iterate` runs the
updates literally (for tests).

Stopping rule (Raskutti, Wainwright & Yu, JMLR 2014, in the form Sun & Raskutti 2026 apply to the eNTK): with λ_i the
eigenvalues of K/n, stop at the first T ≥ 1 with

    Σ_i min(λ_i, 1/(ηT))  >  n R² / (4 e² σ² η² T²),

R² = y_Rᵀ K⁺ y_R the RKHS norm of the residual target and σ² the noise variance. T² · LHS =
Σ_i min(λ_i T², T/η) grows with T, so the crossing is unique and found by doubling plus bisection,
beyond any step grid. Two conventions name the stopping time (:data:`STOPPING_CONVENTIONS`):

- ``first_crossing``: T̂ = that first T, the form in which Sun & Raskutti 2026 state the rule;
- ``before_crossing``: T̂ = first T − 1, the last step before the crossing — RWY's own definition
  (T̂ = argmin{t : R̂(1/√(ηt)) > 1/(2eσηt)} − 1) and what the authors' code does
  (ZexuanSun/Early-stopping-VI, codes/core/nn_utils.py:372 ``Tind = np.argmax(lhs > rhs)`` over
  T = 1, 2, …, then :380 ``T = T[Tind] - 1``; the same in codes/core/utils_gdbt.py:570, 577). It is
  0 when the rule fires at T = 1.

The two differ by exactly one step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from kernelft.kernels.spectrum import kernel_eigh

log = logging.getLogger(__name__)

E = float(np.e)
R2_METHODS = ("ridge", "pinv")
STOPPING_CONVENTIONS = ("first_crossing", "before_crossing")
"""T̂ = the rule's first crossing, or the step before it (RWY 2014 and the authors' code); module docstring."""
MAX_DOF_FRACTION = 0.5
"""GCV ridges must leave at least half of the degrees of freedom to the residual (:func:`noise_variance`)."""


def _as_vector(values: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {values.shape}")
    return values


@dataclass(frozen=True)
class KernelGDPath:
    """Closed-form kernel GD path from one decomposition K/n = U diag(s) Uᵀ (see module docstring).

    ``eigenvalues`` s (n,), ``eigenvectors`` U (n, n), ``coef`` c = Uᵀ y_R (n,), ``f_init`` (n,).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    coef: np.ndarray
    f_init: np.ndarray
    eta: float

    @property
    def n(self) -> int:
        return self.eigenvalues.size

    def _factors(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1 − ηs)^t and A_t = Σ_{k<t} η(1 − ηs)^k, both (len(steps), n); steps are integers ≥ 0."""
        t = np.asarray(steps, dtype=np.int64)[:, None]
        if (t < 0).any():
            raise ValueError("steps must be ≥ 0")
        s = self.eigenvalues[None, :]
        q = 1.0 - self.eta * s
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            positive = q > 0
            log_q = np.log1p(-self.eta * np.where(positive, s, 0.0))  # log q where q > 0
            # 1 − q^t, accurate for small ηs as −expm1(t log q); a plain power where q ≤ 0 (ηs ≥ 1)
            one_minus = np.where(positive, -np.expm1(t * log_q), 1.0 - np.power(q, t))
            area = np.where(s > 0, one_minus / np.where(s > 0, s, 1.0), self.eta * t)
        return 1.0 - one_minus, area

    def train_mse(self, steps: np.ndarray) -> np.ndarray:
        """(1/n) ‖y − f_t(X)‖² at each step, shape (len(steps),)."""
        power, _ = self._factors(steps)
        return ((power * self.coef) ** 2).sum(axis=1) / self.n

    def predict_train(self, steps: np.ndarray) -> np.ndarray:
        """f_t(X) at each step, shape (len(steps), n)."""
        power, _ = self._factors(steps)
        return self.f_init + ((1.0 - power) * self.coef) @ self.eigenvectors.T

    def predict(
        self, kernel_cross: np.ndarray, steps: np.ndarray, f_init_cross: np.ndarray | None = None
    ) -> np.ndarray:
        """f_t(X*) for the (m, n) kernel K(X*, X) at each step, shape (len(steps), m)."""
        kernel_cross = np.asarray(kernel_cross, dtype=np.float64)
        if kernel_cross.ndim != 2 or kernel_cross.shape[1] != self.n:
            raise ValueError(f"kernel_cross must have shape (m, {self.n}), got {kernel_cross.shape}")
        f0 = _as_vector(f_init_cross, kernel_cross.shape[0], "f_init_cross")
        _, area = self._factors(steps)
        projected = (kernel_cross @ self.eigenvectors) * self.coef / self.n  # (m, n)
        return f0 + area @ projected.T


def kernel_gd(
    kernel: np.ndarray,
    y: np.ndarray,
    eta: float | None = None,
    f_init: np.ndarray | None = None,
    *,
    eta_scale: float = 1.0,
) -> KernelGDPath:
    """Decompose the (n, n) kernel once and return the closed-form path of GD from f_init towards y.

    ``eta=None`` takes η = eta_scale / λ_1(K/n) (:func:`step_size`).
    """
    y = np.asarray(y, dtype=np.float64)
    s, u = kernel_eigh(kernel)
    f0 = _as_vector(f_init, s.size, "f_init")
    if y.shape != (s.size,):
        raise ValueError(f"y must have shape ({s.size},), got {y.shape}")
    eta = step_size(s, eta_scale) if eta is None else float(eta)
    if eta * s[0] >= 2:
        log.warning("step η=%.3g with λ_1=%.3g: η λ_1 ≥ 2, kernel GD diverges", eta, s[0])
    return KernelGDPath(s, u, u.T @ (y - f0), f0, float(eta))


def kernel_gd_iterate(
    kernel: np.ndarray,
    y: np.ndarray,
    eta: float,
    n_steps: int,
    kernel_cross: np.ndarray | None = None,
    f_init: np.ndarray | None = None,
    f_init_cross: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Literal updates f ← f − (η/n) K (f − y) for t = 0..n_steps (reference for tests).

    Returns train predictions (n_steps+1, n) and test predictions (n_steps+1, m) or None.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    n = kernel.shape[0]
    f = _as_vector(f_init, n, "f_init").copy()
    y = np.asarray(y, dtype=np.float64)
    g = None if kernel_cross is None else _as_vector(f_init_cross, kernel_cross.shape[0], "f_init_cross").copy()
    train, test = [f.copy()], [None if g is None else g.copy()]
    for _ in range(n_steps):
        r = f - y
        f = f - eta / n * (kernel @ r)
        if g is not None:
            g = g - eta / n * (kernel_cross @ r)
        train.append(f.copy())
        test.append(None if g is None else g.copy())
    return np.array(train), (None if g is None else np.array(test))


def step_size(eigenvalues: np.ndarray, eta_scale: float = 1.0) -> float:
    """η = eta_scale / λ_1(K/n): eta_scale ≤ 1 gives a monotone (non-oscillating) descent, < 2 converges."""
    return float(eta_scale / np.asarray(eigenvalues)[0])


def step_grid(max_steps: int, num: int | None = None) -> np.ndarray:
    """Steps 0..max_steps (num=None) or 0 plus ~num log-spaced integers in [1, max_steps].

    The closed form evaluates any step at the same cost, so long horizons want the log grid: the
    learning curve holds len(steps) × n numbers per path.
    """
    if num is None:
        return np.arange(max_steps + 1)
    return np.union1d([0], np.unique(np.round(np.geomspace(1, max_steps, num)).astype(np.int64)))


def _rwy_gap(eigenvalues: np.ndarray, eta: float, t: int) -> float:
    """T² Σ min(λ_i, 1/(ηT)), increasing in T."""
    return float(t) ** 2 * float(np.minimum(eigenvalues, 1.0 / (eta * t)).sum())


def rwy_threshold(n: int, eta: float, sigma2: float, r2: float) -> float:
    """Right-hand side times T²: n R² / (4 e² σ² η²)."""
    return n * r2 / (4 * E**2 * sigma2 * eta**2)


def rwy_stopping_time(
    eigenvalues: np.ndarray,
    eta: float,
    sigma2: float,
    r2: float,
    t_max: int = 10**12,
    convention: str = "first_crossing",
) -> int:
    """The RWY stopping time: the first T ≥ 1 with Σ_i min(λ_i, 1/(ηT)) > n R² / (4 e² σ² η² T²)
    (λ_i of K/n, n = len(λ)) for ``convention="first_crossing"``, that T − 1 for ``"before_crossing"``
    (RWY's definition and the authors' code; module docstring).

    Exact integer, found by doubling then bisection on the increasing T² · LHS. Raises if no T ≤ t_max.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if convention not in STOPPING_CONVENTIONS:
        raise ValueError(f"stopping_convention={convention!r}; expected one of {STOPPING_CONVENTIONS}")
    if sigma2 <= 0 or r2 < 0 or eta <= 0:
        raise ValueError(f"need σ²>0, R²≥0, η>0; got σ²={sigma2}, R²={r2}, η={eta}")
    bound = rwy_threshold(lam.size, eta, sigma2, r2)
    hi = 1
    while _rwy_gap(lam, eta, hi) <= bound:
        hi *= 2
        if hi > t_max:
            raise ValueError(f"stopping rule never fires for T ≤ {t_max} (is the kernel zero? σ²={sigma2}, R²={r2})")
    lo = hi // 2  # gap(lo) ≤ bound (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _rwy_gap(lam, eta, mid) > bound:
            hi = mid
        else:
            lo = mid
    return hi - 1 if convention == "before_crossing" else hi


def rwy_terms(eigenvalues: np.ndarray, eta: float, sigma2: float, r2: float, steps: np.ndarray) -> pd.DataFrame:
    """Both sides of the rule at each step ≥ 1: columns step, lhs = Σ min(λ_i, 1/(ηT)), rhs, fired."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    t = np.asarray(steps, dtype=np.float64)
    t = t[t >= 1]
    lhs = np.minimum(lam[None, :], 1.0 / (eta * t[:, None])).sum(axis=1)
    rhs = rwy_threshold(lam.size, eta, sigma2, r2) / t**2
    return pd.DataFrame({"step": t.astype(np.int64), "lhs": lhs, "rhs": rhs, "fired": lhs > rhs})


@dataclass(frozen=True)
class NoiseEstimate:
    """σ² from kernel ridge regression with the ridge ρ chosen by GCV.

    Smoother S_ρ = K (K + nρI)⁻¹ with eigenvalues h_i = s_i/(s_i + ρ);
    σ̂² = ‖(I − S_ρ) y_R‖² / (n − tr S_ρ) (Wahba 1990); GCV(ρ) = n ‖(I − S_ρ) y_R‖² / (n − tr S_ρ)².
    """

    sigma2: float
    ridge: float
    dof: float


def noise_variance(
    path: KernelGDPath, ridges: np.ndarray | None = None, max_dof_fraction: float = MAX_DOF_FRACTION
) -> NoiseEstimate:
    """GCV kernel ridge estimate of σ² (see :class:`NoiseEstimate`); ridges default to s_1·10^[−8, 1].

    Only ridges whose smoother keeps tr S_ρ ≤ ``max_dof_fraction``·n compete. Without that guard, a
    kernel with a long flat tail (the eNTK of a language model: λ_n/λ_1 ≈ 1e−5) can have its GCV
    minimum at the interpolating end ρ → 0, where GCV tends to a finite value but
    σ̂² = RSS/(n − tr S) tends to 0/0 → 0, and the stopping rule then never stops (measured on
    MiniLM, n = 256: GCV 0.832 at ρ = 1e−8·s_1, σ̂² = 1e−4, against 0.847 and σ̂² = 0.36 at the interior
    minimum ρ ≈ 1.6e−4·s_1). The residual estimate of σ² is only meaningful when n − tr S is of order n.
    """
    s, c, n = path.eigenvalues, path.coef, path.n
    ridges = np.geomspace(1e-8, 10.0, 61) * s[0] if ridges is None else np.asarray(ridges, dtype=np.float64)
    h = s[None, :] / (s[None, :] + ridges[:, None])
    rss = (((1 - h) * c) ** 2).sum(axis=1)
    dof = h.sum(axis=1)
    gcv = n * rss / np.maximum(n - dof, 1e-12) ** 2
    allowed = dof <= max_dof_fraction * n
    if not allowed.any():
        raise ValueError(f"no ridge in the grid keeps tr S ≤ {max_dof_fraction}·n (n={n}); extend the grid upwards")
    best = int(np.argmin(np.where(allowed, gcv, np.inf)))
    estimate = NoiseEstimate(float(rss[best] / max(n - dof[best], 1e-12)), float(ridges[best]), float(dof[best]))
    log.info(
        "GCV noise estimate: σ²=%.4g (ridge ρ=%.3g, dof=%.1f of n=%d)", estimate.sigma2, estimate.ridge, estimate.dof, n
    )
    return estimate


def rkhs_norm2(path: KernelGDPath, method: str = "ridge", *, rcond: float = 1e-8, ridge: float | None = None) -> float:
    """Estimate R² = ‖y_R‖²_H from the training data.

    - ``"pinv"``: y_Rᵀ K⁺ y_R = Σ_{s_i > rcond·s_1} c_i² / (n s_i), the RKHS norm of the interpolant.
      With noisy labels the noise in small-eigenvalue directions inflates it, more so as n grows
      (each term ~ σ²/(n s_i)); a larger R² moves T̂ later, so the rule overfits. On the synthetic
      check (i^(−2) spectrum, σ = 0.1, n = 40..320) R² grew from 6 to 360 (truth 1), T̂ ran to 20× the
      oracle T*, and the slope came out −0.10 instead of −0.67.
    - ``"ridge"``: the RKHS norm of the GCV kernel ridge fit f̂ = K(K + nρI)⁻¹ y_R,
      ‖f̂‖²_H = Σ_i c_i² s_i / (n (s_i + ρ)²) — a denoised estimate (ρ from :func:`noise_variance`
      unless ``ridge`` is given).
    """
    s, c, n = path.eigenvalues, path.coef, path.n
    if method == "pinv":
        keep = s > rcond * s[0]
        return float((c[keep] ** 2 / (n * s[keep])).sum())
    if method == "ridge":
        rho = noise_variance(path).ridge if ridge is None else ridge
        return float((c**2 * s / (n * (s + rho) ** 2)).sum())
    raise ValueError(f"r2_method={method!r}; expected one of {R2_METHODS}")


def patience_stop(values: np.ndarray, patience: int) -> int:
    """Index of the best value seen before `patience` evaluations in a row failed to improve on it."""
    best, best_idx = np.inf, 0
    for idx, value in enumerate(values):
        if value < best:
            best, best_idx = value, idx
        elif idx - best_idx >= patience:
            break
    return best_idx


@dataclass(frozen=True)
class ValidationStop:
    """Hold-out early stopping: ``step`` chosen on ``val_mse`` (evaluated at ``steps``)."""

    step: int
    steps: np.ndarray
    val_mse: np.ndarray


def validation_stopping_time(
    kernel: np.ndarray,
    y: np.ndarray,
    eta: float,
    steps: np.ndarray,
    *,
    val_fraction: float = 0.2,
    patience: int = 20,
    seed: int = 0,
    f_init: np.ndarray | None = None,
) -> ValidationStop:
    """Hold out ⌈val_fraction·n⌉ training examples, run kernel GD (same η) on the rest, and stop at the
    step with the lowest hold-out MSE once ``patience`` evaluations (grid points of ``steps``) bring no
    improvement. The step then applies to the model trained on all n examples (the dynamics in terms
    of K/n, hence ηt, are comparable at sizes n and (1 − val_fraction)·n).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    n = kernel.shape[0]
    f0 = _as_vector(f_init, n, "f_init")
    n_val = int(np.ceil(val_fraction * n))
    if not 1 <= n_val < n - 1:
        raise ValueError(f"val_fraction={val_fraction} leaves {n_val} of n={n} examples for validation")
    perm = np.random.default_rng(seed).permutation(n)
    val, fit = perm[:n_val], perm[n_val:]
    path = kernel_gd(kernel[np.ix_(fit, fit)], np.asarray(y)[fit], eta, f0[fit])
    steps = np.asarray(steps, dtype=np.int64)
    pred = path.predict(kernel[np.ix_(val, fit)], steps, f0[val])
    val_mse = ((pred - np.asarray(y)[val]) ** 2).mean(axis=1)
    return ValidationStop(int(steps[patience_stop(val_mse, patience)]), steps, val_mse)


@dataclass
class EarlyStopResult:
    """Learning curve and stopping times of one run.

    ``curve`` columns: step, train_mse, test_mse, val_mse (hold-out MSE of the validation run, NaN at
    steps added off its grid). ``summary`` keys: n, n_test, eta, sigma2, sigma2_source, r2,
    r2_source, stopping_convention, stop_crossing (the rule's first crossing), stop_rule (T̂ under
    the convention), stop_oracle, stop_validation, test_mse_rule, test_mse_oracle,
    test_mse_validation, excess_rule, excess_validation (test MSE minus the oracle's), rule_beyond_grid.
    """

    curve: pd.DataFrame
    summary: dict[str, float | int | str | bool] = field(default_factory=dict)


def run_early_stopping(
    kernel: np.ndarray,
    y: np.ndarray,
    kernel_cross: np.ndarray,
    y_test: np.ndarray,
    steps: np.ndarray,
    *,
    eta: float | None = None,
    eta_scale: float = 1.0,
    sigma2: float | None = None,
    r2: float | None = None,
    r2_method: str = "ridge",
    rcond: float = 1e-8,
    val_fraction: float = 0.2,
    patience: int = 20,
    seed: int = 0,
    f_init: np.ndarray | None = None,
    f_init_cross: np.ndarray | None = None,
    stopping_convention: str = "first_crossing",
    r2_values: np.ndarray | None = None,
) -> EarlyStopResult:
    """Kernel GD on (kernel (n, n), y (n,)), tested on (kernel_cross (m, n), y_test (m,)).

    η defaults to eta_scale/λ_1(K/n); σ² defaults to the GCV estimate on y, R² to ``r2_method``
    applied to the residual target y_R = y − f_init, or to ``r2_values`` − f_init when ``r2_values``
    (n,) is given (a denoised stand-in for f* at the training points; the GCV ridge of a ``ridge`` R²
    still comes from y). T̂ (rule, under ``stopping_convention``), T* (argmin of test MSE over
    ``steps`` ∪ {T̂, T_val}) and T_val (hold-out) are added to the curve. Pass the clean target as
    ``y_test`` to measure excess risk (synthetic data).
    """
    path = kernel_gd(kernel, y, eta, f_init, eta_scale=eta_scale)
    eta = path.eta
    noise = noise_variance(path) if sigma2 is None or (r2 is None and r2_method == "ridge") else None
    sigma2, sigma2_source = (noise.sigma2, "gcv") if sigma2 is None else (sigma2, "given")
    if r2 is None:
        r2_path = path
        if r2_values is not None:  # same decomposition, coefficients of the other residual target
            residual = _as_vector(r2_values, path.n, "r2_values") - path.f_init
            r2_path = replace(path, coef=path.eigenvectors.T @ residual)
        r2 = rkhs_norm2(r2_path, r2_method, rcond=rcond, ridge=noise.ridge if noise else None)
        r2_source = r2_method
    else:
        r2_source = "given"
    stop_rule = rwy_stopping_time(path.eigenvalues, eta, sigma2, r2, convention=stopping_convention)
    stop_crossing = stop_rule + 1 if stopping_convention == "before_crossing" else stop_rule
    steps = np.asarray(steps, dtype=np.int64)
    valid = validation_stopping_time(
        kernel, y, eta, steps, val_fraction=val_fraction, patience=patience, seed=seed, f_init=f_init
    )
    all_steps = np.union1d(steps, [stop_rule, valid.step])
    y_test = np.asarray(y_test, dtype=np.float64)
    test_mse = ((path.predict(kernel_cross, all_steps, f_init_cross) - y_test) ** 2).mean(axis=1)
    val_mse = pd.Series(valid.val_mse, index=valid.steps).reindex(all_steps).to_numpy()
    curve = pd.DataFrame(
        {"step": all_steps, "train_mse": path.train_mse(all_steps), "test_mse": test_mse, "val_mse": val_mse}
    )
    at = dict(zip(all_steps.tolist(), test_mse.tolist()))
    stop_oracle = int(all_steps[np.argmin(test_mse)])
    summary = {
        "n": path.n, "n_test": int(y_test.size), "eta": eta,
        "sigma2": float(sigma2), "sigma2_source": sigma2_source, "r2": float(r2), "r2_source": r2_source,
        "stopping_convention": stopping_convention, "stop_crossing": stop_crossing,
        "stop_rule": stop_rule, "stop_oracle": stop_oracle, "stop_validation": valid.step,
        "test_mse_rule": at[stop_rule], "test_mse_oracle": at[stop_oracle], "test_mse_validation": at[valid.step],
        "excess_rule": at[stop_rule] - at[stop_oracle], "excess_validation": at[valid.step] - at[stop_oracle],
        "rule_beyond_grid": bool(stop_rule > steps.max()),
    }
    log.info(
        "n=%d: T_rule=%d (test %.4g), T*=%d (test %.4g), T_val=%d (test %.4g)",
        path.n, stop_rule, at[stop_rule], stop_oracle, at[stop_oracle], valid.step, at[valid.step],
    )
    return EarlyStopResult(curve, summary)
