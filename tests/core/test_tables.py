"""The one mean / sd table helper: counts, sample sd, the one-seed rule, group order, cell text."""

import numpy as np
import pandas as pd
import pytest

from kernelft.core.tables import mean_sd, mean_sd_text


def test_mean_sd_counts_runs_and_leaves_one_seed_without_spread():
    frame = pd.DataFrame({"method": ["b", "b", "a"], "acc": [0.5, 0.7, 0.9]})
    table = mean_sd(frame, "method", ["acc"], scale=100)
    assert list(table.columns) == ["method", "seeds", "acc_mean", "acc_std"]
    assert table["method"].tolist() == ["b", "a"]  # first-seen order
    assert table["seeds"].tolist() == [2, 1]
    assert table.loc[0, "acc_std"] == pytest.approx(100 * np.std([0.5, 0.7], ddof=1))
    assert np.isnan(table.loc[1, "acc_std"])
    assert mean_sd(frame, "method", ["acc"], sort=True)["method"].tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="nope"):
        mean_sd(frame, "method", ["nope"])


def test_cell_text():
    assert mean_sd_text(60.0, 14.142, 1) == "60.0 (14.1)"
    assert mean_sd_text(0.75, 0.0707, 3, "{mean} ± {sd}") == "0.750 ± 0.071"
    assert mean_sd_text(90.0, float("nan"), 1) == "90.0"
    assert mean_sd_text(float("nan"), float("nan"), 1) == "n/a"
