"""Figures F5–F7: eNTK spectra, rates at the stopping time, learning curves (Sun & Raskutti 2026).

Each function applies the shared :func:`kernelft.plots.theme`, takes the DataFrame written beside the
figure (CSV) and returns a matplotlib Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from kernelft.plots import theme
from kernelft.rates import fit_rate

SPECTRUM_COLUMNS = ["label", "i", "eigenvalue", "power_fit", "exp_fit", "in_fit_range"]
SPECTRUM_COLUMNS += ["alpha", "power_r2", "c", "exp_r2", "better_law"]
RATE_COLUMNS = ["label", "n", "predicted_slope", "predicted_law", "predicted_rate"]
_SLOPE_KEYS = ("predicted_slope", "predicted_low", "predicted_high")
CURVE_COLUMNS = ["step", "train_mse", "test_mse", "stop_rule", "stop_oracle", "stop_validation"]
STOP_MARKS = {  # column: (marker, color, legend)
    "stop_rule": ("v", "tab:red", "rule T̂"),
    "stop_oracle": ("*", "tab:green", "oracle T*"),
    "stop_validation": ("o", "tab:blue", "validation"),
}


def _require(df: pd.DataFrame, columns: list[str], figure: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{figure}: DataFrame lacks columns {missing}; has {list(df.columns)}")


def _labels(df: pd.DataFrame) -> list:
    return list(dict.fromkeys(df["label"]))


def _law_legends(first: pd.Series) -> tuple[str, str]:
    """Legend texts of the power and exponential fits; ✓ marks the better one."""
    tick = {law: " ✓" if first["better_law"] == law else "" for law in ("power", "exponential")}
    ci = ""
    if "alpha_ci_low" in first and np.isfinite(first["alpha_ci_low"]):
        ci = f" [{first['alpha_ci_low']:.2f}, {first['alpha_ci_high']:.2f}]"
    power = f"power α={first['alpha']:.2f}{ci}, R²={first['power_r2']:.3f}{tick['power']}"
    exponential = f"exp c={first['c']:.3g}, R²={first['exp_r2']:.3f}{tick['exponential']}"
    return power, exponential


def plot_spectrum(df: pd.DataFrame) -> Figure:
    """F5: eigenvalues of K/n with power-law and exponential fits, log–log (left) and semi-log (right).

    ``df`` is one or more :func:`kernelft.spectrum.spectrum_frame` tables concatenated; columns used:
    label, i, eigenvalue, power_fit, exp_fit, in_fit_range, alpha, power_r2, c, exp_r2, better_law
    (alpha_ci_low/high if present). A power law is straight on the left panel, an exponential law on
    the right one. Eigenvalues more than 10³ below the smallest fitted one are not drawn.
    """
    _require(df, SPECTRUM_COLUMNS, "F5")
    theme()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    colors = sns.color_palette("colorblind", len(_labels(df)))
    floor = df.loc[df["in_fit_range"], "eigenvalue"].min() / 1e3
    for color, label in zip(colors, _labels(df)):
        part = df[df["label"] == label].sort_values("i")
        shown, fit = part[part["eigenvalue"] > floor], part[part["in_fit_range"]]
        power_text, exp_text = _law_legends(part.iloc[0])
        for ax, legend in zip(axes, (True, False)):
            ax.plot(shown["i"], shown["eigenvalue"], "o", ms=3, color=color, alpha=0.6,
                    label=str(label) if legend else None)
            ax.plot(fit["i"], fit["power_fit"], "-", color=color, lw=1.5, label=power_text if legend else None)
            ax.plot(fit["i"], fit["exp_fit"], ":", color=color, lw=1.8, label=exp_text if legend else None)
    ylabel = "eigenvalue λ_i of K/n"
    axes[0].set(xscale="log", yscale="log", xlabel="index i", ylabel=ylabel, title="log–log: power law is a line")
    axes[1].set(yscale="log", xlabel="index i", ylabel=ylabel, title="semi-log: exponential law is a line")
    axes[0].legend(fontsize=8, title="✓ better fit (higher log-space R²)", title_fontsize=8)
    fig.suptitle("F5  eNTK eigenvalue spectrum and decay-law fits")
    return fig


def plot_rates(df: pd.DataFrame, loss: str = "test_mse_rule", level: float = 0.95) -> Figure:
    """F6: test loss at the rule's stopping time vs n, log–log, with measured and predicted slopes.

    ``df``: the ``points`` table of :func:`kernelft.rates.sweep_sizes` with the
    :func:`kernelft.rates.predict_slope` columns added; used: label, n, ``loss``, predicted_slope,
    predicted_law, predicted_rate (predicted_low/high for a band; test_mse_oracle drawn as faint
    crosses if present). The measured slope is :func:`kernelft.rates.fit_rate` with its ``level``
    t-interval; the predicted line has the predicted slope and meets the measured line at the
    geometric mean of n.
    """
    _require(df, RATE_COLUMNS + [loss], "F6")
    theme()
    fig, ax = plt.subplots(figsize=(6.5, 4.8), constrained_layout=True)
    colors = sns.color_palette("colorblind", len(_labels(df)))
    for color, label in zip(colors, _labels(df)):
        part = df[df["label"] == label]
        first = part.iloc[0]
        rate = fit_rate(part["n"], part[loss], level)
        grid = np.geomspace(part["n"].min(), part["n"].max(), 50)
        center = np.exp(np.log(part["n"]).mean())
        at_center = np.exp(rate.intercept) * center**rate.slope
        predicted = {key: at_center * (grid / center) ** first[key] for key in _SLOPE_KEYS if key in part.columns}
        ax.scatter(part["n"], part[loss], color=color, s=22, zorder=3, label=f"{label} (at T̂)")
        if "test_mse_oracle" in part and loss != "test_mse_oracle":
            ax.scatter(part["n"], part["test_mse_oracle"], color=color, s=18, marker="x", alpha=0.5,
                       label=f"{label} (oracle T*)")
        ax.plot(grid, np.exp(rate.intercept) * grid**rate.slope, "-", color=color,
                label=f"measured slope {rate.slope:.2f} [{rate.ci_low:.2f}, {rate.ci_high:.2f}]")
        symbol = "α" if first["predicted_law"] == "power" else "c"
        ax.plot(grid, predicted["predicted_slope"], "--", color=color,
                label=f"predicted {first['predicted_slope']:.2f} "
                      f"({first['predicted_law']}, {symbol}={first['predicted_rate']:.3g})")
        band = [predicted[key] for key in ("predicted_low", "predicted_high") if key in predicted]
        if len(band) == 2 and not np.allclose(*band):
            ax.fill_between(grid, *band, color=color, alpha=0.12, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="training examples n", ylabel=f"test loss ({loss})",
           title=f"F6  test loss at the stopping time vs n ({int(level * 100)}% CI)")
    sizes = np.unique(df["n"])
    ax.set_xticks(sizes, [str(int(n)) for n in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    return fig


def _draw_run(ax: plt.Axes, run: pd.DataFrame, first: bool) -> None:
    """One repetition's curves and stop markers; the first one is dark and labelled, with vertical lines."""
    shade = 1.0 if first else 0.35
    ax.plot(run["step"], run["test_mse"], "-", color="0.15", lw=1.4, alpha=shade, label="test" if first else None)
    ax.plot(run["step"], run["train_mse"], "--", color="0.55", lw=1, alpha=shade, label="train" if first else None)
    if "val_mse" in run and run["val_mse"].notna().any():
        valid = run[run["val_mse"].notna()]
        ax.plot(valid["step"], valid["val_mse"], ":", color="tab:blue", lw=1, alpha=0.8 * shade,
                label="hold-out" if first else None)
    for column, (marker, color, name) in STOP_MARKS.items():
        stop = run[column].iloc[0]
        value = run.loc[run["step"] == stop, "test_mse"]
        if not value.empty:
            ax.plot([stop], [value.iloc[0]], marker, color=color, ms=9 if marker == "*" else 7, zorder=4,
                    label=name if first else None)
        if first:
            ax.axvline(stop, color=color, lw=0.8, alpha=0.5)


