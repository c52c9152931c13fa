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


def _verdict_lines(verdicts: pd.DataFrame | None) -> str:
    """The claims' verdict lines of a figure (:func:`kernelft.lpft.claims.verdict_text`), one per claim."""
    from kernelft.lpft.claims import verdict_text

    if verdicts is None or not len(verdicts):
        return ""
    return "\n".join(verdict_text(row) for row in verdicts.to_dict("records"))


def _interval_errors(rows: pd.DataFrame, column: str) -> np.ndarray:
    """Error bars: the 95 % interval ``<column>_ci_low``/``_ci_high`` around ``<column>_mean`` where the table has
    it, else ± ``<column>_std``; shape (2, n)."""
    mean = rows[f"{column}_mean"].to_numpy(dtype=float)
    if f"{column}_ci_low" in rows:
        low, high = rows[f"{column}_ci_low"].to_numpy(dtype=float), rows[f"{column}_ci_high"].to_numpy(dtype=float)
        return np.clip(np.stack([mean - low, high - mean]), 0.0, None)
    std = np.nan_to_num(rows[f"{column}_std"].to_numpy(dtype=float))
    return np.stack([std, std])


def _method_points(ax, rows: pd.DataFrame, column: str, colors: dict) -> None:
    """One marker ± sd per method (x = method) of ``<column>_mean``/``_std``."""
    for x, (method, row) in enumerate(rows.iterrows()):
        ax.errorbar(x, row[f"{column}_mean"], yerr=np.nan_to_num(row[f"{column}_std"]), fmt="o", ms=7, capsize=3,
                    color=colors.get(method))
    ax.set_xticks(np.arange(len(rows)), [LABELS.get(m, m) for m in rows.index])


def plot_feature_change(curves: pd.DataFrame, verdicts: pd.DataFrame | None = None) -> Figure:
    """F9: head norm ‖V‖_F (top left) and feature change (1/m) Σ‖φ − φ₀‖ (top right) against the step; the
    cosine similarity (1/m) Σ cos(φ, φ₀) (bottom left) and norm difference (1/m) Σ (‖φ‖ − ‖φ₀‖) (bottom right)
    of the features at each run's selected step, per method.

    ``curves``: ``method``, ``step``, ``head_norm_mean``/``_std``, ``feature_change_mean``/``_std`` (mean ± sd
    over seeds at each evaluation step; LP, without steps, is left out of the top row) and, on every row of a
    method, ``feature_cosine_mean``/``_std`` and ``feature_norm_change_mean``/``_std``
    (:func:`kernelft.lpft.stage.figure_tables`). ``verdicts``: F9's rows of :func:`kernelft.lpft.claims.decide`
    (the feature-change claims), written under the top-right panel's title.
    """
    keys = ["method", "step", "head_norm_mean", "head_norm_std", "feature_change_mean", "feature_change_std",
            "feature_cosine_mean", "feature_cosine_std", "feature_norm_change_mean", "feature_norm_change_std"]
    _require(curves, keys, "F9")
    theme()
    colors = _colors()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for method in _ordered(curves["method"]):
        part = curves[curves["method"] == method].sort_values("step")
        if part["step"].max() == 0:
            continue
        for ax, column in zip(axes[0], ("head_norm", "feature_change")):
            mean, std = part[f"{column}_mean"], part[f"{column}_std"].fillna(0.0)
            dashed = method.startswith("lp")
            ax.plot(part["step"], mean, marker="o", ms=4, color=colors.get(method), label=LABELS.get(method, method),
                    linestyle="--" if "lora" in method else "-", lw=2.2 if dashed else 1.6)
            ax.fill_between(part["step"], mean - std, mean + std, color=colors.get(method), alpha=0.15, lw=0)
    axes[0, 0].set(xlabel="step", ylabel=r"head norm $\|V\|_F$", title="Linear head norm")
    lines = _verdict_lines(verdicts)
    axes[0, 1].set(xlabel="step", ylabel=r"$\frac{1}{m}\sum_i \|\phi(x_i)-\phi_0(x_i)\|$",
                   title="Feature change" + (f"\n{lines}" if lines else ""))
    axes[0, 1].title.set_fontsize(9 if lines else axes[0, 0].title.get_fontsize())
    axes[0, 0].legend(title="method")
    final = curves.drop_duplicates("method").set_index("method").loc[_ordered(curves["method"])]
    _method_points(axes[1, 0], final, "feature_cosine", colors)
    axes[1, 0].set(ylabel=r"$\frac{1}{m}\sum_i \cos(\phi(x_i), \phi_0(x_i))$",
                   title="Cosine similarity to the pretrained features")
    _method_points(axes[1, 1], final, "feature_norm_change", colors)
    axes[1, 1].axhline(0.0, color="0.5", lw=1, ls=":")
    axes[1, 1].set(ylabel=r"$\frac{1}{m}\sum_i (\|\phi(x_i)\| - \|\phi_0(x_i)\|)$", title="Norm difference")
    fig.suptitle("Head norm and feature change over training; the features at the selected step "
                 "(mean ± sd over seeds)")
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


