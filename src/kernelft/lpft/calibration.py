"""Calibration (ECE, MCE, temperature scaling) and the NTK decomposition of a linear head.

Tomihari & Sato (NeurIPS 2024), "Understanding Linear Probing then Fine-tuning Language Models
from NTK Perspective" (arXiv:2405.16747; reference code tom4649/lp-ft_ntk):

- LP-FT starts fine-tuning with a large head norm ‖V‖, which keeps features close to the
  pretrained ones but makes the logits large, hence over-confident; temperature scaling
  (Guo et al. 2017) repairs the calibration. Metrics: ECE and MCE with 15 equal-width bins of the
  top-label confidence, as ``utils/custom_metric.py::calibration_error`` of the reference.
- For logits ``f(x) = V φ(x) + b`` the eNTK splits into a pre-train-effective part (gradients
  w.r.t. the head V, b) and an FT-effective part (gradients w.r.t. the encoder):

      K(x, x') = (φ(x)ᵀφ(x') + 1) I_C  +  V J_φ(x) J_φ(x')ᵀ Vᵀ,     J_φ(x) = ∂φ(x)/∂θ ∈ R^{H×P}.

  The second term grows as ‖V‖², which is why a large head norm after LP lets the encoder move
  little during FT.

Bin convention (the reference's): ``B_b = (b/M, (b+1)/M]``, closed on the right, for
``b = 0..M-1``; a confidence of exactly 0 (impossible for a softmax) goes to the first bin.
Logits of shape ``(n,)`` are a binary margin ``f = logit_1 − logit_0``: ``p_1 = sigmoid(f)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

log = logging.getLogger(__name__)

N_BINS = 15
"""Bins of the reliability diagram, ECE and MCE (Tomihari & Sato 2024; Guo et al. 2017)."""


def _logits_2d(logits: np.ndarray) -> np.ndarray:
    """``(n, C)`` logits; a binary margin ``(n,)`` becomes ``[0, f]`` (same softmax as sigmoid(f))."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        return np.stack([np.zeros_like(z), z], axis=1)
    if z.ndim != 2:
        raise ValueError(f"logits must be (n, C) or a binary margin (n,), got shape {z.shape}")
    return z


def _labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the predictions, got {y.shape}")
    return y.astype(np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, C)`` from logits ``(n, C)`` or a binary margin ``(n,)``."""
    return np.exp(log_softmax(_logits_2d(logits), axis=1))


def _probs_2d(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:  # p(class 1) of a binary task
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, C) or p(class 1) of shape (n,), got shape {p.shape}")
    return p


def reliability_table(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """Reliability-diagram data: one row per confidence bin, empty bins included.

    Top-label confidence ``conf_i = max_c p_ic``, prediction ``argmax_c p_ic``. Columns: ``bin``,
    ``lower``, ``upper`` (bin ``(lower, upper]``), ``count``, ``weight = count / n``,
    ``confidence`` (mean conf in the bin), ``accuracy`` (fraction correct in the bin),
    ``gap = |accuracy − confidence|``; the last three are NaN for an empty bin.
    """
    p = _probs_2d(probs)
    y = _labels(labels, p.shape[0])
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") − 1 puts conf ∈ (e_b, e_{b+1}] into bin b: closed on the right.
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count,
            "weight": count / max(len(conf), 1),
            "confidence": mean_conf,
            "accuracy": accuracy,
            "gap": np.abs(accuracy - mean_conf),
        }
    )


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error ``ECE = Σ_b (|B_b| / n) |acc(B_b) − conf(B_b)|``."""
    table = reliability_table(probs, labels, n_bins)
    return float(np.nansum(table["weight"] * table["gap"]))


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Maximum calibration error ``MCE = max_b |acc(B_b) − conf(B_b)|`` over non-empty bins."""
    gaps = reliability_table(probs, labels, n_bins)["gap"].dropna()
    return float(gaps.max()) if len(gaps) else 0.0


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood ``−(1/n) Σ_i log softmax(z_i)_{y_i}``."""
    z = _logits_2d(logits)
    y = _labels(labels, z.shape[0])
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(y)), y]))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Tempered logits ``z / T`` (the predicted class never changes)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return np.asarray(logits, dtype=np.float64) / temperature


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (1e-2, 1e2)
) -> float:
    """Temperature scaling (Guo et al. 2017): ``T* = argmin_{T > 0} NLL(z / T, y)`` on a validation split.

    Minimised over ``log T`` in ``log(bounds)`` with bounded Brent (``scipy.optimize``); the NLL is
    convex in ``1/T``, so it is unimodal in ``log T``. Logs a warning when T* sits on a bound.
    """
    z = _logits_2d(logits)
    y = _labels(labels, z.shape[0])
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    result = minimize_scalar(
        lambda log_t: nll(z / np.exp(log_t), y), bounds=(lo, hi), method="bounded", options={"xatol": 1e-8}
    )
    temperature = float(np.exp(result.x))
    if min(result.x - lo, hi - result.x) < 1e-4:
        log.warning("fitted temperature %.4g is at the bound of %s; widen bounds", temperature, bounds)
    log.info("temperature scaling: T = %.4f, NLL %.4f -> %.4f", temperature, nll(z, y), result.fun)
    return temperature


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, float]:
    """Accuracy, ECE, MCE, NLL, Brier score and mean confidence of logits (reference's ``custom_metric``).

    ``brier = mean_{i,c} (p_ic − onehot(y_i)_c)²`` (averaged over classes too, as the reference).
    """
    z = _logits_2d(logits)
    y = _labels(labels, z.shape[0])
    p = softmax(z)
    return {
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "ece": ece(p, y, n_bins),
        "mce": mce(p, y, n_bins),
        "nll": nll(z, y),
        "brier": float(np.mean((p - np.eye(p.shape[1])[y]) ** 2)),
        "confidence": float(np.mean(p.max(axis=1))),
    }


