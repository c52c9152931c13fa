"""Figures F5–F7: eNTK spectra, rates at the stopping time, learning curves (Sun & Raskutti 2026).

Each function applies the shared :func:`kernelft.core.plotting.theme`, takes the DataFrame written beside the
figure (CSV) and returns a matplotlib Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from kernelft.core.plotting import theme
from kernelft.earlystop.rates import fit_rate, slope_verdict

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

    ``df`` is one or more :func:`kernelft.kernels.spectrum.spectrum_frame` tables concatenated; columns used:
    label, i, eigenvalue, power_fit, exp_fit, in_fit_range, alpha, power_r2, c, exp_r2, better_law
    (alpha_ci_low/high if present). A power law is straight on the left panel, an exponential law on
    the right one. Eigenvalues more than 10³ below the smallest fitted one are not drawn.
    """
    _require(df, SPECTRUM_COLUMNS, "F5")
    theme()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), constrained_layout=True)
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
    # Below both panels, one column per kernel (points, power fit, exponential fit): inside, it hid the head.
    handles, texts = axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncol=len(_labels(df)), fontsize=8,
               title="✓ better fit (higher log-space R²)", title_fontsize=8)
    fig.suptitle("F5  eNTK eigenvalue spectrum and decay-law fits")
    return fig


def plot_rates(df: pd.DataFrame, loss: str = "test_mse_rule", level: float = 0.95) -> Figure:
    """F6: test loss at the rule's stopping time vs n, log–log, with measured and predicted slopes.

    ``df``: the ``points`` table of :func:`kernelft.earlystop.rates.sweep_sizes` with the
    :func:`kernelft.earlystop.rates.predict_slope` columns added; used: label, n, ``loss``, predicted_slope,
    predicted_law, predicted_rate (predicted_low/high for a band; test_mse_oracle drawn as faint
    crosses if present; an optional ``panel`` column puts each of its values on its own axes, e.g.
    real labels beside the synthetic check, whose losses differ by decades; an optional ``series``
    column gives the short legend name of each label within its panel). The measured slope is
    :func:`kernelft.earlystop.rates.fit_rate` with its ``level`` t-interval; the predicted line has the
    predicted slope and meets the measured line at the geometric mean of n.

    One legend below the panels says what the marks and lines are (the same in every panel); each panel's
    own legend has one line per series: its colour, its measured slope with the interval and the verdict
    of :func:`kernelft.earlystop.rates.slope_verdict`; the predicted slope, shared by a panel's series
    when they share the spectrum, is in the panel's title.
    """
    _require(df, RATE_COLUMNS + [loss], "F6")
    theme()
    panels = list(dict.fromkeys(df["panel"])) if "panel" in df.columns else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 5.6), squeeze=False,
                             constrained_layout=True)
    colors = dict(zip(_labels(df), sns.color_palette("colorblind", len(_labels(df)))))
    for ax, key in zip(axes.flat, panels):
        part = df if key is None else df[df["panel"] == key]
        predictions = {_prediction_text(part[part["label"] == label].iloc[0]) for label in _labels(part)}
        shared = predictions.pop() if len(predictions) == 1 else None
        handles, texts = [], []
        for label in _labels(part):
            handle, text = _draw_rate(ax, part[part["label"] == label], label, colors[label], loss, level,
                                      with_prediction=shared is None)
            handles.append(handle)
            texts.append(text)
        title = "" if key is None else str(key)
        if shared is not None:
            title = f"{title}\n{shared}" if title else shared
        ax.set(xscale="log", yscale="log", xlabel="training examples n", ylabel=f"test loss ({loss})", title=title)
        sizes = np.unique(part["n"])
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(handles, texts, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1,
                  title=f"measured slope [{int(level * 100)} % CI]: verdict", title_fontsize=8)
    fig.legend(*_rate_keys(level), loc="outside lower center", ncol=4, fontsize=8)
    title = (f"F6  test loss at the stopping time vs n: measured slope ({int(level * 100)} % t-interval) vs "
             "the slope predicted from the eNTK spectrum")
    conventions = _conventions(df)
    if conventions:
        title += f"\n{conventions}"
    fig.suptitle(title)
    return fig


