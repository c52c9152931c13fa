"""Figure F8: variable importance by early-stopped warm starts vs retraining vs truth (Sun & Raskutti, AISTATS 2025).

One function, :func:`plot_vi_simulation`, takes the F8 table (:func:`kernelft.vi.simulation.summarize`) and
returns the figure. Every VI shown is the test-loss difference (columns ``vi_loss_*``, :data:`ESTIMATE`).
Top row, one panel per ρ: the VI estimate of X1 against n for every model and
method, with the truth 1.5²(1 − ρ²). Bottom row: X1 against ρ at the largest n (truth as a line);
the null features X4–X6 at the largest n (pooled over ρ); wall time per reduced model against n,
with the measured speed-up of warm start over retraining in the legend.
"""

from __future__ import annotations

import matplotlib.patches
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from kernelft.core.plotting import theme

METHOD_STYLE = {
    "warm_start": {"color": "#1f77b4", "label": "warm start (early stopped)"},
    "retrain": {"color": "#ff7f0e", "label": "retrain from scratch"},
    "drop": {"color": "#2ca02c", "label": "drop only (no retraining)"},
    "full": {"color": "#7f7f7f", "label": "full model fit"},
}
MODEL_STYLE = {
    "network": {"linestyle": "-", "marker": "o", "label": "network"},
    "boosting": {"linestyle": "--", "marker": "s", "label": "CatBoost trees"},
}
TRUTH_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.6, "label": "truth"}
ESTIMATE = "vi_loss"
"""The VI estimate the figures draw: the test-loss difference (:mod:`kernelft.vi.simulation`)."""
ESTIMATE_LABEL = "test-loss difference"
MEAN, LO, HI = f"{ESTIMATE}_mean", f"{ESTIMATE}_lo", f"{ESTIMATE}_hi"
COLUMNS = ["model", "method", "feature", "rho", "n", "truth", MEAN, LO, HI, "seconds_mean"]


def _series(ax, frame: pd.DataFrame, x: str, model: str, method: str, offset: float = 0.0, log_x: bool = False) -> None:
    """Mean with the across-repetition interval as error bars, one (model, method) series."""
    frame = frame.sort_values(x)
    xs = frame[x].to_numpy(dtype=float)
    xs = xs * (1 + offset) if log_x else xs + offset
    yerr = np.vstack([frame[MEAN] - frame[LO], frame[HI] - frame[MEAN]]).clip(min=0)
    ax.errorbar(xs, frame[MEAN], yerr=yerr, color=METHOD_STYLE[method]["color"],
                linestyle=MODEL_STYLE[model]["linestyle"], marker=MODEL_STYLE[model]["marker"],
                markersize=4, capsize=2, linewidth=1.2)


def _offsets(keys: list[tuple[str, str]], width: float) -> dict[tuple[str, str], float]:
    """Small horizontal dodges so overlapping error bars stay visible."""
    centre = (len(keys) - 1) / 2
    return {key: (i - centre) * width for i, key in enumerate(keys)}


