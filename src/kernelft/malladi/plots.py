"""Figures F1–F4: kernel vs fine-tuning (Malladi et al., ICML 2023).

Each function applies the shared :func:`kernelft.core.plotting.theme`, takes the per-run table of the stage
(``results/malladi/runs.csv``: one row per task, head, k, seed and FT optimizer, see
:func:`kernelft.malladi.records.run_record`) and returns a matplotlib Figure. Each optimizer is shown against
its own kernel (SGD-FT vs K(SGD), Adam-FT vs K(A-SignGD)), one panel each.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kernelft.core.plotting import theme
from kernelft.malladi.claims import CLAIMS, verdict_lines
from kernelft.malladi.tables import KERNEL_NAMES

HEAD_ORDER = ["prompt", "linear"]
HEAD_NAMES = {"prompt": "prompt-based", "linear": "linear head"}
OPTIMIZER_ORDER = ["sgd", "adam"]
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam"}


def _require(df: pd.DataFrame, columns: list[str], figure: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{figure}: DataFrame lacks columns {missing}; has {list(df.columns)}")


def _labelled(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds ``setting`` = "<task>, k=<k>", ``Head`` (readable head names) and ``comparison``
    ("SGD-FT vs K(SGD)", ...)."""
    out = runs.copy()
    out["setting"] = out["task"].astype(str) + ", k=" + out["k"].astype(str)
    out["Head"] = out["head"].map(HEAD_NAMES).fillna(out["head"])
    out["comparison"] = [f"{OPTIMIZER_NAMES.get(o, o)}-FT vs {KERNEL_NAMES.get(o, '?')}" for o in out["optimizer"]]
    return out


def _heads(runs: pd.DataFrame) -> list[str]:
    return [HEAD_NAMES[h] for h in HEAD_ORDER if h in set(runs["head"])]


def _optimizers(runs: pd.DataFrame) -> list[str]:
    present = set(runs["optimizer"])
    return [o for o in OPTIMIZER_ORDER if o in present] + sorted(present - set(OPTIMIZER_ORDER))


def _limits(values: pd.Series) -> tuple[float, float]:
    """Axis limits of accuracies: their range with a margin, inside [0, 1] plus the margin."""
    values = values.dropna()
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    pad = 0.05 * max(high - low, 0.1)
    return max(0.0, low) - pad, min(1.0, high) + pad


def _identity_scatter(ax: Axes, df: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str,
                      style: str = "setting", limits: tuple[float, float] | None = None) -> None:
    """Accuracy scatter with the y = x line, one colour per head and one marker per ``style`` value."""
    limits = limits or _limits(pd.concat([df[x], df[y]]))
    ax.plot(limits, limits, ls="--", color="0.4", lw=1, label="y = x", zorder=1)
    sns.scatterplot(data=df, x=x, y=y, hue="Head", hue_order=_heads(df), style=style, s=70, ax=ax, zorder=2)
    ax.set(xlim=limits, ylim=limits, xlabel=xlabel, ylabel=ylabel, aspect="equal")
    ax.legend(fontsize=8, loc="lower right")


def _bars_and_seeds(ax: Axes, df: pd.DataFrame, y: str) -> None:
    """Mean per head and setting as bars, each seed as a dot."""
    order = _heads(df)
    sns.barplot(data=df, x="Head", y=y, hue="setting", order=order, errorbar=None, alpha=0.35, ax=ax)
    sns.stripplot(data=df, x="Head", y=y, hue="setting", order=order, dodge=True, size=7, ax=ax, legend=False,
                  edgecolor="0.2", linewidth=0.8)
    ax.legend(fontsize=8, title=None)


def _title(ax: Axes, title: str, claims: pd.DataFrame | None, figure: str, optimizer: str) -> None:
    """The panel title, then one line per claim row of the panel's optimizer (the interval in points and the
    verdict computed from it, :func:`kernelft.malladi.claims.verdict_lines`)."""
    lines = verdict_lines(claims, figure).get(optimizer, []) if claims is not None else []
    ax.set_title("\n".join([title, *lines]), fontsize=9 if lines else None)