def _prediction_text(first: pd.Series) -> str:
    """``predicted −0.63 (power law, α = 1.70)`` for one label's first row."""
    symbol = "α" if first["predicted_law"] == "power" else "c"
    law, rate = first["predicted_law"], first["predicted_rate"]
    return f"predicted {first['predicted_slope']:.2f} ({law} law, {symbol} = {rate:.3g})"


def _rate_keys(level: float) -> tuple[list[Line2D], list[str]]:
    """Grey stand-ins for the marks and lines every F6 panel draws, and what they are."""
    grey = "0.35"
    handles = [
        Line2D([], [], color=grey, marker="o", ls="none", ms=5),
        Line2D([], [], color=grey, marker="x", ls="none", ms=5, alpha=0.6),
        Line2D([], [], color=grey, ls="-"),
        Line2D([], [], color=grey, ls="--"),
    ]
    texts = ["test loss at T̂ (one per draw)", "at the oracle T*", "measured slope (least squares)",
             "predicted slope (shaded: from the interval on α)"]
    return handles, texts


CONVENTION_TEXT = {
    "first_crossing": "T̂ = first step the RWY rule fires (as Sun & Raskutti 2026 state it)",
    "before_crossing": "T̂ = the step before the RWY rule fires (RWY 2014, the authors' code)",
}
R2_TARGET_TEXT = {"labels": "R² from the noisy labels", "pseudo_truth": "R² from the held-out pseudo-truth"}


def _conventions(df: pd.DataFrame) -> str:
    """The stopping convention and R² target of the rows that carry them (``stopping_convention``,
    ``r2_target`` columns; "given" R², the synthetic check's, is left out), e.g. for a title."""
    parts = []
    for column, texts in (("stopping_convention", CONVENTION_TEXT), ("r2_target", R2_TARGET_TEXT)):
        if column in df.columns:
            values = [v for v in dict.fromkeys(df[column].dropna()) if v in texts]
            parts += [texts[v] for v in values]
    return "; ".join(parts)


def _draw_rate(ax: plt.Axes, part: pd.DataFrame, label: str, color, loss: str, level: float,
               with_prediction: bool = False) -> tuple[Line2D, str]:
    """Points at T̂ (and T*), the measured log–log line and the predicted slope of one label; returns the
    series' legend handle and text (name, measured slope and interval, verdict; the prediction too when
    ``with_prediction``)."""
    first = part.iloc[0]
    name = first["series"] if "series" in part.columns and isinstance(first["series"], str) else label
    rate = fit_rate(part["n"], part[loss], level)
    verdict = slope_verdict(first["predicted_slope"], rate.ci_low, rate.ci_high)
    grid = np.geomspace(part["n"].min(), part["n"].max(), 50)
    center = np.exp(np.log(part["n"]).mean())
    at_center = np.exp(rate.intercept) * center**rate.slope
    predicted = {key: at_center * (grid / center) ** first[key] for key in _SLOPE_KEYS if key in part.columns}
    ax.scatter(part["n"], part[loss], color=color, s=22, zorder=3)
    if "test_mse_oracle" in part and loss != "test_mse_oracle":
        ax.scatter(part["n"], part["test_mse_oracle"], color=color, s=18, marker="x", alpha=0.5)
    ax.plot(grid, np.exp(rate.intercept) * grid**rate.slope, "-", color=color)
    ax.plot(grid, predicted["predicted_slope"], "--", color=color)
    band = [predicted[key] for key in ("predicted_low", "predicted_high") if key in predicted]
    if len(band) == 2 and not np.allclose(*band):
        ax.fill_between(grid, *band, color=color, alpha=0.12, lw=0)
    text = f"{name}: {rate.slope:.2f} [{rate.ci_low:.2f}, {rate.ci_high:.2f}]: {verdict}"
    if with_prediction:
        text += f" ({_prediction_text(first)})"
    return Line2D([], [], color=color, marker="o", ms=5), text


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

    ``df``: the ``curves`` table of :func:`kernelft.earlystop.rates.sweep_sizes` (or one
    :class:`kernelft.earlystop.kernel_gd.EarlyStopResult` curve with the stop columns added); used: step,
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
    _draw_curve_panels(list(axes.flat), df, panel, keys)
    fig.suptitle("F7  learning curves of kernel GD: stopping rule vs oracle vs validation")
    return fig


