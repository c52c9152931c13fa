"""The function whose eNTK is studied, from a model's logits (numpy arrays or torch tensors alike).

Malladi et al. (ICML 2023) and Sun & Raskutti (2026) study a binary task through the scalar margin
``f(x) = logit_1(x) − logit_0(x)``; with C > 2 classes the kernel is over the C logits themselves. Also the
relative distance of two kernels (:func:`relative_error`).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Array = TypeVar("Array")


def margin(logits: Array) -> Array:
    """``logit_1 − logit_0`` of binary logits (..., 2) → (...)."""
    return logits[..., 1] - logits[..., 0]


def kernel_output(logits: Array) -> Array:
    """The margin for two classes (..., 2) → (...), else the logits (..., C) themselves."""
    return margin(logits) if logits.shape[-1] == 2 else logits


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """‖K̃ − K‖_F / ‖K‖_F."""
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
