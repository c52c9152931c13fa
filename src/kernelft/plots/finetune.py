"""Learning curves of real fine-tuning runs (the foundation's F7 panel set)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kernelft.plots import theme

CURVE_COLUMNS = ["task", "n", "seed", "step", "train_loss", "test_loss", "test_accuracy"]


def plot_finetune_curves(df: pd.DataFrame) -> Figure:
    """Test loss (left) and test accuracy (right) against the step, one colour per n, mean ± sd over seeds.

    ``df`` is the concatenation of the runner's curves (:func:`kernelft.finetune.finetune`) with the
    columns task, n, seed, step, train_loss, test_loss, test_accuracy; only evaluation steps are drawn.
    Dashed lines are the training loss.
    """
    missing = [c for c in CURVE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"learning curves: DataFrame lacks columns {missing}")
    theme()
    evaluated = df.dropna(subset=["test_loss"])
    tasks = list(dict.fromkeys(evaluated["task"]))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4 * len(tasks)), squeeze=False, constrained_layout=True)
    for row, task in zip(axes, tasks):
        part = evaluated[evaluated["task"] == task]
        palette = sns.color_palette("viridis", part["n"].nunique())
        sns.lineplot(part, x="step", y="test_loss", hue="n", palette=palette, errorbar="sd", ax=row[0])
        sns.lineplot(
            part,
            x="step",
            y="train_loss",
            hue="n",
            palette=palette,
            errorbar=None,
            ax=row[0],
            linestyle="--",
            legend=False,
        )
        sns.lineplot(part, x="step", y="test_accuracy", hue="n", palette=palette, errorbar="sd", ax=row[1])
        row[0].set(ylabel="loss (solid test, dashed train)", title=f"{task}: loss")
        row[1].set(ylabel="test accuracy", title=f"{task}: test accuracy")
        row[0].legend(title="n (train size)")
        row[1].legend(title="n (train size)")
    fig.suptitle("Fine-tuning learning curves (mean ± sd over data seeds)")
    return fig
