"""The task-arithmetic table beside F13 (Sun & Raskutti 2026; Ilharco et al., ICLR 2023), from the finished
arithmetic's accuracy, disentanglement and kernel tables. Light: numpy and pandas only, so the figure job
imports no torch (the grid is evaluated by :mod:`kernelft.taskvec.arithmetic`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def summary_table(
    accuracy: pd.DataFrame, disentanglement: pd.DataFrame, diagnostics: pd.DataFrame, pairs: Sequence[Mapping]
) -> pd.DataFrame:
    """The task-arithmetic table (Ilharco et al. 2023 style), one row per pair, model and task of the pair.

    ``accuracy``: :func:`kernelft.taskvec.arithmetic.evaluate_grid`'s table with a ``model`` column (real /
    linearized); ``disentanglement``: :func:`kernelft.taskvec.arithmetic.disentanglement_table` with ``model``;
    ``diagnostics``: one row per pair (column ``pair`` = "A+B") with the kernel numbers; ``pairs``:
    ``{"name", "tasks": [A, B]}``.
    Columns: absolute accuracies zero_shot (θ_0), single (θ_0 + τ_t), added (θ_0 + τ_A + τ_B),
    added_best (at the λ of the grid with the best mean accuracy over the pair, an oracle choice on the
    test sets) and best_lambda; normalised accuracies (added / single); interference = single − added;
    negation at λ = 1 on the task itself (negated) and on the other task (control, with its zero-shot
    accuracy control_zero_shot); the disentanglement error at λ = 1; the pair's kernel numbers.
    """
    accuracy = accuracy.assign(vector=accuracy["vector"].fillna(""))  # θ_0's empty vector reads back as NaN

    def acc(model, operation, vector, lam, task):
        rows = accuracy[(accuracy["model"] == model) & (accuracy["operation"] == operation)
                        & (accuracy["vector"] == vector) & np.isclose(accuracy["lambda"], lam)
                        & (accuracy["eval_task"] == task)]
        if len(rows) != 1:
            raise KeyError(f"no single accuracy for {model} {operation} {vector} λ={lam} on {task} (include 1.0 in "
                           "taskvec.lambdas and taskvec.negation_lambdas)")
        return float(rows["accuracy"].iloc[0])

    out = []
    for pair in pairs:
        a, b = pair["tasks"]
        key = f"{a}+{b}"
        kernel = diagnostics.set_index("pair").loc[key].to_dict()
        for model in accuracy["model"].unique():
            added = accuracy[(accuracy["model"] == model) & (accuracy["operation"] == "added")
                             & (accuracy["vector"] == key)]
            best = added.groupby("lambda")["accuracy"].mean().idxmax()
            for task, other in ((a, b), (b, a)):
                single = acc(model, "single", task, 1.0, task)
                added_1, added_best = acc(model, "added", key, 1.0, task), acc(model, "added", key, best, task)
                dis = disentanglement[(disentanglement["model"] == model) & (disentanglement["pair"] == key)
                                      & np.isclose(disentanglement["lambda"], 1.0)
                                      & (disentanglement["eval_task"] == task)]["disentanglement_error"]
                out.append({
                    "pair_name": pair["name"], "pair": key, "model": model, "task": task,
                    "zero_shot": acc(model, "zero_shot", "", 0.0, task), "single": single,
                    "added": added_1, "added_best": added_best, "best_lambda": float(best),
                    "normalised": added_1 / single if single else np.nan,
                    "normalised_best": added_best / single if single else np.nan,
                    "interference": single - added_1,
                    "negated": acc(model, "negated", task, 1.0, task),
                    "control_zero_shot": acc(model, "zero_shot", "", 0.0, other),
                    "control_negated": acc(model, "negated", task, 1.0, other),
                    "disentanglement_error": float(dis.iloc[0]) if len(dis) else np.nan,
                    **{name: kernel[name] for name in ("cka", "overlap", "cka_same_inputs", "cross_block")},
                })
    return pd.DataFrame(out)
