"""The tables beside F1–F4 (Malladi et al., ICML 2023): the paper's mean (std) over seeds per task, k, head
and optimizer, with each figure's claim (:mod:`kernelft.malladi.claims`) merged on. Light: pandas only, so the
figure job imports no torch."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from kernelft.core.tables import mean_sd, mean_sd_text

KERNEL_NAMES = {"sgd": "K(SGD)", "adam": "K(A-SignGD)"}
"""The kernel each fine-tuning optimizer is compared with (Malladi et al. 2023, Sec. 4), as tables and
figures name it; the rule malladi_kernel computes both."""


def mean_std_table(
    runs: pd.DataFrame, by: Sequence[str], values: Sequence[str], scale: float = 100.0, digits: int = 1
) -> pd.DataFrame:
    """The paper's table style: :func:`kernelft.core.tables.mean_sd` of each value column over seeds per
    group ``by`` (sorted), plus a text cell ``<value>`` = ``"mean (std)"`` with ``digits`` decimals
    (accuracies in %, as Malladi et al. print them, with ``scale`` 100; the mean alone for one seed)."""
    table = mean_sd(runs, by, values, scale=scale, sort=True)
    for value in values:
        table[value] = [mean_sd_text(m, s, digits) for m, s in zip(table[f"{value}_mean"], table[f"{value}_std"])]
    order = [*by, "seeds", *(f"{value}{suffix}" for value in values for suffix in ("_mean", "_std", ""))]
    return table[order]


def final_accuracy(curve: pd.DataFrame, split: str = "test", first: bool = False) -> float:
    """Accuracy on ``split`` at the selected step of a runner curve (its ``selected`` column: the best dev
    step under ``select: best_dev``; the last evaluation when the column is absent), or, with ``first``,
    at the first evaluation."""
    values = curve[f"{split}_accuracy"].dropna()
    if first:
        return float(values.iloc[0])
    if "selected" in curve and curve["selected"].any():
        return float(curve.loc[curve["selected"].astype(bool), f"{split}_accuracy"].iloc[0])
    return float(values.iloc[-1])


RUN_KEYS = ["task", "k", "head", "optimizer"]
"""What a table row of F1–F4 groups by (the seeds are averaged)."""


def figure_table(
    runs: pd.DataFrame, figure: str, projection: pd.DataFrame | None = None, claims: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The CSV beside figure ``F1``..``F4``: mean (std) over seeds per task, k, head and optimizer, then,
    with ``claims`` (:func:`kernelft.malladi.claims.claim_table`), the figure's claim per cell: ``claim``,
    ``statistic``, ``claim_estimate``, ``claim_low``, ``claim_high`` (points), ``claim_seeds``,
    ``claim_examples`` and ``verdict`` (F2's claim compares the heads, so it is merged on task, k and optimizer).

    F1: kernel and FT accuracy and their gap. F2: the same gap with the pretrained (zero-shot)
    accuracy and ``abs_gap_mean`` = |mean gap|. F3: kernel change (×1, 3 decimals), linearized and
    FT accuracy. F4: ``panel`` "lora" rows (LoRA vs full kernel accuracy and their normalized
    difference) and ``panel`` "projection" rows (relative error per d, from ``projection``).
    """
    return _with_claims(_seed_table(runs, figure, projection), figure, claims)


def _with_claims(table: pd.DataFrame, figure: str, claims: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` with the columns of ``figure``'s claim rows merged onto its cells (see :func:`figure_table`)."""
    if claims is None:
        return table
    rows = claims[claims["figure"] == figure]
    keys = ["task", "k", "optimizer"] if figure == "F2" else RUN_KEYS
    rows = rows.assign(**{f"claim_{name}": 100 * rows[name] for name in ("estimate", "low", "high")})
    rows = rows.rename(columns={"seeds": "claim_seeds", "examples": "claim_examples"})
    columns = [*keys, "claim", "statistic", "claim_estimate", "claim_low", "claim_high", "claim_seeds",
               "claim_examples", "verdict"]
    return table.merge(rows[columns], on=keys, how="left")


def _seed_table(runs: pd.DataFrame, figure: str, projection: pd.DataFrame | None) -> pd.DataFrame:
    if figure == "F1":
        return mean_std_table(runs, RUN_KEYS, ["kernel_accuracy", "ft_accuracy", "gap"])
    if figure == "F2":
        table = mean_std_table(runs, RUN_KEYS, ["pretrained_accuracy", "kernel_accuracy", "ft_accuracy", "gap"])
        table["abs_gap_mean"] = table["gap_mean"].abs()
        return table
    if figure == "F3":
        change = mean_std_table(runs, RUN_KEYS, ["kernel_change"], scale=1.0, digits=3)
        with_linearized = runs.dropna(subset=["linearized_accuracy"])
        accuracy = mean_std_table(with_linearized, RUN_KEYS, ["linearized_accuracy", "ft_accuracy"])
        accuracy = accuracy.rename(columns={"seeds": "linearized_seeds"})
        return change.merge(accuracy, on=RUN_KEYS, how="left")
    if figure == "F4":
        lora = mean_std_table(
            runs.dropna(subset=["lora_kernel_accuracy"]), RUN_KEYS,
            ["lora_kernel_accuracy", "kernel_accuracy"],
        )
        difference = mean_std_table(
            runs.dropna(subset=["lora_kernel_accuracy"]), RUN_KEYS, ["lora_kernel_difference"], scale=1.0, digits=3
        )
        lora = lora.merge(difference.drop(columns="seeds"), on=RUN_KEYS)
        lora.insert(0, "panel", "lora")
        if projection is None:
            return lora
        sketch = projection.dropna(subset=["dim"]).assign(panel="projection")
        table = pd.concat([lora, sketch], ignore_index=True)
        counts = [c for c in ("k", "seeds", "n", "dim") if c in table]
        table[counts] = table[counts].astype("Int64")  # integer columns with gaps between the panels
        return table
    raise ValueError(f"figure={figure!r}: expected F1, F2, F3 or F4")
