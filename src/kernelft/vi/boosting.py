"""Gradient-boosted symmetric trees (CatBoost) for warm-start variable importance (Sun & Raskutti, AISTATS 2025).

CatBoost grows oblivious (symmetric) trees: every level of a tree splits all its nodes on the same
(feature, border), so a depth-d tree is a lookup table over 2^d cells. Boosting is additive,

    F_T(x) = F_0 + Σ_{t≤T} ν h_t(x),

so the warm start of the reduced model f_{−j} is CatBoost's ``init_model``: boosting goes on from the
full model F (its trees are kept and its predictions are the starting point) on data whose j-th
column is set to its training mean, and new trees are added until the validation loss has not
improved for ``early_stopping_rounds`` rounds:

    F_{−j}(x) = F(x) + Σ_{t≤T_j} ν h_t(x),   evaluated at x^{(−j)}.

The settings follow the reference code (ZexuanSun/Early-stopping-VI, ``tree_vi_exp_wrapper``):
depth 3, learning rate 0.1, median borders, the L2 split score, at most 1000 trees, patience 10.
One deviation in the default settings (:func:`default_params`, the schema's ``vi.boosting_params``):
``random_strength`` is CatBoost's default 1 instead of the paper's 10000 (nearly random splits, the
kernel regime of its theory), because at the offline sizes (n ≤ 1000) random splits learn too little,
worst with p = 100 features; configs/paper.yaml sets 10000. CatBoost keeps the best iteration
(``use_best_model``), so ``n_iter`` is the stopping time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from catboost import CatBoostRegressor

from kernelft.core.config import section_defaults


def default_params() -> dict[str, Any]:
    """The CatBoost settings of the schema's ``vi.boosting_params`` default (the reference code's, but for
    ``random_strength``; see above)."""
    return section_defaults("vi")["boosting_params"]


@dataclass
class Boosting:
    """A fitted CatBoost model; ``init_trees`` trees came from the model it was warm-started from."""

    model: CatBoostRegressor
    init_trees: int = 0
    seconds: float = 0.0

    @property
    def n_iter(self) -> int:
        """Trees this fit added (its early-stopping time)."""
        return int(self.model.tree_count_) - self.init_trees

    def predict(self, x: np.ndarray) -> np.ndarray:
        """F(x) for x (n, p); shape (n,), float64."""
        return np.asarray(self.model.predict(x), dtype=np.float64)


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    seed: int,
    params: dict[str, Any] | None = None,
    init: Boosting | None = None,
    threads: int = 1,
) -> Boosting:
    """Boost symmetric trees on (x_train, y_train), early-stopped on (x_val, y_val); warm-start from ``init``.

    ``params`` override :func:`default_params` (any ``CatBoostRegressor`` argument; the loss is RMSE).
    With ``init`` the fit continues from that model (CatBoost ``init_model``): the returned model holds
    init's trees followed by the new ones. The wall time of this call (not of ``init``) is in ``seconds``.
    """
    settings = {**default_params(), **(params or {})}
    patience = settings.pop("early_stopping_rounds")
    model = CatBoostRegressor(loss_function="RMSE", random_seed=seed, thread_count=threads, verbose=False,
                              allow_writing_files=False, **settings)
    start = time.perf_counter()
    model.fit(x_train, y_train, eval_set=(x_val, y_val), early_stopping_rounds=patience, use_best_model=True,
              init_model=None if init is None else init.model)
    init_trees = 0 if init is None else int(init.model.tree_count_)
    return Boosting(model=model, init_trees=init_trees, seconds=time.perf_counter() - start)