# --- NTK decomposition of a linear head (Tomihari & Sato 2024) --------------------------------


@dataclass(frozen=True)
class NTKDecomposition:
    """The two parts of the eNTK of ``f(x) = V φ(x) + b``, each ``(n, m, C, C)``, ``[i, j, c, c']``.

    ``square`` marks a kernel of one set with itself (train-train), where traces are defined.
    The FT-effective part is also the eNTK of the model with the head frozen: if ``kernelft.entk``
    already computed that, build ``NTKDecomposition(pre_train_effective_kernel(...), that)``.
    """

    pre_train_effective: np.ndarray
    ft_effective: np.ndarray
    square: bool = True

    @property
    def full(self) -> np.ndarray:
        """The whole eNTK: pre-train-effective + FT-effective."""
        return self.pre_train_effective + self.ft_effective

    def summary(self) -> dict[str, float]:
        """Sizes of the parts and the FT-effective share.

        ``trace_*`` = ``Σ_i Σ_c K[i, i, c, c]`` (NaN unless ``square``); traces add up, so
        ``share_trace = tr FT / (tr PT + tr FT)``. ``fro_*`` = Frobenius norm over all four axes;
        ``share_fro = ‖FT‖_F / (‖PT‖_F + ‖FT‖_F)`` and ``ratio_fro = ‖FT‖_F / ‖PT‖_F``.
        """
        pt, ft = self.pre_train_effective, self.ft_effective
        out: dict[str, float] = {}
        if self.square:
            tr_pt = float(np.einsum("iicc->", pt))
            tr_ft = float(np.einsum("iicc->", ft))
        else:
            tr_pt = tr_ft = float("nan")
        fro_pt, fro_ft = float(np.linalg.norm(pt.ravel())), float(np.linalg.norm(ft.ravel()))
        out.update(trace_pre_train_effective=tr_pt, trace_ft_effective=tr_ft)
        out["share_trace_ft_effective"] = tr_ft / (tr_pt + tr_ft) if self.square else float("nan")
        out.update(fro_pre_train_effective=fro_pt, fro_ft_effective=fro_ft)
        out["share_fro_ft_effective"] = fro_ft / (fro_pt + fro_ft) if fro_pt + fro_ft > 0 else float("nan")
        out["ratio_fro_ft_to_pre_train"] = fro_ft / fro_pt if fro_pt > 0 else float("inf")
        return out


