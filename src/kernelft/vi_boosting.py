"""Tree-boosting baseline for warm-start variable importance (Sun & Raskutti, AISTATS 2025).

Gradient boosting is additive, F_T(x) = F_0(x) + Σ_{t≤T} ν h_t(x), so a warm start of the reduced
model is boosting that begins from the full model's predictions instead of a constant:

    F_{−j,0}(x) = F(x^{(−j)}),   F_{−j,T}(x) = F(x^{(−j)}) + Σ_{t≤T} ν h_t(x^{(−j)}),

with x^{(−j)} the input whose j-th feature is set to its training mean and T chosen by early
stopping on the validation split. The paper uses CatBoost with symmetric trees and ``init_model``;
here scikit-learn's ``HistGradientBoostingRegressor`` fits the boosting stages on the residual
y − F(x^{(−j)}) (its own ``warm_start`` re-bins the data on a second ``fit`` and would evaluate the
old trees on the new bins, which is wrong once a column becomes constant). The residual model's
first stage is a constant (the mean residual), one extra stage compared with CatBoost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 500,
    "max_leaf_nodes": 31,
    "n_iter_no_change": 10,
}


@dataclass
class Boosting:
    """A boosted model F(x) = offset(x) + residual_model(x); ``offset`` is None for a fit from scratch."""

    model: HistGradientBoostingRegressor
    offset: "Boosting | None" = None
    seconds: float = 0.0

    @property
    def n_iter(self) -> int:
        """Boosting stages this fit added (its early-stopping time)."""
        return int(self.model.n_iter_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """F(x) for x (n, p); shape (n,)."""
        out = self.model.predict(x)
        return out if self.offset is None else out + self.offset.predict(x)


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    seed: int,
    params: dict[str, Any] | None = None,
    init: Boosting | None = None,
) -> Boosting:
    """Boost on (x_train, y_train) with early stopping on (x_val, y_val); warm-start from ``init`` if given.

    ``params`` override :data:`DEFAULT_PARAMS` (any ``HistGradientBoostingRegressor`` argument).
    With ``init``, the new stages fit the residual y − init(x) and the result predicts
    init(x) + stages(x). The wall time of this call (not of ``init``) is in ``seconds``.
    """
    settings = {**DEFAULT_PARAMS, **(params or {})}
    start = time.perf_counter()
    target_train, target_val = y_train, y_val
    if init is not None:
        target_train = y_train - init.predict(x_train)
        target_val = y_val - init.predict(x_val)
    model = HistGradientBoostingRegressor(early_stopping=True, random_state=seed, **settings)
    model.fit(x_train, target_train, X_val=x_val, y_val=target_val)
    return Boosting(model=model, offset=init, seconds=time.perf_counter() - start)
