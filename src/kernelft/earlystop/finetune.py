"""Real fine-tuning stopped at the RWY stopping time T̂ (Sun & Raskutti 2026; figures F6, F7).

The kernel sweep (:func:`kernelft.earlystop.study.real_rate_study`) runs kernel gradient descent on the
pool eNTK, f_{t+1} = f_t − η (K/n)(f_t − y), and picks T̂ by the Raskutti–Wainwright–Yu rule. The
same recursion is, to first order, full-batch gradient descent with step η on the loss
L(θ) = (1/2n) Σ_i (f(x_i; θ) − y_i)² of the scalar output f = logit_1 − logit_0, since
∇L = (1/n) Σ_i (f_i − y_i) ∇f_i and ∇f_i·∇f_j = K_ij. So the real fine-tuning run here is the runner's
``ft`` with ``optimizer: sgd``, ``loss: mse``, ``batch_size: n`` and ``lr: η`` on the very examples of
the kernel sweep's draw (:func:`kernelft.earlystop.rates.draw_samples`), evaluated on the sweep's test set at
a grid of steps and at T̂. Where the network stays close to its linearization, its test curve follows
the kernel GD curve and stopping at T̂ costs what it costs kernel GD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kernelft.kernels.outputs import margin

if TYPE_CHECKING:  # the runner imports torch: the figure job that reads rate_points does not need it
    from kernelft.training.runner import FinetuneConfig


@dataclass(frozen=True)
class StopPlan:
    """What the kernel sweep decided for one draw (n, rep): its step size ``eta`` = η, the rule's
    stopping time ``stop_rule`` = T̂ and the kernel GD oracle ``stop_oracle`` = T* (best test loss
    against ``test_target``), from the sweep's first R² estimator."""

    n: int
    rep: int
    eta: float
    stop_rule: int
    stop_oracle: int
    r2_method: str
    test_target: str


def stop_plan(points: pd.DataFrame, n: int, rep: int) -> StopPlan:
    """The :class:`StopPlan` of draw (n, rep) from the sweep's ``points`` table: the rows of its first
    R² estimator and first test target, the ones F7 draws."""
    first = points.iloc[0]
    rows = points[(points["r2_method"] == first["r2_method"]) & (points["test_target"] == first["test_target"])
                  & (points["n"] == n) & (points["rep"] == rep)]
    if len(rows) != 1:
        raise ValueError(f"earlystop points: expected one row for n={n}, rep={rep}, found {len(rows)}")
    row = rows.iloc[0]
    return StopPlan(n=n, rep=rep, eta=float(row["eta"]), stop_rule=int(row["stop_rule"]),
                    stop_oracle=int(row["stop_oracle"]), r2_method=str(row["r2_method"]),
                    test_target=str(row["test_target"]))


def finetune_config(plan: StopPlan, section: Mapping[str, Any], seed: int) -> FinetuneConfig:
    """The runner's config for the plan: full-batch SGD with step η on the squared loss of the logit
    difference, every parameter, for ``finetune_steps`` steps (``earlystop`` section), evaluated every
    ``finetune_eval_every`` steps and at T̂ (when T̂ is within the steps)."""
    from kernelft.training.runner import FinetuneConfig

    steps = int(section["finetune_steps"])
    return FinetuneConfig.from_section(
        {}, name="earlystop", method="ft", optimizer="sgd", loss="mse", lr=plan.eta, batch_size=plan.n, steps=steps,
        eval_every=int(section["finetune_eval_every"]), eval_steps=(plan.stop_rule,) if plan.stop_rule <= steps else (),
        seed=seed,
    )


def mse_curve(test_logits: Mapping[int, np.ndarray], targets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Test MSE of f = logit_1 − logit_0 against each target by evaluation step.

    ``test_logits``: step → (n_test, 2) logits; ``targets``: name → (n_test,) values (e.g. the ±1
    labels and the pseudo-truth). Returns columns step, ``test_mse_<name>`` for each target,
    mean (f − target)², the kernel sweep's definition.
    """
    rows = []
    for step in sorted(test_logits):
        logits = np.asarray(test_logits[step], dtype=np.float64)
        f = margin(logits)
        rows.append({"step": step, **{f"test_mse_{name}": float(np.mean((f - np.asarray(t)) ** 2))
                                      for name, t in targets.items()}})
    return pd.DataFrame(rows)


def stop_summary(curve: pd.DataFrame, plan: StopPlan) -> dict[str, float | int | bool]:
    """Test MSE (against the plan's target) of real FT at T̂ and at its best evaluated step, and the
    excess of T̂ over that best step. ``reached`` is False when T̂ lies beyond the run's last step
    (the losses at T̂ are then NaN)."""
    column = f"test_mse_{plan.test_target}"
    best = curve.loc[curve[column].idxmin()]
    at_rule = curve.loc[curve["step"] == plan.stop_rule, column]
    reached = not at_rule.empty
    loss_rule = float(at_rule.iloc[0]) if reached else float("nan")
    return {
        "n": plan.n, "rep": plan.rep, "eta": plan.eta, "stop_rule": plan.stop_rule,
        "stop_oracle_kernel": plan.stop_oracle, "stop_best_finetune": int(best["step"]),
        "last_step": int(curve["step"].max()), "reached": reached, "test_target": plan.test_target,
        "test_mse_rule": loss_rule, "test_mse_best": float(best[column]),
        "excess_rule": loss_rule - float(best[column]),
    }


def rate_points(summaries: list[Mapping[str, Any]], points: pd.DataFrame) -> pd.DataFrame:
    """Real fine-tuning as extra F6 points: one row per run that reached T̂, in the format of the kernel
    sweep's ``points`` (label, n, rep, test_mse_rule; stop_oracle and test_mse_oracle: its best evaluated step),
    with the predicted-slope columns and keys of the sweep rows it follows and ``source`` = finetune."""
    first = points.iloc[0]
    primary = points[(points["r2_method"] == first["r2_method"]) & (points["test_target"] == first["test_target"])]
    runs = pd.DataFrame(list(summaries))
    runs = runs[runs["reached"].astype(bool)]
    prediction = [c for c in primary.columns if c.startswith("predicted_")]
    keys = primary.drop_duplicates("task").set_index("task")[["r2_method", "test_target", *prediction]]
    renamed = {"test_mse_best": "test_mse_oracle", "stop_best_finetune": "stop_oracle"}
    frame = runs.drop(columns="test_target").rename(columns=renamed).join(keys, on="task")
    frame["label"] = (frame["task"] + ", real FT at T̂ (R² " + frame["r2_method"].astype(str) + "), vs "
                      + frame["test_target"].astype(str))
    frame["source"] = "finetune"
    return frame[["label", "task", "n", "rep", "r2_method", "test_target", "source", "test_mse_rule",
                  "test_mse_oracle", "stop_rule", "stop_oracle", "excess_rule", *prediction]].reset_index(drop=True)