def plot_vi_simulation(table: pd.DataFrame, feature: int = 1, null_features: tuple[int, ...] = (4, 5, 6)) -> plt.Figure:
    """F8 from the summary table of :func:`kernelft.vi.simulation.summarize` (needs :data:`COLUMNS`); returns the
    Figure."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"F8: table lacks columns {missing}; has {list(table.columns)}")
    theme()
    vi = table[table["feature"] > 0]
    rhos = sorted(vi["rho"].unique())
    ns = sorted(vi["n"].unique())
    n_max = max(ns)
    interval = float(table["interval"].iloc[0]) if "interval" in table else float("nan")
    keys = [(mo, me) for mo in MODEL_STYLE for me in ("warm_start", "retrain", "drop")
            if ((vi["model"] == mo) & (vi["method"] == me)).any()]
    target = vi[vi["feature"] == feature]

    fig = plt.figure(figsize=(max(4.2 * len(rhos), 13.0), 8.0), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.05])
    top_axes = np.atleast_1d(top.subplots(1, len(rhos), sharey=True))
    dodge_n = _offsets(keys, 0.025)
    for ax, rho in zip(top_axes, rhos):
        cell = target[target["rho"] == rho]
        for key in keys:
            _series(ax, cell[(cell["model"] == key[0]) & (cell["method"] == key[1])], "n", *key,
                    offset=dodge_n[key], log_x=True)
        ax.axhline(cell["truth"].iloc[0], **{k: v for k, v in TRUTH_STYLE.items() if k != "label"})
        ax.set_xscale("log")
        ax.set_xlim(min(ns) / 1.25, max(ns) * 1.25)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_title(f"X{feature}, ρ = {rho:g} (truth {cell['truth'].iloc[0]:.3g})")
        ax.set_xlabel("sample size n")
    top_axes[0].set_ylabel(f"VI of X{feature} ({ESTIMATE_LABEL})")
    top.suptitle(f"VI of X{feature} vs n: mean over repetitions, bars = central {interval:.0%} range", fontsize=10)

    ax_rho, ax_null, ax_time = bottom.subplots(1, 3)
    at_max = target[target["n"] == n_max]
    dodge_rho = _offsets(keys, 0.012)
    for key in keys:
        _series(ax_rho, at_max[(at_max["model"] == key[0]) & (at_max["method"] == key[1])], "rho", *key,
                offset=dodge_rho[key])
    truth = at_max.groupby("rho")["truth"].first()
    scale = truth.to_numpy() / (1 - truth.index.to_numpy() ** 2)
    if np.allclose(scale, scale[0]):  # the design's closed form β_j² (1 − ρ²): draw it as a curve
        grid = np.linspace(min(rhos), max(rhos), 100)
        ax_rho.plot(grid, scale[0] * (1 - grid**2), **TRUTH_STYLE)
    else:
        ax_rho.plot(truth.index, truth.to_numpy(), **TRUTH_STYLE)
    ax_rho.plot(truth.index, truth.to_numpy(), linestyle="none", marker="x", color="black")
    ax_rho.set_xlabel("correlation ρ of X1 and X2")
    ax_rho.set_ylabel(f"VI of X{feature} ({ESTIMATE_LABEL})")
    ax_rho.set_title(f"X{feature} vs ρ at n = {n_max}")

    nulls = vi[(vi["n"] == n_max) & (vi["feature"].isin(null_features))]
    pooled = nulls.groupby(["model", "method", "feature"]).agg(
        **{MEAN: (MEAN, "mean"), LO: (LO, "min"), HI: (HI, "max")}).reset_index()
    dodge_f = _offsets(keys, 0.12)
    for key in keys:
        part = pooled[(pooled["model"] == key[0]) & (pooled["method"] == key[1])].sort_values("feature")
        yerr = np.vstack([part[MEAN] - part[LO], part[HI] - part[MEAN]]).clip(min=0)
        ax_null.errorbar(part["feature"] + dodge_f[key], part[MEAN], yerr=yerr, linestyle="none",
                         color=METHOD_STYLE[key[1]]["color"], marker=MODEL_STYLE[key[0]]["marker"],
                         markersize=4, capsize=2)
    ax_null.axhline(0.0, **{k: v for k, v in TRUTH_STYLE.items() if k != "label"})
    ax_null.set_xticks(list(null_features), [f"X{j}" for j in null_features])
    ax_null.set_xlabel("null feature (true VI = 0)")
    ax_null.set_ylabel(f"VI ({ESTIMATE_LABEL}; can be < 0)")
    ax_null.set_title(f"Null features, n = {n_max}, all ρ")

    times = table[table["method"] != "drop"].groupby(["model", "method", "n"])["seconds_mean"].mean().reset_index()
    speed_labels = {}
    for model in MODEL_STYLE:
        part = times[times["model"] == model]
        for method in ("full", "retrain", "warm_start"):
            line = part[part["method"] == method].sort_values("n")
            if line.empty:
                continue
            ax_time.plot(line["n"], line["seconds_mean"], color=METHOD_STYLE[method]["color"],
                         linestyle=MODEL_STYLE[model]["linestyle"], marker=MODEL_STYLE[model]["marker"], markersize=4)
        warm = part[part["method"] == "warm_start"]["seconds_mean"].sum()
        retrain = part[part["method"] == "retrain"]["seconds_mean"].sum()
        if warm > 0:
            speed_labels[model] = retrain / warm
    ax_time.set_xscale("log")
    ax_time.set_yscale("log")
    ax_time.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
    for formatter in (ax_time.yaxis.set_major_formatter, ax_time.yaxis.set_minor_formatter):
        formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax_time.set_xlim(min(ns) / 1.25, max(ns) * 1.25)
    ax_time.set_xticks(ns, [str(n) for n in ns])
    ax_time.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax_time.set_xlabel("sample size n")
    ax_time.set_ylabel("seconds per fit (mean over ρ, features)")
    speed_text = "\n".join(f"{MODEL_STYLE[m]['label']}: {s:.1f}×" for m, s in speed_labels.items())
    ax_time.set_title("Wall time per fit")
    ax_time.text(0.03, 0.97, f"retrain / warm start\n{speed_text}", transform=ax_time.transAxes, va="top",
                 fontsize="small", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})

    handles = [plt.Line2D([], [], color=METHOD_STYLE[m]["color"], linewidth=2, label=METHOD_STYLE[m]["label"])
               for m in ("warm_start", "retrain", "drop", "full")]
    handles += [plt.Line2D([], [], color="0.3", linestyle=s["linestyle"], marker=s["marker"], label=s["label"])
                for m, s in MODEL_STYLE.items() if (vi["model"] == m).any()]
    handles.append(plt.Line2D([], [], **TRUTH_STYLE))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return fig


# --- F14: VI in full ------------------------------------------------------------------------------

F14_PANELS = ("truth", "coverage", "shapley", "runtime", "highdim", "real", "rate")
MODEL_NAMES = {"network": "network", "boosting": "CatBoost trees"}


def _panel_rows(table: pd.DataFrame, panel: str) -> pd.DataFrame:
    return table[table["panel"] == panel]


def _dodged(ax, part: pd.DataFrame, x: np.ndarray, keys: list[tuple[str, str]], width: float) -> None:
    """Estimate with [lo, hi] bars per (model, method), dodged around integer positions ``x``."""
    dodge = _offsets(keys, width)
    for key in keys:
        rows = part[(part["model"] == key[0]) & (part["method"] == key[1])].sort_values("feature")
        if rows.empty:
            continue
        pos = x[: len(rows)] if "position" not in rows else rows["position"].to_numpy()
        lo = (rows["estimate"] - rows["lo"]).fillna(0).clip(lower=0)
        hi = (rows["hi"] - rows["estimate"]).fillna(0).clip(lower=0)
        ax.errorbar(pos + dodge[key], rows["estimate"], yerr=np.vstack([lo, hi]), linestyle="none",
                    color=METHOD_STYLE[key[1]]["color"], marker=MODEL_STYLE[key[0]]["marker"], markersize=4,
                    capsize=2)


def _keys(part: pd.DataFrame) -> list[tuple[str, str]]:
    return [(mo, me) for mo in MODEL_STYLE for me in ("warm_start", "retrain", "drop")
            if ((part["model"] == mo) & (part["method"] == me)).any()]


def _truth_panel(ax, part: pd.DataFrame) -> None:
    for key in _keys(part):
        rows = part[(part["model"] == key[0]) & (part["method"] == key[1])]
        yerr = np.vstack([rows["estimate"] - rows["lo"], rows["hi"] - rows["estimate"]]).clip(min=0)
        ax.errorbar(rows["truth"], rows["estimate"], yerr=yerr, linestyle="none", color=METHOD_STYLE[key[1]]["color"],
                    marker=MODEL_STYLE[key[0]]["marker"], markersize=4, capsize=2, alpha=0.85)
    top = max(part["truth"].max(), part["estimate"].max()) * 1.05
    ax.plot([0, top], [0, top], **{k: v for k, v in TRUTH_STYLE.items() if k != "label"})
    ax.set_xlabel("true VI  β_j²/(Σ⁻¹)_jj")
    ax.set_ylabel(f"VI, {ESTIMATE_LABEL} (mean over repetitions)")
    ax.set_title(f"Estimates vs truth, all features and ρ, n = {int(part['n'].max())}")


def _coverage_panel(ax, part: pd.DataFrame) -> None:
    level = float(part["level"].iloc[0])
    keys = _keys(part)
    dodge = _offsets(keys, 0.012)
    for key in keys:
        rows = part[(part["model"] == key[0]) & (part["method"] == key[1])].sort_values("rho")
        ax.errorbar(rows["rho"] + dodge[key], rows["estimate"], yerr=1.96 * rows["coverage_se"],
                    color=METHOD_STYLE[key[1]]["color"], linestyle=MODEL_STYLE[key[0]]["linestyle"],
                    marker=MODEL_STYLE[key[0]]["marker"], markersize=4, capsize=2)
    ax.axhline(level, **{k: v for k, v in TRUTH_STYLE.items() if k != "label"})
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("correlation ρ of X1 and X2")
    ax.set_ylabel(f"coverage of the {level:.0%} interval")
    reps = int(part["repetitions"].max())
    ax.set_title(f"Interval coverage of VI(X1), n = {int(part['n'].max())}, {reps} data sets")


def _shapley_panel(ax, part: pd.DataFrame) -> None:
    features = sorted(part["feature"].unique())
    x = np.arange(1, len(features) + 1, dtype=float)
    _dodged(ax, part, x, _keys(part), 0.1)
    exact = part.groupby("feature")["truth"].first()
    ax.scatter(x, exact.loc[features], marker="_", s=600, color="black", linewidths=2, zorder=3)
    oracle = part[part["method"] == "oracle"].set_index("feature")["estimate"]
    if not oracle.empty:
        ax.scatter(x + 0.4, oracle.loc[features], marker="*", s=70, color="0.35", zorder=4,
                   label="oracle: true regression functions,\nsame test split and subsets")
        ax.legend(fontsize="small", loc="upper right")
    ax.set_xticks(x, [f"X{int(f)}" for f in features])
    ax.set_ylabel("Shapley value φ_j (MSE value)")
    samples = int(part["samples"].max())
    ax.set_title(f"Shapley: estimates (±1.96 MC se) vs exact (—), {samples} subsets/feature")


def _runtime_panel(ax, part: pd.DataFrame) -> None:
    groups = [(study, model) for study in part["study"].unique() for model in MODEL_STYLE
              if ((part["study"] == study) & (part["model"] == model)).any()]
    methods = [m for m in ("drop", "warm_start", "retrain") if (part["method"] == m).any()]
    width = 0.8 / len(methods)
    for g, (study, model) in enumerate(groups):
        rows = part[(part["study"] == study) & (part["model"] == model)].set_index("method")
        for i, method in enumerate(methods):
            seconds = max(float(rows.loc[method, "seconds"]), 1e-3)
            ax.bar(g + (i - (len(methods) - 1) / 2) * width, seconds, width=width, color=METHOD_STYLE[method]["color"],
                   hatch=None if model == "network" else "//", edgecolor="white")
        ratio = rows.loc["retrain", "seconds"] / rows.loc["warm_start", "seconds"]
        ax.text(g, float(rows["seconds"].max()) * 1.6, f"{ratio:.1f}×", ha="center", fontsize="small")
    ax.set_yscale("log")
    ax.set_ylim(top=part["seconds"].max() * 6)
    ax.set_xticks(range(len(groups)), [f"{study}\n{MODEL_NAMES[model]}" for study, model in groups], fontsize="small")
    ax.set_ylabel("total seconds (log scale)")
    ax.set_title("Wall time per method (label: retrain / warm start)")


def _highdim_panel(ax, part: pd.DataFrame, shown: int = 10) -> None:
    """The first ``shown`` features the study estimated (all p, or ``vi.highdim.features``) vs truth."""
    features = sorted(part["feature"].unique())[:shown]
    position = {f: i + 1.0 for i, f in enumerate(features)}
    part = part[part["feature"].isin(features)]
    part = part.assign(position=part["feature"].map(position), lo=part["estimate"], hi=part["estimate"])
    x = np.arange(1, len(features) + 1, dtype=float)
    _dodged(ax, part, x, _keys(part), 0.1)
    truth = part.groupby("feature")["truth"].first()
    ax.scatter(truth.index.map(position), truth.to_numpy(), marker="_", s=400, color="black", linewidths=2, zorder=3)
    wide = max(part["estimate"].abs().max(), truth.abs().max()) > 1.0
    if wide:
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(x, [f"X{int(f)}" for f in features])
    ax.set_xlim(0.4, len(features) + 0.6)
    ax.set_ylabel(f"VI, {ESTIMATE_LABEL}" + (" (symlog)" if wide else ""))
    p = int(part["p"].max()) if "p" in part and part["p"].notna().any() else None
    design = f"{part['design'].iloc[0]} design, " if "design" in part and part["design"].notna().any() else ""
    ax.set_title(f"p = {p} ({design}{len(features)} features shown) vs truth (—), n = {int(part['n'].max())}")


def _real_panel(ax, part: pd.DataFrame) -> None:
    names = list(dict.fromkeys(part.sort_values("feature")["feature_name"]))
    x = np.arange(1, len(names) + 1, dtype=float)
    _dodged(ax, part, x, _keys(part), 0.12)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0)
    level = float(part["level"].iloc[0]) if "level" in part and part["level"].notna().any() else 0.95
    ax.set_ylabel(f"VI (share of Var Y), {ESTIMATE_LABEL}")
    ax.set_title(f"Real data: {part['dataset'].iloc[0]} (n = {int(part['n'].iloc[0])}), {level:.0%} intervals")


def _rate_panel(ax, part: pd.DataFrame) -> None:
    ax.scatter(part["n"], part["estimate"], color=METHOD_STYLE["warm_start"]["color"], s=18, alpha=0.7,
               label="test MSE at the RWY stop")
    first = part.iloc[0]
    ns = np.array(sorted(part["n"].unique()), dtype=float)
    # both lines pass through the geometric means of (n, MSE), where the least-squares line passes
    anchor, centre = np.exp(np.log(part["estimate"]).mean()), np.exp(np.log(part["n"]).mean())
    for slope, style, label in ((first["slope"], "-", f"measured slope {first['slope']:.2f} "
                                 f"[{first['ci_low']:.2f}, {first['ci_high']:.2f}]"),
                                (first["predicted_slope"], ":", f"predicted {first['predicted_slope']:.2f} "
                                 f"({first['predicted_law']} decay)")):
        ax.plot(ns, anchor * (ns / centre) ** slope, color="black", linestyle=style, linewidth=1.3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ns, [str(int(n)) for n in ns])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("training size n")
    ax.set_ylabel("test MSE vs f* at the stopping time")
    ax.set_title("Symmetric-tree boosting kernel: rate check")
    ax.legend(fontsize="small", loc="lower left")


def plot_vi_full(table: pd.DataFrame) -> plt.Figure:
    """F14 from the table of :func:`kernelft.vi.full.f14_table` (a ``panel`` column); returns the Figure.

    Panels: estimates vs truth (F8 design, network and trees); interval coverage of VI(X1) per ρ;
    Shapley estimates vs exact; wall time per method (log scale); p = 100 estimates vs truth; the
    real-data VI with intervals; the rate check of the symmetric-tree kernel; the legend."""
    missing = [p for p in F14_PANELS if not (table.get("panel", pd.Series(dtype=str)) == p).any()]
    if missing:
        raise ValueError(f"F14: table lacks panel(s) {missing}")
    theme()
    fig, axes = plt.subplots(2, 4, figsize=(23.0, 10.0), layout="constrained")
    draw = (_truth_panel, _coverage_panel, _shapley_panel, _runtime_panel, _highdim_panel, _real_panel, _rate_panel)
    for ax, panel, fn in zip(axes.flat, F14_PANELS, draw):
        fn(ax, _panel_rows(table, panel))
    legend_ax = axes.flat[-1]
    legend_ax.axis("off")
    handles = [plt.Line2D([], [], color=METHOD_STYLE[m]["color"], linewidth=2, label=METHOD_STYLE[m]["label"])
               for m in ("warm_start", "retrain", "drop")]
    handles += [plt.Line2D([], [], color="0.3", linestyle=MODEL_STYLE[m]["linestyle"], marker=MODEL_STYLE[m]["marker"],
                           label=MODEL_NAMES[m]) for m in MODEL_STYLE]
    handles.append(plt.Line2D([], [], **{**TRUTH_STYLE, "label": "truth / nominal level"}))
    handles.append(plt.Line2D([], [], color="black", marker="_", markersize=14, linestyle="none",
                              label="exact / true value"))
    handles.append(matplotlib.patches.Patch(facecolor="0.6", hatch="//", edgecolor="white", label="hatched bar: trees"))
    legend_ax.legend(handles=handles, loc="center", frameon=False, fontsize="medium")
    return fig
