"""F13: task vectors through the eNTK (Sun & Raskutti 2026): addition, negation, interference vs alignment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kernelft.core.plotting import theme

MODEL_STYLE = {"real": "-", "linearized": "--"}
"""Line style per model: the network (solid) and its linearization at θ_0 (dashed)."""


def plot_task_vectors(accuracy: pd.DataFrame, summary: pd.DataFrame, pairs: Sequence[Mapping]) -> Figure:
    """F13: one column per task pair; rows: addition, negation, interference against the kernel numbers.

    ``accuracy``: the grid table (model, operation, vector, lambda, eval_task, accuracy), see
    :func:`kernelft.taskvec.arithmetic.evaluate_grid`; ``summary``: :func:`kernelft.taskvec.arithmetic.summary_table`;
    ``pairs``: ``{"name", "tasks": [A, B]}`` from the config.

    Row 1: accuracy on each task of the pair for θ_0 + λ τ_t (single, thin) and θ_0 + λ (τ_A + τ_B)
    (added, thick), real (solid) vs linearized (dashed); the grey line is θ_0. Row 2: negation
    θ_0 − λ τ_t: accuracy on t (target) and on the other task (control). Row 3: interference
    (single − added accuracy at λ = 1, mean over the pair's tasks) against the centred cross-task
    kernel alignment and against the top-k eigenspace overlap, and the real model's disentanglement
    error at λ = 1 against the alignment.
    """
    theme()
    columns = max(len(pairs), 3)
    fig, axes = plt.subplots(3, columns, figsize=(4.6 * columns, 12.5), squeeze=False, constrained_layout=True)
    palette = dict(zip(dict.fromkeys(t for p in pairs for t in p["tasks"]), sns.color_palette("colorblind")))
    for col, pair in enumerate(pairs):
        a, b = pair["tasks"]
        key = f"{a}+{b}"
        top, middle = axes[0, col], axes[1, col]
        for model, style in MODEL_STYLE.items():
            part = accuracy[accuracy["model"] == model]
            for task in (a, b):
                single = part[(part["operation"] == "single") & (part["vector"] == task) & (part["eval_task"] == task)]
                added = part[(part["operation"] == "added") & (part["vector"] == key) & (part["eval_task"] == task)]
                top.plot(single["lambda"], single["accuracy"], style, color=palette[task], lw=1.2, marker="o", ms=3,
                         alpha=0.7)
                top.plot(added["lambda"], added["accuracy"], style, color=palette[task], lw=2.6, marker="s", ms=4)
                for target, ls_alpha in ((task, 1.0), ((b if task == a else a), 0.45)):
                    neg = part[(part["operation"] == "negated") & (part["vector"] == task)
                               & (part["eval_task"] == target)]
                    middle.plot(neg["lambda"], neg["accuracy"], style, color=palette[task], marker="v",
                                alpha=ls_alpha, lw=2.0 if target == task else 1.2)
        zero = accuracy[(accuracy["operation"] == "zero_shot") & (accuracy["model"] == "real")]
        for ax in (top, middle):
            for task in (a, b):
                ax.axhline(float(zero[zero["eval_task"] == task]["accuracy"].iloc[0]), color=palette[task], lw=0.8,
                           ls=":")
            ax.set(ylim=(-0.02, 1.02), xlabel="λ", ylabel="test accuracy")
        top.set_title(f"{pair['name']}: {a} + {b}\naddition (thin: single τ_t, thick: τ_A + τ_B)", fontsize=10)
        middle.set_title("negation θ0 − λτ_t (bold: on t, faint: other task)", fontsize=10)
    for col in range(len(pairs), columns):
        for row in (0, 1):
            axes[row, col].axis("off")
    _legend(axes[0, 0], palette)
    _interference_panels(axes[2], summary)
    fig.suptitle("F13 task vectors through the eNTK: real (solid) vs linearized (dashed) model; dotted = θ0",
                 fontsize=12)
    return fig


def _legend(ax: plt.Axes, palette: Mapping[str, tuple]) -> None:
    handles = [plt.Line2D([], [], color=color, lw=2, label=task) for task, color in palette.items()]
    handles += [plt.Line2D([], [], color="black", ls=style, label=model) for model, style in MODEL_STYLE.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower left")


def _interference_panels(axes: Sequence[plt.Axes], summary: pd.DataFrame) -> None:
    """Pair means, black = real, grey = linearized, each point labelled with its pair's name."""
    mean = summary.groupby(["pair_name", "model"], as_index=False).agg(
        interference=("interference", "mean"), disentanglement_error=("disentanglement_error", "mean"),
        cka=("cka", "first"), overlap=("overlap", "first"))
    colours = {"real": "black", "linearized": "grey"}
    markers = {"real": "X", "linearized": "o"}
    panels = ((axes[0], "cka", "interference", "centred cross-task kernel alignment", mean),
              (axes[1], "overlap", "interference", "top-k eigenspace overlap", mean),
              (axes[2], "cka", "disentanglement_error", "centred cross-task kernel alignment",
               mean[mean["model"] == "real"]))
    for ax, x, y, label, frame in panels:
        for model, part in frame.groupby("model"):
            ax.scatter(part[x], part[y], s=70, color=colours[model], marker=markers[model], label=model)
            for _, row in part.iterrows():
                ax.annotate(row["pair_name"], (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=8,
                            color=colours[model])
        ax.set_xlabel(label)
        ax.margins(x=0.2)
        ax.legend(fontsize=8)
    for ax in axes[:2]:
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylabel("interference: single − added accuracy (λ = 1)")
    axes[2].set(ylabel="disentanglement error (real, λ = 1)", ylim=(0, None))
    axes[0].set_title("interference vs alignment (mean over the pair's tasks)", fontsize=10)
    axes[1].set_title("interference vs eigenspace overlap", fontsize=10)
    axes[2].set_title("non-additivity of the real model", fontsize=10)
