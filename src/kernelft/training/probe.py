"""Linear probing and the representation metrics of Tomihari & Sato (NeurIPS 2024).

Tomihari & Sato, "Understanding Linear Probing then Fine-tuning Language Models from NTK
Perspective" (arXiv:2405.16747; reference code tom4649/lp-ft_ntk):

- Linear probing (LP) fits a logistic regression on frozen features φ(x) of the pretrained encoder
  and uses it as the head; LP-FT (and LP-LoRA) then fine-tune from that head. As in the reference
  (``training/linearhead_trainer.py``, adapted from MeZO), the fit is scikit-learn's L2-regularised
  multinomial ``LogisticRegressionCV`` (``max_iter`` 5000, ``tol`` 1e-4, ``random_state`` = seed),
  and a binary fit ``w·φ + b`` becomes the two-row head ``W = [−w/2, w/2]``, ``b = [−b/2, b/2]``
  (same softmax, since ``logit_1 − logit_0 = w·φ + b``). One deviation: the CV score is the log loss,
  not the accuracy; on few-shot folds accuracies tie across C and the accuracy rule then picks the
  smallest C, i.e. an almost-zero head, which would erase the large head norm LP-FT is about.
- ``head_norm`` = ‖W‖_F, the Frobenius norm of the linear head's weight (bias excluded).
- ``feature_change`` = (1/m) Σ_i ‖φ(x_i) − φ₀(x_i)‖₂ over a fixed probe set of m examples, φ₀ the
  features at the start of fine-tuning (after LP, which leaves the encoder unchanged).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kernelft.text.models import LinearHead
from kernelft.training.inference import extract_features

log = logging.getLogger(__name__)


def head_weight(model: nn.Module) -> torch.Tensor | None:
    """The current linear head weight W (C, H), or None for a prompt head (no linear head)."""
    base = getattr(model, "model", model)  # a LinearizedModel wraps the classifier
    if not isinstance(getattr(base, "head", None), LinearHead):
        return None
    if base is not model:
        return model.parameter("head.linear.weight")
    return base.head.linear.weight.detach()


def head_norm(model: nn.Module) -> float:
    """‖W‖_F of the linear head (Tomihari & Sato 2024); NaN for a prompt head."""
    weight = head_weight(model)
    return float("nan") if weight is None else float(torch.linalg.norm(weight))


def feature_change(features: torch.Tensor, initial: torch.Tensor) -> float:
    """(1/m) Σ_i ‖φ(x_i) − φ₀(x_i)‖₂ for (m, H) feature matrices."""
    if features.shape != initial.shape:
        raise ValueError(f"feature_change: shapes differ, {tuple(features.shape)} vs {tuple(initial.shape)}")
    return float(torch.linalg.norm((features - initial).double(), dim=-1).mean())


@dataclass(frozen=True)
class LinearProbeFit:
    """What the linear probe found: the chosen C, its training accuracy and the head norm it set."""

    C: float
    train_accuracy: float
    head_norm: float
    cv_folds: int


def _logistic_regression(cv_folds: int, C: float, max_iter: int, seed: int):
    """An L2 multinomial logistic regression, CV over C when ``cv_folds`` ≥ 2 (sklearn ≥ 1.5 without
    deprecation warnings)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    if cv_folds < 2:
        return LogisticRegression(C=C, max_iter=max_iter, tol=1e-4, random_state=seed)
    kwargs = {"Cs": 10, "cv": cv_folds, "scoring": "neg_log_loss", "max_iter": max_iter, "tol": 1e-4,
              "random_state": seed}
    accepted = inspect.signature(LogisticRegressionCV).parameters
    if accepted.get("l1_ratios") is not None and accepted["l1_ratios"].default == "warn":
        kwargs["l1_ratios"] = (0.0,)  # pure L2, the sklearn ≥ 1.8 spelling
    if "use_legacy_attributes" in accepted:
        kwargs["use_legacy_attributes"] = False
    return LogisticRegressionCV(**kwargs)


def fit_linear_probe(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    labels: torch.Tensor,
    *,
    cv: bool = True,
    C: float = 1.0,
    max_iter: int = 5000,
    seed: int = 0,
) -> LinearProbeFit:
    """Fit logistic regression on frozen φ(x) and write it into ``model.head.linear`` in place.

    ``cv=True`` picks C by stratified k-fold CV on the log loss, k = min(5, smallest class count);
    with fewer than 2 examples in some class, or ``cv=False``, it fits the given ``C``. The encoder
    is only read. Raises ``ValueError`` for a model without a linear head.
    """
    if not isinstance(getattr(model, "head", None), LinearHead):
        raise ValueError("linear probing needs a linear head (model.head: linear); this model has "
                         f"{type(getattr(model, 'head', None)).__name__}")
    linear = model.head.linear
    phi = extract_features(model, batch).double().cpu().numpy()
    y = labels.cpu().numpy()
    num_classes = linear.out_features
    counts = np.bincount(y, minlength=num_classes)
    if counts.size != num_classes or (counts == 0).any():
        raise ValueError(f"linear probe: the training labels must hold every one of the {num_classes} classes, "
                         f"found counts {counts.tolist()}")
    folds = min(5, int(counts.min())) if cv else 0
    folds = folds if folds >= 2 else 0
    reg = _logistic_regression(folds, C, max_iter, seed).fit(phi, y)
    coef, intercept = np.asarray(reg.coef_), np.asarray(reg.intercept_)
    if coef.shape[0] == 1:  # binary: w·φ + b = logit_1 − logit_0
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(intercept, dtype=linear.bias.dtype))
    chosen = float(np.ravel(getattr(reg, "C_", C))[0])
    accuracy = float((reg.predict(phi) == y).mean())
    fit = LinearProbeFit(C=chosen, train_accuracy=accuracy, head_norm=head_norm(model), cv_folds=folds)
    log.info("linear probe: C=%.3g (cv folds %d), train accuracy %.3f, head norm %.3f",
             fit.C, folds, fit.train_accuracy, fit.head_norm)
    return fit