def _suptitle(fig: Figure, text: str, claims: pd.DataFrame | None, figure: str) -> None:
    claim = f"\nclaim: {CLAIMS[figure]} (95 % paired interval → verdict)" if claims is not None else ""
    fig.suptitle(text + claim)


def _panels(n: int, width: float, height: float, extra: int = 0) -> tuple[Figure, list[Axes]]:
    """``n`` panels in a row sharing their y axis (one per optimizer), then ``extra`` panels of their own."""
    fig = plt.figure(figsize=(width * (n + extra), height), layout="constrained")
    grid = fig.add_gridspec(1, n + extra)
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[0, i], sharey=axes[0]) for i in range(1, n)]
    axes += [fig.add_subplot(grid[0, n + i]) for i in range(extra)]
    return fig, axes


def plot_kernel_vs_ft(runs: pd.DataFrame, claims: pd.DataFrame | None = None) -> Figure:
    """F1: test accuracy of the kernel solver on the pretrained eNTK (x) against fine-tuning (y).

    One panel per optimizer, against its kernel (SGD-FT vs K(SGD), Adam-FT vs K(A-SignGD)); one point
    per task, k, head and seed. Points on the dashed line y = x are runs where FT predicts as well as
    the kernel (Malladi et al. 2023, Fig. 1 / Table 1).
    """
    _require(runs, ["task", "k", "head", "seed", "optimizer", "kernel_accuracy", "ft_accuracy"], "F1")
    theme()
    df = _labelled(runs)
    optimizers = _optimizers(df)
    fig, axes = _panels(len(optimizers), 5.5, 5.2)
    limits = _limits(pd.concat([df["kernel_accuracy"], df["ft_accuracy"]]))  # one scale for every panel
    for ax, optimizer in zip(axes, optimizers):
        part = df[df["optimizer"] == optimizer]
        _identity_scatter(ax, part, "kernel_accuracy", "ft_accuracy",
                          f"{KERNEL_NAMES.get(optimizer, optimizer)} solver accuracy (eNTK at θ0)",
                          f"{OPTIMIZER_NAMES.get(optimizer, optimizer)}-FT accuracy", limits=limits)
        _title(ax, part["comparison"].iloc[0], claims, "F1", optimizer)
    _suptitle(fig, "F1: kernel vs fine-tuning (test accuracy)", claims, "F1")
    return fig


def plot_prompt_vs_linear(runs: pd.DataFrame, claims: pd.DataFrame | None = None) -> Figure:
    """F2: the kernel–FT gap (FT − kernel test accuracy) per head, one panel per optimizer; dots are
    seeds, bars the mean. Malladi et al. find prompt-based FT close to its kernel (gap near 0) and
    linear-head FT further."""
    _require(runs, ["task", "k", "head", "seed", "optimizer", "gap"], "F2")
    theme()
    df = _labelled(runs)
    df["gap_points"] = 100 * df["gap"]
    optimizers = _optimizers(df)
    fig, axes = _panels(len(optimizers), 6, 4.5)
    for ax, optimizer in zip(axes, optimizers):
        part = df[df["optimizer"] == optimizer]
        _bars_and_seeds(ax, part, "gap_points")
        ax.axhline(0, color="0.3", lw=1)
        ax.set(xlabel="", ylabel="FT − kernel accuracy (points)")
        _title(ax, part["comparison"].iloc[0], claims, "F2", optimizer)
    _suptitle(fig, "F2: kernel–FT gap, prompt vs linear head", claims, "F2")
    return fig