def _draw_curve_panels(axes: list[plt.Axes], df: pd.DataFrame, panel: str, keys: list,
                       finetune: pd.DataFrame | None = None) -> None:
    """One kernel-GD panel per key of ``panel`` (all repetitions), with the real fine-tuning runs of
    that key (``finetune`` rows: step, test_mse, rep) as markers; spare axes hidden; one legend below."""
    for ax, key in zip(axes, keys):
        part = df[df[panel] == key]
        reps = list(dict.fromkeys(part["rep"])) if "rep" in part.columns else [None]
        for number, rep in enumerate(reps):
            run = part if rep is None else part[part["rep"] == rep]
            _draw_run(ax, run.sort_values("step"), first=number == 0)
        shown = part[[c for c in ("test_mse", "val_mse") if c in part.columns]].to_numpy(dtype=float)
        low, high = np.nanmin(shown), max(np.nanmax(shown), part["train_mse"].max())
        runs = finetune[finetune[panel] == key] if finetune is not None else pd.DataFrame()
        for number, (_, run) in enumerate(runs.groupby("rep", sort=True) if not runs.empty else []):
            run = run.sort_values("step")
            ax.plot(run["step"], run["test_mse"], "o-", color="tab:red", ms=3.5, lw=1, alpha=0.9,
                    label="real FT, test (same η, loss)" if number == 0 else None)
            low, high = min(low, run["test_mse"].min()), max(high, run["test_mse"].max())
        ax.set(xscale="symlog", yscale="log", xlabel="step t", ylabel="MSE", title=f"{panel} = {key}")
        ax.set_xlim(left=0)
        ax.set_ylim(low / 3, high * 2)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    # One row below the panels: inside the first panel it hid that panel's real-FT markers.
    handles, texts = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, texts, loc="outside lower center", ncol=len(texts), fontsize=8)


FINETUNE_COLUMNS = ["n", "rep", "step", "test_mse"]


def plot_learning_curves_with_finetune(df: pd.DataFrame, max_panels: int = 4) -> Figure:
    """F7: kernel-GD learning curves with T̂, T* and the validation stop, and real fine-tuning on the
    same draws with the same step η and squared loss (:mod:`kernelft.earlystop.finetune`).

    ``df`` is the long F7 table with a ``source`` column: rows ``kernel_gd`` carry the columns of
    :func:`plot_learning_curves` (one panel per n, the first ``max_panels`` sizes); rows ``finetune``
    carry n, rep, step and test_mse (against the kernel rows' test target), drawn as red markers in
    the panel of their n. Both run full-batch steps of size η on ½ mean (f − y)², so their step
    axes agree; where the red markers follow the black line, the network trains like its kernel.
    """
    _require(df, ["source"], "F7")
    kernel, finetune = (df[df["source"] == source].dropna(axis=1, how="all") for source in ("kernel_gd", "finetune"))
    if kernel.empty or finetune.empty:
        raise ValueError(f"F7: needs rows of source kernel_gd and finetune; found {sorted(set(df['source']))}")
    _require(kernel, CURVE_COLUMNS + ["n"], "F7 (kernel_gd rows)")
    _require(finetune, FINETUNE_COLUMNS, "F7 (finetune rows)")
    theme()
    keys = sorted(set(kernel["n"]))[:max_panels]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * max(len(keys), 2), 4.2), squeeze=False,
                             constrained_layout=True)
    _draw_curve_panels(list(axes.flat), kernel, "n", keys, finetune)
    title = "F7  kernel GD with the eNTK vs real fine-tuning: rule T̂, oracle T*, validation stop"
    if "label" in kernel.columns:
        title += f"\n{', '.join(map(str, dict.fromkeys(kernel['label'])))}; test MSE of the logit difference"
    conventions = _conventions(kernel)
    if conventions:
        title += f"\n{conventions}"
    fig.suptitle(title, fontsize=11)
    return fig
