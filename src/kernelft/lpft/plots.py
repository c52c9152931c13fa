"""Figures F9–F12: LP-FT through the NTK (Tomihari & Sato, NeurIPS 2024).

Each function applies the shared :func:`kernelft.core.plotting.theme`, takes the table written beside the
figure (CSV, built by :mod:`kernelft.lpft.stage`) and returns a matplotlib Figure. Methods keep one
colour across the four figures.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from kernelft.core.plotting import theme
from kernelft.lpft import METHODS
from kernelft.lpft.stage import LABELS


def _require(df: pd.DataFrame, columns: list[str], figure: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{figure}: DataFrame lacks columns {missing}; has {list(df.columns)}")


def _colors() -> dict[str, tuple]:
    return dict(zip(METHODS, sns.color_palette("colorblind", len(METHODS))))


def _ordered(methods) -> list[str]:
    present = list(dict.fromkeys(methods))
    return [m for m in METHODS if m in present] + [m for m in present if m not in METHODS]


def plot_feature_change(curves: pd.DataFrame) -> Figure:
    """F9: head norm ‖V‖_F (left) and feature change (1/m) Σ‖φ − φ₀‖ (right) against the step.

    ``curves``: ``method``, ``step``, ``head_norm_mean``/``_std``, ``feature_change_mean``/``_std``
    (mean ± sd over seeds at each evaluation step); LP (no steps) is left out.
    """
    keys = ["method", "step", "head_norm_mean", "head_norm_std", "feature_change_mean", "feature_change_std"]
    _require(curves, keys, "F9")
    theme()
    colors = _colors()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for method in _ordered(curves["method"]):
        part = curves[curves["method"] == method].sort_values("step")
        if part["step"].max() == 0:
            continue
        for ax, column in zip(axes, ("head_norm", "feature_change")):
            mean, std = part[f"{column}_mean"], part[f"{column}_std"].fillna(0.0)
            dashed = method.startswith("lp")
            ax.plot(part["step"], mean, marker="o", ms=4, color=colors.get(method), label=LABELS.get(method, method),
                    linestyle="--" if "lora" in method else "-", lw=2.2 if dashed else 1.6)
            ax.fill_between(part["step"], mean - std, mean + std, color=colors.get(method), alpha=0.15, lw=0)
    axes[0].set(xlabel="step", ylabel=r"head norm $\|V\|_F$", title="Linear head norm")
    axes[1].set(xlabel="step", ylabel=r"$\frac{1}{m}\sum_i \|\phi(x_i)-\phi_0(x_i)\|$", title="Feature change")
    axes[0].legend(title="method")
    fig.suptitle("Head norm and feature change over training (mean ± sd over seeds)")
    return fig


def plot_ntk_decomposition(ntk: pd.DataFrame) -> Figure:
    """F10: the eNTK at the start of FT split into pre-train-effective and FT-effective parts.

    ``ntk``: ``method``, ``fro_pre_train_effective_mean``, ``fro_ft_effective_mean``,
    ``share_trace_ft_effective_mean`` and ``head_norm_mean`` (with ``_std``). Left: Frobenius norms
    of the two parts (log scale); right: the FT-effective share of the trace, head norm annotated.
    """
    keys = ["method", "fro_pre_train_effective_mean", "fro_ft_effective_mean", "share_trace_ft_effective_mean",
            "share_trace_ft_effective_std", "head_norm_mean"]
    _require(ntk, keys, "F10")
    theme()
    methods = _ordered(ntk["method"])
    rows = ntk.set_index("method").loc[methods]
    x = np.arange(len(methods))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    width = 0.38
    for offset, part, label, color in ((-width / 2, "pre_train_effective", r"pre-train-effective $(\phi^\top\phi'+1)I$",
                                        "0.6"),
                                       (width / 2, "ft_effective", r"FT-effective $V J_\phi J_{\phi'}^\top V^\top$",
                                        "tab:purple")):
        mean = rows[f"fro_{part}_mean"].to_numpy()
        std = rows.get(f"fro_{part}_std", pd.Series(0.0, index=rows.index)).fillna(0.0).to_numpy()
        axes[0].bar(x + offset, mean, width, yerr=std, color=color, label=label, capsize=3)
    axes[0].set(yscale="log", xticks=x, xticklabels=[LABELS.get(m, m) for m in methods],
                ylabel="Frobenius norm", title="NTK parts at the start of training")
    axes[0].legend(fontsize=9)
    colors = _colors()
    share = rows["share_trace_ft_effective_mean"].to_numpy()
    axes[1].bar(x, share, 0.6, yerr=rows["share_trace_ft_effective_std"].fillna(0.0).to_numpy(), capsize=3,
                color=[colors.get(m) for m in methods])
    for xi, value, norm in zip(x, share, rows["head_norm_mean"].to_numpy()):
        axes[1].annotate(rf"$\|V\|$={norm:.2f}", (xi, value), textcoords="offset points", xytext=(0, 6),
                         ha="center", fontsize=9)
    axes[1].set(xticks=x, xticklabels=[LABELS.get(m, m) for m in methods],
                ylabel="tr FT-eff. / tr (PT-eff. + FT-eff.)", title="FT-effective share of the trace")
    axes[1].set_ylim(0, max(1.2 * float(np.nanmax(share)), 1e-6))
    fig.suptitle("eNTK decomposition of a linear head (Tomihari & Sato 2024), mean ± sd over seeds")
    return fig


def plot_id_ood(accuracy: pd.DataFrame, runs: pd.DataFrame | None = None) -> Figure:
    """F11: ID vs OOD test accuracy per method, mean ± sd over seeds (single seeds as faint dots).

    ``accuracy``: ``method``, ``id_accuracy_mean``/``_std``, ``ood_accuracy_mean``/``_std``;
    ``runs`` (optional): per-run ``method``, ``id_accuracy``, ``ood_accuracy``.
    """
    _require(accuracy, ["method", "id_accuracy_mean", "id_accuracy_std", "ood_accuracy_mean", "ood_accuracy_std"],
             "F11")
    theme()
    colors = _colors()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True, gridspec_kw={"width_ratios": [1, 1.2]})
    methods = _ordered(accuracy["method"])
    rows = accuracy.set_index("method").loc[methods]
    for method in methods:
        row = rows.loc[method]
        if runs is not None:
            mine = runs[runs["method"] == method]
            axes[0].scatter(mine["id_accuracy"], mine["ood_accuracy"], color=colors.get(method), alpha=0.3, s=18)
        axes[0].errorbar(row["id_accuracy_mean"], row["ood_accuracy_mean"], xerr=np.nan_to_num(row["id_accuracy_std"]),
                         yerr=np.nan_to_num(row["ood_accuracy_std"]), fmt="o", ms=8, capsize=3,
                         color=colors.get(method), label=LABELS.get(method, method))
    axes[0].set(xlabel="ID accuracy (airline tweets)", ylabel="OOD accuracy (other topics)", title="ID vs OOD")
    axes[0].legend(title="method", fontsize=9)
    x = np.arange(len(methods))
    for offset, split, hatch in ((-0.2, "id", ""), (0.2, "ood", "//")):
        axes[1].bar(x + offset, rows[f"{split}_accuracy_mean"], 0.4, yerr=rows[f"{split}_accuracy_std"].fillna(0.0),
                    capsize=3, color=[colors.get(m) for m in methods], hatch=hatch, edgecolor="white",
                    label=split.upper())
    axes[1].axhline(0.5, color="0.4", lw=1, ls=":")
    axes[1].set(xticks=x, xticklabels=[LABELS.get(m, m) for m in methods], ylabel="test accuracy",
                title="Accuracy per method (hatched: OOD)", ylim=(0.3, 1.0))
    fig.suptitle("In-distribution vs out-of-distribution accuracy (mean ± sd over seeds)")
    return fig


def plot_calibration(calibration: pd.DataFrame, reliability: pd.DataFrame) -> Figure:
    """F12: ECE before/after temperature scaling per method (top left: ID, top right: OOD) and the
    ID reliability diagrams, seeds pooled (bottom: accuracy vs confidence per bin, before solid,
    after dashed; the diagonal is perfect calibration).

    ``calibration``: ``method``, ``id_ece_before_mean`` ... ``ood_ece_after_std``; ``reliability``:
    ``method``, ``scaling``, ``confidence``, ``accuracy``, ``count`` (from
    :func:`kernelft.lpft.stage.pooled_reliability`).
    """
    keys = ["method"] + [f"{split}_ece_{when}_{stat}" for split in ("id", "ood") for when in ("before", "after")
                         for stat in ("mean", "std")]
    _require(calibration, keys, "F12")
    _require(reliability, ["method", "scaling", "confidence", "accuracy", "count"], "F12")
    theme()
    methods = _ordered(calibration["method"])
    rows = calibration.set_index("method").loc[methods]
    colors = _colors()
    fig = plt.figure(figsize=(3.0 * max(len(methods), 4), 8), constrained_layout=True)
    k = len(methods)
    grid = fig.add_gridspec(2, 2 * k)  # top: two halves; bottom: one diagram per method
    top = [fig.add_subplot(grid[0, :k]), fig.add_subplot(grid[0, k:])]
    x = np.arange(len(methods))
    for ax, split in zip(top, ("id", "ood")):
        for offset, when, alpha in ((-0.2, "before", 1.0), (0.2, "after", 0.45)):
            ax.bar(x + offset, rows[f"{split}_ece_{when}_mean"], 0.4, yerr=rows[f"{split}_ece_{when}_std"].fillna(0.0),
                   capsize=3, color=[colors.get(m) for m in methods], alpha=alpha, edgecolor="black", lw=0.5)
        ax.set(xticks=x, xticklabels=[LABELS.get(m, m) for m in methods], ylabel="ECE (15 bins)",
               title=f"{split.upper()} test: before (solid) / after (light) scaling")
    for i, method in enumerate(methods):
        ax = fig.add_subplot(grid[1, 2 * i : 2 * i + 2])
        ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls=":")
        for when, style in (("before", "-"), ("after", "--")):
            part = reliability[(reliability["method"] == method) & (reliability["scaling"] == when)]
            part = part[part["count"] > 0]
            ax.plot(part["confidence"], part["accuracy"], style, marker="o", ms=3, color=colors.get(method),
                    label=f"{when} TS")
        ax.set(xlim=(0.45, 1.0), ylim=(0.0, 1.02), xlabel="confidence", title=LABELS.get(method, method))
        if i == 0:
            ax.set_ylabel("accuracy (ID)")
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Calibration before/after temperature scaling (T fitted on an ID validation split)\n"
                 "ECE: mean ± sd over seeds; reliability diagrams (ID test): seeds pooled")
    return fig
