"""Summary tables over seeds: one mean / sd helper and one cell format for every stage's tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def mean_sd(
    frame: pd.DataFrame, by: str | Sequence[str], columns: Sequence[str], scale: float = 1.0, sort: bool = False
) -> pd.DataFrame:
    """Per group of ``by``: ``seeds``, the number of rows (runs) in the group, then for each column
    ``<column>_mean`` and ``<column>_std`` (sample sd, ddof 1, NaN for a single run: one seed shows no
    spread), times ``scale``. Groups come in first-seen order, or sorted with ``sort``."""
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, *columns] if c not in frame.columns]
    if missing:
        raise ValueError(f"mean_sd: columns {missing} missing; have {list(frame.columns)}")
    grouped = frame.groupby(by, sort=sort, dropna=False)
    table = grouped.size().rename("seeds").reset_index()
    for column in columns:
        table[f"{column}_mean"] = grouped[column].mean().to_numpy() * scale
        table[f"{column}_std"] = grouped[column].std(ddof=1).to_numpy() * scale
    return table


def mean_sd_text(mean: float, sd: float, digits: int, pattern: str = "{mean} ({sd})") -> str:
    """A table cell: ``pattern`` with mean and sd at ``digits`` decimals; the mean alone when the sd is
    undefined (one seed), ``n/a`` when the mean is."""
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return pattern.format(mean=f"{mean:.{digits}f}", sd=f"{sd:.{digits}f}")
