"""The claims of Malladi et al. (ICML 2023) that F1–F4 test, decided from paired intervals.

Every run of a (task, k, head, optimizer) cell is scored per test example (1 = correct, 0 = wrong) for each
model (:func:`kernelft.malladi.records.example_correctness`); the seeds of a cell share the test subset, so the
scores form (seeds × examples) matrices, and two models of a cell are compared paired by
:mod:`kernelft.core.claims` (two-way bootstrap over seeds and test examples). The claims:

- F1 "FT matches its kernel": FT − kernel accuracy within ±``margin`` (equivalence).
- F2 "prompt-based FT is closer to its kernel than linear-head FT": |gap| of the linear head − |gap| of the
  prompt head > 0, gap = FT − kernel accuracy (superiority), on the seeds both heads ran.
- F3 "the linearized model matches FT": linearized − FT accuracy within ±``margin``, on the linearized seeds.
- F4 "the LoRA kernel matches the full kernel": LoRA-kernel − full-kernel accuracy within ±``margin``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kernelft.core import claims
from kernelft.malladi.tables import KERNEL_NAMES

CLAIMS = {
    "F1": "FT matches its kernel",
    "F2": "prompt-based FT is closer to its kernel than linear-head FT",
    "F3": "the linearized model matches FT",
    "F4": "the LoRA kernel matches the full kernel",
}
"""The claim each figure tests, as its table and title state it."""

CELL = ["task", "k", "head", "optimizer"]
"""A cell of runs that differ only by seed."""

COLUMNS = ["figure", "claim", *CELL, "statistic", "estimate", "low", "high", "level", "seeds", "examples", "margin",
           "verdict"]
"""The columns of :func:`claim_table`."""


def _scores(cell: pd.DataFrame, model: str, seeds: list[int]) -> np.ndarray:
    """The (seeds × examples) 0/1 matrix of ``model`` in one cell, rows in the order of ``seeds``."""
    part = cell[cell["model"] == model].pivot(index="seed", columns="example", values="correct")
    return part.loc[seeds].to_numpy(dtype=np.float64)


def _seeds(cell: pd.DataFrame, *models: str) -> list[int]:
    """The seeds on which every one of ``models`` was scored."""
    sets = [set(cell.loc[cell["model"] == model, "seed"]) for model in models]
    return sorted(set.intersection(*sets)) if sets else []


def claim_table(correct: pd.DataFrame, margin: float, level: float = 0.95, n_boot: int = 2000,
                seed: int = 0) -> pd.DataFrame:
    """One row per claim and cell (:data:`COLUMNS`) from the per-example scores ``correct`` (columns
    ``task``, ``k``, ``head``, ``seed``, ``optimizer``, ``model`` ∈ {ft, kernel, linearized, lora_kernel},
    ``example``, ``correct``). ``estimate``, ``low``, ``high``: the statistic and its ``level`` interval as
    accuracy fractions; F2's rows have ``head`` "prompt vs linear"; ``margin`` is NaN for F2."""
    options = {"n_boot": n_boot, "level": level, "seed": seed}
    rows = []

    def add(figure, key, statistic, interval, verdict, row_margin=np.nan):
        rows.append({"figure": figure, "claim": CLAIMS[figure], **dict(zip(CELL, key)), "statistic": statistic,
                     "estimate": interval.estimate, "low": interval.low, "high": interval.high, "level": level,
                     "seeds": interval.seeds, "examples": interval.examples, "margin": row_margin,
                     "verdict": verdict})

    for key, cell in correct.groupby(CELL, sort=True):
        optimizer = key[3]
        kernel = KERNEL_NAMES.get(optimizer, "kernel")
        seeds = _seeds(cell, "ft", "kernel")
        if seeds:
            interval = claims.difference(_scores(cell, "ft", seeds), _scores(cell, "kernel", seeds), **options)
            add("F1", key, f"FT − {kernel} accuracy", interval, claims.equivalence(interval, margin), margin)
        seeds = _seeds(cell, "linearized", "ft")
        if seeds:
            interval = claims.difference(_scores(cell, "linearized", seeds), _scores(cell, "ft", seeds), **options)
            add("F3", key, "linearized − FT accuracy", interval, claims.equivalence(interval, margin), margin)
        seeds = _seeds(cell, "lora_kernel", "kernel")
        if seeds:
            interval = claims.difference(_scores(cell, "lora_kernel", seeds), _scores(cell, "kernel", seeds),
                                         **options)
            add("F4", key, "LoRA − full kernel accuracy", interval, claims.equivalence(interval, margin), margin)

    for (task, k, optimizer), pair in correct.groupby(["task", "k", "optimizer"], sort=True):
        heads = {head: cell for head, cell in pair.groupby("head")}
        if not {"prompt", "linear"} <= set(heads):
            continue
        seeds = sorted(set(_seeds(heads["prompt"], "ft", "kernel")) & set(_seeds(heads["linear"], "ft", "kernel")))
        if not seeds:
            continue
        scores = {f"{model}_{head}": _scores(heads[head], model, seeds)
                  for head in ("prompt", "linear") for model in ("ft", "kernel")}
        interval = claims.bootstrap(
            scores, lambda m: np.abs(m["ft_linear"] - m["kernel_linear"]) - np.abs(m["ft_prompt"] - m["kernel_prompt"]),
            **options,
        )
        add("F2", (task, k, "prompt vs linear", optimizer), "|gap| linear − |gap| prompt", interval,
            claims.superiority(interval))
    return pd.DataFrame(rows, columns=COLUMNS)


def verdict_lines(table: pd.DataFrame, figure: str) -> dict[str, list[str]]:
    """Per optimizer, one line per claim row of ``figure``: ``k=16, prompt: +1.2 [−0.5, 3.0] → holds``
    (points), for the figure's panels."""
    lines: dict[str, list[str]] = {}
    for row in table[table["figure"] == figure].itertuples():
        interval = claims.Interval(row.estimate, row.low, row.high, row.level, row.seeds, row.examples)
        text = claims.interval_text(interval)
        where = f"k={row.k}" if figure == "F2" else f"k={row.k}, {row.head}"
        lines.setdefault(row.optimizer, []).append(f"{where}: {text} → {row.verdict}")
    return lines