def pre_train_effective_kernel(
    features: np.ndarray, n_classes: int, features_other: np.ndarray | None = None, bias: bool = True
) -> np.ndarray:
    """``(φ(x_i)ᵀφ(x'_j) + 1) δ_cc'``, shape ``(n, m, C, C)``: the eNTK w.r.t. the head ``V, b``.

    ``features``: ``(n, H)``; ``features_other``: ``(m, H)`` (default: the same points).
    ``bias=False`` drops the ``+ 1`` of a head without bias.
    """
    phi = np.asarray(features, dtype=np.float64)
    other = phi if features_other is None else np.asarray(features_other, dtype=np.float64)
    if phi.ndim != 2 or other.ndim != 2 or phi.shape[1] != other.shape[1]:
        raise ValueError(f"features must be (n, H) and (m, H), got {phi.shape} and {other.shape}")
    gram = phi @ other.T + (1.0 if bias else 0.0)
    return np.einsum("ij,cd->ijcd", gram, np.eye(n_classes))


def feature_kernel_from_jacobians(jacobians: np.ndarray, jacobians_other: np.ndarray | None = None) -> np.ndarray:
    """Encoder kernel of the feature map ``G[i, j, h, h'] = <∂φ_h(x_i)/∂θ, ∂φ_h'(x'_j)/∂θ>``.

    ``jacobians``: ``(n, H, P)``; ``jacobians_other``: ``(m, H, P)``. Output ``(n, m, H, H)``: it
    holds n·m·H² numbers, so for a wide encoder contract the head first (see
    :func:`ft_effective_kernel`).
    """
    j1 = np.asarray(jacobians, dtype=np.float64)
    j2 = j1 if jacobians_other is None else np.asarray(jacobians_other, dtype=np.float64)
    return np.einsum("ihp,jkp->ijhk", j1, j2)


def ft_effective_kernel(head_weight: np.ndarray, feature_kernel: np.ndarray) -> np.ndarray:
    """``V G(x_i, x'_j) Vᵀ``, shape ``(n, m, C, C)``: the eNTK w.r.t. the encoder parameters θ.

    ``head_weight`` V: ``(C, H)``; ``feature_kernel`` G: ``(n, m, H, H)``, from
    :func:`feature_kernel_from_jacobians` or any engine that gives ``J_φ J_φ'ᵀ``.
    """
    v = np.asarray(head_weight, dtype=np.float64)
    g = np.asarray(feature_kernel, dtype=np.float64)
    if v.ndim != 2 or g.ndim != 4 or g.shape[2:] != (v.shape[1], v.shape[1]):
        raise ValueError(f"head_weight (C, H) and feature_kernel (n, m, H, H) disagree: {v.shape}, {g.shape}")
    return np.einsum("ch,ijhk,dk->ijcd", v, g, v, optimize=True)


def ntk_decomposition(
    features: np.ndarray,
    head_weight: np.ndarray,
    feature_kernel: np.ndarray,
    features_other: np.ndarray | None = None,
    bias: bool = True,
) -> NTKDecomposition:
    """Split the eNTK of ``f(x) = V φ(x) + b`` into its two parts (Tomihari & Sato 2024).

    Args:
        features: φ at the current weights, ``(n, H)``.
        head_weight: V, ``(C, H)``.
        feature_kernel: ``J_φ(x_i) J_φ(x'_j)ᵀ``, ``(n, m, H, H)``.
        features_other: φ of the second set ``(m, H)``; ``None`` for the train-train kernel.
        bias: whether the head has a bias b (the ``+ 1`` in the pre-train-effective part).
    """
    v = np.asarray(head_weight, dtype=np.float64)
    phi = np.asarray(features, dtype=np.float64)
    m = phi.shape[0] if features_other is None else np.asarray(features_other).shape[0]
    g = np.asarray(feature_kernel)
    if g.shape[:2] != (phi.shape[0], m):
        raise ValueError(f"feature_kernel: expected ({phi.shape[0]}, {m}, H, H), got {g.shape}")
    pt = pre_train_effective_kernel(phi, v.shape[0], features_other, bias)
    ft = ft_effective_kernel(v, g)
    return NTKDecomposition(pt, ft, square=features_other is None)