def plot_learning_curves(df: pd.DataFrame, panel: str | None = None, max_panels: int = 6) -> Figure:
    """F7: train/test MSE vs step with the rule's T̂, the oracle T* and the validation stop marked.

    ``df``: the ``curves`` table of :func:`kernelft.rates.sweep_sizes` (or one
    :class:`kernelft.earlystop.EarlyStopResult` curve with the stop columns added); used: step,
    train_mse, test_mse, stop_rule, stop_oracle, stop_validation, and the ``panel`` column (default
    "n" if present, else "label"; the first ``max_panels`` values get a panel each); ``rep`` (one line
    per repetition) and val_mse (dotted) are optional. The x axis is symlog (step 0 included); stops
    are markers on the test curve, with vertical lines for the first repetition; the y axis spans
    the test and hold-out losses (training MSE falls towards 0 once GD interpolates).
    """
    _require(df, CURVE_COLUMNS, "F7")
    panel = panel or ("n" if "n" in df.columns else "label")
    _require(df, [panel], "F7")
    keys = list(dict.fromkeys(df[panel]))[:max_panels]
    theme()
    ncols = min(3, len(keys))
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False,
                             constrained_layout=True)
    for ax, key in zip(axes.flat, keys):
        part = df[df[panel] == key]
        reps = list(dict.fromkeys(part["rep"])) if "rep" in part.columns else [None]
        for number, rep in enumerate(reps):
            run = part if rep is None else part[part["rep"] == rep]
            _draw_run(ax, run.sort_values("step"), first=number == 0)
        ax.set(xscale="symlog", yscale="log", xlabel="step t", ylabel="MSE", title=f"{panel} = {key}")
        ax.set_xlim(left=0)
        shown = part[[c for c in ("test_mse", "val_mse") if c in part.columns]].to_numpy(dtype=float)
        ax.set_ylim(np.nanmin(shown) / 3, max(np.nanmax(shown), part["train_mse"].max()) * 2)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("F7  learning curves of kernel GD: stopping rule vs oracle vs validation")
    return fig
