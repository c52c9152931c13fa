"""F13: task vectors through the eNTK (Sun & Raskutti 2026): addition, negation, interference vs alignment."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kernelft.core import claims as core_claims
from kernelft.core.plotting import theme

MODEL_STYLE = {"real": "-", "linearized": "--"}
"""Line style per model: the network (solid) and its linearization at θ_0 (dashed)."""

SHORT_MODEL = {"real": "real", "linearized": "lin", "both": "both"}
"""Model names in panel titles."""

VERDICT_WORD = {core_claims.HOLDS: "holds", core_claims.FAILS: "does not hold", core_claims.UNDECIDED: "undecided"}
"""Verdicts as the panels print them."""


def _verdicts(claims: pd.DataFrame | None, claim: str, **match: str) -> pd.DataFrame:
    """The rows of one claim (and subject / model) of :func:`kernelft.taskvec.claims.claims_table`."""
    if claims is None or claims.empty:
        return pd.DataFrame(columns=["model", "subject", "verdict", "estimate", "estimate_low", "estimate_high"])
    rows = claims[claims["claim"] == claim]
    for column, value in match.items():
        rows = rows[rows[column] == value]
    return rows


def _points(row: pd.Series) -> str:
    """An interval in accuracy points: ``estimate [low, high]``."""
    return f"{100 * row['estimate']:+.1f} [{100 * row['estimate_low']:+.1f}, {100 * row['estimate_high']:+.1f}]"


def _shorten(tasks: Sequence[str]) -> dict[str, str]:
    """Task names without their common prefix (``tweets-``), for panel titles."""
    prefix = os.path.commonprefix(list(tasks)) if len(tasks) > 1 else ""
    prefix = prefix[: prefix.rfind("-") + 1] if "-" in prefix else ""
    return {t: t[len(prefix):] or t for t in tasks}


def plot_task_vectors(
    accuracy: pd.DataFrame, summary: pd.DataFrame, pairs: Sequence[Mapping], claims: pd.DataFrame | None = None
) -> Figure:
    """F13: one column per task pair; rows: addition, negation, interference against the kernel numbers.

    ``accuracy``: the grid table (model, operation, vector, lambda, eval_task, accuracy), see
    :func:`kernelft.taskvec.arithmetic.evaluate_grid`; ``summary``: :func:`kernelft.taskvec.tables.summary_table`;
    ``pairs``: ``{"name", "tasks": [A, B]}`` from the config; ``claims``:
    :func:`kernelft.taskvec.claims.claims_table`, whose verdicts the panel titles state (and ``summary``'s
    intervals, from :func:`kernelft.taskvec.claims.summary_intervals`, the error bars of row 3).

    Row 1: accuracy on each task of the pair for θ_0 + λ τ_t (single, thin) and θ_0 + λ (τ_A + τ_B)
    (added, thick), real (solid) vs linearized (dashed); the grey line is θ_0. Row 2: negation
    θ_0 − λ τ_t: accuracy on t (target) and on the other task (control). Row 3: interference
    (single − added accuracy at λ = 1, mean over the pair's tasks) against the centred cross-task
    kernel alignment and against the top-k eigenspace overlap, and the real model's disentanglement
    error at λ = 1 against the alignment.
    """
    theme()
    columns = max(len(pairs), 3)
    fig, axes = plt.subplots(3, columns, figsize=(5.2 * columns, 14), squeeze=False, constrained_layout=True)
    palette = dict(zip(dict.fromkeys(t for p in pairs for t in p["tasks"]), sns.color_palette("colorblind")))
    short = _shorten(list(palette))
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
        lines = [f"{pair['name']}: {short[a]} + {short[b]}", "addition (thin: single τ_t, thick: τ_A + τ_B)"]
        less = _verdicts(claims, "linearized_interferes_less", subject=pair["name"])
        for _, row in less.iterrows():
            lines.append(f"interference real − lin {_points(row)}: lin < real {VERDICT_WORD[row['verdict']]}")
        top.set_title("\n".join(lines), fontsize=9)
        lines = ["negation θ0 − λτ_t (bold: on t, faint: other task)"]
        forgets = _verdicts(claims, "negation_forgets")
        for task in (a, b):
            words = [f"{SHORT_MODEL[model]} {VERDICT_WORD[row['verdict']]}" for model in MODEL_STYLE
                     for _, row in forgets[(forgets["subject"] == task) & (forgets["model"] == model)].iterrows()]
            if words:
                lines.append(f"lowers {short[task]}: " + ", ".join(words))
        middle.set_title("\n".join(lines), fontsize=9)
    for col in range(len(pairs), columns):
        for row in (0, 1):
            axes[row, col].axis("off")
    _legend(axes[0, 0], palette)
    _interference_panels(axes[2], summary, claims)
    title = "F13 task vectors through the eNTK: real (solid) vs linearized (dashed) model; dotted = θ0"
    if claims is not None and len(claims):
        title += (f"\nverdicts from {100 * claims['level'].iloc[0]:.0f} % paired bootstrap intervals over "
                  f"{int(claims['examples'].iloc[0])} test examples (all tasks)")
    fig.suptitle(title, fontsize=12)
    return fig


def _legend(ax: plt.Axes, palette: Mapping[str, tuple]) -> None:
    handles = [plt.Line2D([], [], color=color, lw=2, label=task) for task, color in palette.items()]
    handles += [plt.Line2D([], [], color="black", ls=style, label=model) for model, style in MODEL_STYLE.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower left")


def _interference_panels(axes: Sequence[plt.Axes], summary: pd.DataFrame, claims: pd.DataFrame | None) -> None:
    """Pair means, black = real, grey = linearized, each point labelled with its pair's name; the interval of
    the pair's interference as error bars (when ``summary`` has it), the slope verdicts in the titles."""
    agg = {"interference": ("interference", "mean"), "disentanglement_error": ("disentanglement_error", "mean"),
           "cka": ("cka", "first"), "overlap": ("overlap", "first")}
    if "pair_interference_low" in summary:
        agg.update(low=("pair_interference_low", "first"), high=("pair_interference_high", "first"))
    mean = summary.groupby(["pair_name", "model"], as_index=False).agg(**agg)
    colours = {"real": "black", "linearized": "grey"}
    markers = {"real": "X", "linearized": "o"}
    panels = ((axes[0], "cka", "interference", "centred cross-task kernel alignment", mean),
              (axes[1], "overlap", "interference", "top-k eigenspace overlap", mean),
              (axes[2], "cka", "disentanglement_error", "centred cross-task kernel alignment",
               mean[mean["model"] == "real"]))
    for ax, x, y, label, frame in panels:
        for model, part in frame.groupby("model"):
            if y == "interference" and "low" in part:
                ax.errorbar(part[x], part[y], yerr=[part[y] - part["low"], part["high"] - part[y]], fmt="none",
                            ecolor=colours[model], elinewidth=1.2, capsize=3)
            ax.scatter(part[x], part[y], s=70, color=colours[model], marker=markers[model], label=model, zorder=3)
            for _, row in part.iterrows():
                ax.annotate(row["pair_name"], (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=8,
                            color=colours[model])
        ax.set_xlabel(label)
        ax.margins(x=0.2)
        ax.legend(fontsize=8, loc="upper left")
    for ax in axes[:2]:
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylabel("interference: single − added accuracy (λ = 1)")
    axes[2].set(ylabel="disentanglement error (real, λ = 1)", ylim=(0, None))
    for ax, claim, title in ((axes[0], "interference_grows_with_alignment", "interference vs alignment"),
                             (axes[1], "interference_grows_with_overlap", "interference vs eigenspace overlap")):
        lines = [f"{title} (mean over the pair's tasks)"]
        for _, row in _verdicts(claims, claim).iterrows():
            slope = f"{row['estimate']:+.2f} [{row['estimate_low']:+.2f}, {row['estimate_high']:+.2f}]"
            lines.append(f"rises ({SHORT_MODEL[row['model']]}): slope {slope}, {VERDICT_WORD[row['verdict']]}")
        ax.set_title("\n".join(lines), fontsize=9)
    similar = _verdicts(claims, "similar_interferes_less")
    if len(similar):
        text = "\n".join(f"{row['subject']} ({SHORT_MODEL[row['model']]}): {_points(row)} "
                         f"{VERDICT_WORD[row['verdict']]}" for _, row in similar.iterrows())
        axes[0].text(0.58, 0.98, "similar interferes less (difference in points):\n" + text,
                     transform=axes[0].transAxes, fontsize=7, ha="center", va="top",
                     bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "lightgrey"})
        axes[0].set_ylim(top=axes[0].get_ylim()[1] + 0.45 * np.ptp(axes[0].get_ylim()))
    axes[2].set_title("non-additivity of the real model", fontsize=9)