def ood_tasks_of(accuracy: pd.DataFrame) -> list[str]:
    """The OOD tasks of an F11 table (its ``ood_accuracy:<task>_mean`` columns), in order."""
    prefix, suffix = "ood_accuracy:", "_mean"
    return [c[len(prefix) : -len(suffix)] for c in accuracy.columns if c.startswith(prefix) and c.endswith(suffix)]


def plot_id_ood(accuracy: pd.DataFrame, runs: pd.DataFrame | None = None, ood: pd.DataFrame | None = None,
                id_task: str | None = None, verdicts: pd.DataFrame | None = None) -> Figure:
    """F11: ID vs OOD test accuracy per method and OOD set, the mean over seeds with its 95 % interval
    (``<column>_ci_low``/``_ci_high``, :func:`kernelft.lpft.claims.annotate`; ± sd without them) and single seeds as
    faint dots; ``verdicts`` (F11's claims, :func:`kernelft.lpft.claims.decide`) under the title.

    ``accuracy``: ``method``, ``id_accuracy_mean``/``_std`` and, per OOD task t, ``ood_accuracy:<t>_mean``/
    ``_std`` (without them, the mean over the sets ``ood_accuracy_mean``/``_std`` as one set);
    ``runs`` (optional): per-run ``method``, ``seed``, ``id_accuracy``; ``ood`` (optional): per run and OOD
    set ``method``, ``seed``, ``ood_task``, ``accuracy``. Left: OOD against ID accuracy, one marker shape per
    OOD set; right: ID and each OOD set's accuracy as bars (hatched: OOD, one hatch per set).
    """
    _require(accuracy, ["method", "id_accuracy_mean", "id_accuracy_std"], "F11")
    tasks = ood_tasks_of(accuracy)
    columns = {task: f"ood_accuracy:{task}" for task in tasks} or {"OOD": "ood_accuracy"}
    _require(accuracy, [f"{c}_{stat}" for c in columns.values() for stat in ("mean", "std")], "F11")
    theme()
    colors = _colors()
    markers = dict(zip(columns, "os^DvP*X"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True, gridspec_kw={"width_ratios": [1, 1.3]})
    methods = _ordered(accuracy["method"])
    rows = accuracy.set_index("method").loc[methods]
    seeds = None
    if runs is not None and ood is not None and len(ood):
        seeds = ood.merge(runs[["method", "seed", "id_accuracy"]], on=["method", "seed"], how="left")
    for method in methods:
        row = rows.loc[method]
        for task, column in columns.items():
            if seeds is not None and task in set(seeds["ood_task"]):
                mine = seeds[(seeds["method"] == method) & (seeds["ood_task"] == task)]
                axes[0].scatter(mine["id_accuracy"], mine["accuracy"], color=colors.get(method), alpha=0.3, s=18,
                                marker=markers[task])
            one = rows.loc[[method]]
            axes[0].errorbar(row["id_accuracy_mean"], row[f"{column}_mean"], xerr=_interval_errors(one, "id_accuracy"),
                             yerr=_interval_errors(one, column),
                             fmt=markers[task], ms=8, capsize=3, color=colors.get(method))
    handles = [plt.Line2D([], [], color=colors.get(m), marker="o", ls="", label=LABELS.get(m, m)) for m in methods]
    if len(columns) > 1:
        handles += [plt.Line2D([], [], color="0.3", marker=markers[t], ls="", label=t) for t in columns]
    axes[0].legend(handles=handles, fontsize=8)
    axes[0].set(xlabel=f"ID accuracy ({id_task})" if id_task else "ID accuracy", ylabel="OOD accuracy",
                title="ID vs OOD")
    sets = {"ID": "id_accuracy", **columns}
    width = 0.8 / len(sets)
    x = np.arange(len(methods))
    for i, (name, column) in enumerate(sets.items()):
        axes[1].bar(x + (i - (len(sets) - 1) / 2) * width, rows[f"{column}_mean"], width,
                    yerr=_interval_errors(rows, column), capsize=2, color=[colors.get(m) for m in methods],
                    hatch=["", "//", "..", "xx", "\\\\", "++", "oo"][i % 7], edgecolor="white", label=name)
    axes[1].set(xticks=x, xticklabels=[LABELS.get(m, m) for m in methods], ylabel="test accuracy",
                title="Accuracy per method: ID, then each OOD set (hatched)", ylim=(0.0, 1.0))
    axes[1].legend(fontsize=8, ncol=min(len(sets), 4))
    interval = "95 % interval" if "id_accuracy_ci_low" in rows else "± sd"
    lines = _verdict_lines(verdicts)
    fig.suptitle(f"In-distribution vs out-of-distribution accuracy (mean over seeds, {interval})"
                 + (f"\n{lines}" if lines else ""), fontsize=11)
    return fig


def plot_calibration(calibration: pd.DataFrame, reliability: pd.DataFrame,
                     verdicts: pd.DataFrame | None = None) -> Figure:
    """F12: ECE before/after temperature scaling per method (top left: ID, top right: OOD) and the
    ID reliability diagrams, seeds pooled (bottom: accuracy vs confidence per bin, before solid,
    after dashed; the diagonal is perfect calibration).

    ``calibration``: ``method``, ``id_ece_before_mean`` ... ``ood_ece_after_std`` (OOD: the mean over the OOD
    sets; each set's numbers are in the table, ``ood_ece_<before|after>:<task>``); ``reliability``:
    ``method``, ``scaling``, ``confidence``, ``accuracy``, ``count`` (from
    :func:`kernelft.lpft.stage.pooled_reliability`). The error bars are the 95 % intervals
    ``<id|ood>_ece_<when>_ci_low``/``_ci_high`` where the table has them (:func:`kernelft.lpft.claims.annotate`), else
    ± sd; ``verdicts`` (F12's claims, :func:`kernelft.lpft.claims.decide`) go under the title.
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
            ax.bar(x + offset, rows[f"{split}_ece_{when}_mean"], 0.4,
                   yerr=_interval_errors(rows, f"{split}_ece_{when}"), capsize=3,
                   color=[colors.get(m) for m in methods], alpha=alpha, edgecolor="black", lw=0.5)
        ax.set(xticks=x, xticklabels=[LABELS.get(m, m) for m in methods], ylabel="ECE (15 bins)",
               title=f"{'ID' if split == 'id' else 'OOD (mean over the sets)'} test: before (solid) / after (light)")
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
    interval = "95 % interval" if "ood_ece_before_ci_low" in rows else \
        "ID: 95 % interval, OOD: ± sd" if "id_ece_before_ci_low" in rows else "± sd"
    lines = _verdict_lines(verdicts)
    fig.suptitle("Calibration before/after temperature scaling (T fitted on an ID validation split)\n"
                 f"ECE: mean over seeds ({interval}); reliability diagrams (ID test): seeds pooled"
                 + (f"\n{lines}" if lines else ""), fontsize=11)
    return fig