def plot_kernel_change(runs: pd.DataFrame, claims: pd.DataFrame | None = None) -> Figure:
    """F3: kernel change ‖K_after − K_before‖_F/‖K_before‖_F of K(SGD) after FT per head, one panel per
    optimizer; last panel, test accuracy of the linearized model (trained with the same optimizer)
    against real FT, one marker per optimizer and k."""
    _require(runs, ["task", "k", "head", "optimizer", "kernel_change", "linearized_accuracy", "ft_accuracy"], "F3")
    theme()
    df = _labelled(runs)
    optimizers = _optimizers(df)
    fig, axes = _panels(len(optimizers), 5.5, 5, extra=1)
    for ax, optimizer in zip(axes, optimizers):
        part = df[df["optimizer"] == optimizer]
        _bars_and_seeds(ax, part, "kernel_change")
        ax.set(xlabel="", ylabel="‖K_after − K_before‖_F / ‖K_before‖_F",
               title=f"K(SGD) change after {OPTIMIZER_NAMES.get(optimizer, optimizer)}-FT")
    right = axes[-1]
    linearized = df.dropna(subset=["linearized_accuracy"]).copy()
    if linearized.empty:
        right.text(0.5, 0.5, "no linearized runs", ha="center", va="center", transform=right.transAxes)
    else:
        linearized["run"] = linearized["optimizer"].map(OPTIMIZER_NAMES).fillna(linearized["optimizer"]) + ", k=" \
            + linearized["k"].astype(str)
        _identity_scatter(right, linearized, "linearized_accuracy", "ft_accuracy", "linearized model accuracy",
                          "fine-tuning accuracy", style="run")
    lines = [f"{OPTIMIZER_NAMES.get(o, o)}, {line}" for o, rows in
             (verdict_lines(claims, "F3") if claims is not None else {}).items() for line in rows]
    right.set_title("\n".join(["linearized vs real FT (test accuracy)", *lines]), fontsize=9 if lines else None)
    _suptitle(fig, "F3: how lazy is fine-tuning?", claims, "F3")
    return fig


def plot_lora_projection(runs: pd.DataFrame, projection: pd.DataFrame, claims: pd.DataFrame | None = None) -> Figure:
    """F4: left, kernel solver accuracy with the LoRA-parameter K(SGD) against the full K(SGD); right,
    relative error ‖K̃_d − K‖_F/‖K‖_F of the CountSketch-projected eNTK against d (log–log) with a
    c·d^{-1/2} line fitted through the points."""
    _require(runs, ["task", "k", "head", "lora_kernel_accuracy", "kernel_accuracy"], "F4")
    _require(projection, ["dim", "relative_error"], "F4")
    theme()
    df = _labelled(runs).dropna(subset=["lora_kernel_accuracy"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 5), layout="constrained")
    if df.empty:
        left.text(0.5, 0.5, "no LoRA kernels", ha="center", va="center", transform=left.transAxes)
    else:
        _identity_scatter(left, df, "kernel_accuracy", "lora_kernel_accuracy", "full K(SGD) solver accuracy",
                          "LoRA-kernel solver accuracy")
    _title(left, "LoRA kernel vs full kernel", claims, "F4", "sgd")
    sketch = projection.dropna(subset=["dim"]).sort_values("dim")
    dims, errors = sketch["dim"].to_numpy(float), sketch["relative_error"].to_numpy(float)
    right.loglog(dims, errors, "o-", label="measured")
    if len(dims):
        scale = float(np.exp(np.mean(np.log(errors * np.sqrt(dims)))))
        right.loglog(dims, scale / np.sqrt(dims), "--", color="0.4", label=f"{scale:.2g}·d$^{{-1/2}}$")
    n = int(sketch["n"].iloc[0]) if "n" in sketch and len(sketch) else None
    right.set(xlabel="projection dimension d", ylabel="‖K̃_d − K‖_F / ‖K‖_F",
              title=f"CountSketch projection error (n = {n})" if n else "CountSketch projection error")
    right.legend(fontsize=9)
    _suptitle(fig, "F4: LoRA kernel and random projection of gradients", claims, "F4")
    return fig


FIGURES = {
    "F1": plot_kernel_vs_ft,
    "F2": plot_prompt_vs_linear,
    "F3": plot_kernel_change,
    "F4": plot_lora_projection,
}
"""Figure number → plotting function (F4 also takes the projection table); each takes the claim table of
:func:`kernelft.malladi.claims.claim_table` last, optionally."""
