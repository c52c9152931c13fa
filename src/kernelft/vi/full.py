"""Variable importance in full (F14): interval coverage, Shapley values, p = 100, real data.

The studies of Sun & Raskutti (AISTATS 2025) beyond the F8 simulation, each one function that
returns a long table in the row format of :func:`kernelft.vi.simulation.model_rows`:

- :func:`run_coverage`: repeated data sets at one ρ; the Wald interval v̂ ± z·sd(d)/√n_test of X1
  (:mod:`kernelft.vi.intervals`) and whether it covers the truth 1.5²(1 − ρ²);
- :func:`run_shapley`: sampled-subset Shapley values by warm start, retraining and drop-only against
  the exact values of the linear Gaussian model (:mod:`kernelft.vi.shapley`);
- :func:`run_highdim`: p = 100 with five non-zero coefficients, VI of every feature, wall time of
  warm start vs retraining for all p features (reference code ``hdr_nn.py``, ``hdr_tree.py``);
- :func:`run_real`: a real data set (scikit-learn's diabetes by default; the paper's gas turbine as
  a user-provided CSV), VI of every feature with intervals.

:func:`f14_table` gathers them (and the F8 summary) into the F14 table; :func:`headline` picks the
numbers the report quotes.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from kernelft.vi import datasets, designs, intervals, shapley, simulation

log = logging.getLogger(__name__)

STREAMS = {"coverage": 1, "shapley": 2, "highdim": 3, "real": 4}
"""Random-stream tags (:func:`kernelft.vi.simulation.replicate_rng`): each study draws its own data sets."""


def _limited(threads: int):
    torch.set_num_threads(threads)
    return threadpool_limits(limits=threads)


def run_coverage(
    rho: float, section: dict[str, Any], cfg: simulation.VIConfig, seed: int, threads: int = 1
) -> pd.DataFrame:
    """``section["repetitions"]`` data sets of size ``section["n"]`` at correlation ρ; VI of X1 by
    ``section["methods"]`` for both models, one row per (repetition, model, method) with ``vi_loss``,
    ``vi_loss_se`` and ``truth`` (intervals and coverage: :func:`kernelft.vi.intervals.coverage`)."""
    n, reps = int(section["n"]), int(section["repetitions"])
    methods = tuple(section.get("methods", ("warm_start", "drop")))
    rows: list[dict[str, Any]] = []
    with _limited(threads):
        for rep in range(reps):
            rows += simulation.run_replicate(rho, n, rep, cfg, seed, threads, features=(0,), methods=methods,
                                     stream=STREAMS["coverage"])
    return pd.DataFrame(rows).assign(study="coverage")


def _simulated_split(n: int, design, cfg: simulation.VIConfig, seed: int, stream: int):
    rng = simulation.replicate_rng(seed, n, 0, stream)
    x, y = design.simulate(n, rng)
    data = datasets.split(x, y, rng, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)
    return data, rng.integers(0, 2**31 - 1, size=design.p + 1)


def shapley_design(section: dict[str, Any], cfg: simulation.VIConfig):
    """The data design of the Shapley study (``vi.shapley``): ``design`` linear (Y = Xᵀβ + ε) or logistic
    (Y = σ(Xᵀβ) + ε, the reference's), with β = ``beta`` (null: ``vi.beta``), correlation ``rho`` and the
    noise sd ``vi.noise_sd``."""
    beta = tuple(float(b) for b in (section.get("beta") or cfg.beta))
    kind = section.get("design", "linear")
    if kind == "linear":
        return designs.LinearDesign(beta, float(section["rho"]), cfg.noise_sd)
    if kind == "logistic":
        return designs.LogisticDesign(beta, float(section["rho"]), cfg.noise_sd)
    raise ValueError(f"config key vi.shapley.design: {kind!r} is not one of ['linear', 'logistic']")


def run_shapley(section: dict[str, Any], cfg: simulation.VIConfig, seed: int, threads: int = 1) -> pd.DataFrame:
    """Shapley values of every feature of the study's design (:func:`shapley_design`) at ρ = ``section["rho"]``
    (n = ``section["n"]``), ``section["samples"]`` subsets per feature (the same draws for every model and method).

    Rows: per (model, method, feature) ``phi``, ``phi_se``, ``exact`` (the design's population Shapley
    value), plus model = method = ``oracle`` (the same estimator with the true regression functions,
    :func:`kernelft.vi.shapley.oracle_shapley`); per (model, method) with feature 0 the total ``seconds``,
    ``steps`` and ``fits`` (kept sets fitted)."""
    n, rho, samples = int(section["n"]), float(section["rho"]), int(section["samples"])
    methods = tuple(section.get("methods", simulation.METHODS))
    design = shapley_design(section, cfg)
    cfg = dataclasses.replace(cfg, beta=design.beta)
    p = design.p
    data, init_seeds = _simulated_split(n, design, cfg, seed, STREAMS["shapley"])
    exact = design.exact_shapley()
    draw_rng = np.random.default_rng(np.random.SeedSequence([seed, n, STREAMS["shapley"], 1]))
    subsets = {j: shapley.sample_subsets(p, j, samples, draw_rng) for j in range(p)}
    learners = {"network": simulation.network_learner(cfg, p, init_seeds)}
    if cfg.boosting:
        learners["boosting"] = simulation.boosting_learner(cfg, int(init_seeds[0]), threads)
    rows: list[dict[str, Any]] = []
    with _limited(threads):
        for model, learn in learners.items():
            full = learn(data.x_train, data.y_train, data.x_val, data.y_val, None, 0)
            per_feature, cost = shapley.estimate_shapley(learn, data, full, subsets, methods, cfg.drop_mean)
            rows += [{**r, "model": model, "exact": float(exact[r["feature"] - 1])} for r in per_feature]
            rows += [{**r, "model": model, "feature": 0} for r in cost]
            rows.append({"model": model, "method": "full", "feature": 0, "seconds": full.seconds, "steps": full.steps,
                         "fits": 1})
    rows += [{**r, "model": "oracle", "exact": float(exact[r["feature"] - 1])}
             for r in shapley.oracle_shapley(data, design.regression, subsets)]
    return pd.DataFrame(rows).assign(study="shapley", rho=rho, n=n, design=section.get("design", "linear"))


def highdim_config(section: dict[str, Any], cfg: simulation.VIConfig) -> simulation.VIConfig:
    """The VI settings of the p = 100 study: sparse β, its own network width and CatBoost overrides."""
    params = {**cfg.boosting_params, **section.get("boosting_params", {})}
    return dataclasses.replace(cfg, beta=datasets.sparse_beta(section["nonzero"], int(section["p"])),
                               width=int(section.get("width", cfg.width)), boosting_params=params)


def highdim_design(section: dict[str, Any], cfg: simulation.VIConfig, seed: int):
    """The data design of the p = 100 study (``vi.highdim.design``): None for the linear design of
    ``cfg`` (:func:`kernelft.vi.simulation.run_replicate`'s default), or the two-layer teacher network
    of the reference (:func:`kernelft.vi.designs.teacher`, settings ``vi.highdim.teacher``) drawn once
    per study from its own random stream, its weight means the sparse β of :func:`highdim_config`."""
    kind = section.get("design", "linear")
    if kind == "linear":
        return None
    if kind == "teacher":
        rng = np.random.default_rng(np.random.SeedSequence([seed, STREAMS["highdim"], 1]))
        return designs.teacher(cfg.beta, float(section["rho"]), section.get("teacher") or {}, rng)
    raise ValueError(f"config key vi.highdim.design: {kind!r} is not one of ['linear', 'teacher']")


def run_highdim(section: dict[str, Any], cfg: simulation.VIConfig, seed: int, threads: int = 1) -> pd.DataFrame:
    """VI of the ``section["features"]`` (1-based; null = all p) by every method for both models,
    ``section["repetitions"]`` data sets of ``section["design"]`` (:func:`highdim_design`)."""
    hd = highdim_config(section, cfg)
    design = highdim_design(section, hd, seed)
    chosen = section.get("features")
    if chosen is not None:
        bad = [j for j in chosen if not 1 <= int(j) <= len(hd.beta)]
        if bad:
            raise ValueError(f"config key vi.highdim.features: {bad} outside 1..p = {len(hd.beta)}")
    features = None if chosen is None else tuple(int(j) - 1 for j in chosen)
    rows: list[dict[str, Any]] = []
    with _limited(threads):
        for rep in range(int(section.get("repetitions", 1))):
            rows += simulation.run_replicate(float(section["rho"]), int(section["n"]), rep, hd, seed, threads,
                                             features=features, stream=STREAMS["highdim"], design=design)
    return pd.DataFrame(rows).assign(study="highdim", p=len(hd.beta), design=section.get("design", "linear"))


def run_real(section: dict[str, Any], cfg: simulation.VIConfig, seed: int, threads: int = 1) -> pd.DataFrame:
    """VI of every feature of a real data set (:func:`kernelft.vi.datasets.load_real`) by every method,
    for both models, on one random split; ``truth`` is unknown (NaN). Adds ``feature_name``."""
    real = datasets.load_real(section["source"], section.get("target"), section.get("features"))
    rng = simulation.replicate_rng(seed, len(real.y), 0, STREAMS["real"])
    data = datasets.split(real.x, real.y, rng, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)
    p = real.x.shape[1]
    init_seeds = rng.integers(0, 2**31 - 1, size=p + 1)
    truth = np.full(p, np.nan)
    base = {"rho": np.nan, "n": len(real.y), "rep": 0}
    with _limited(threads):
        learner = simulation.network_learner(cfg, p, init_seeds)
        rows = simulation.model_rows("network", learner, data, truth, base, drop_mean=cfg.drop_mean)
        if cfg.boosting:
            learner = simulation.boosting_learner(cfg, int(init_seeds[0]), threads)
            rows += simulation.model_rows("boosting", learner, data, truth, base, drop_mean=cfg.drop_mean)
    table = pd.DataFrame(rows).assign(study="real", dataset=real.name)
    names = dict(enumerate(("(full fit)", *real.feature_names)))
    return table.assign(feature_name=table["feature"].map(names))


def _panel(frame: pd.DataFrame, panel: str, **columns: str) -> pd.DataFrame:
    """``frame`` with ``panel`` set and columns renamed (new name = old name) for the F14 table."""
    return frame.rename(columns={old: new for new, old in columns.items()}).assign(panel=panel)


def f14_table(
    f8_summary: pd.DataFrame,
    coverage_raw: pd.DataFrame,
    shapley: pd.DataFrame,
    highdim_raw: pd.DataFrame,
    real_raw: pd.DataFrame,
    tree_points: pd.DataFrame,
    tree_summary: pd.DataFrame,
    level: float = 0.95,
) -> pd.DataFrame:
    """The F14 table: one long frame, a ``panel`` column naming the figure panel each row feeds.

    Every VI ``estimate`` is the test-loss difference ``vi_loss`` (the squared prediction difference
    ``vi_sqdiff`` beside it as ``estimate_sqdiff``). ``truth``: F8 estimates (mean over repetitions,
    central range) vs truth at the largest n;
    ``coverage``: interval coverage per (model, method, feature, ρ); ``shapley``: φ̂ (± z·Monte-Carlo
    se) vs exact; ``runtime``: total seconds per (model, method) of the p = 100 study (all features)
    and of the Shapley study; ``highdim``: p = 100 estimates vs truth; ``real``: real-data VI with
    intervals (``lo``/``hi`` the Wald interval); ``rate``: test error at
    the stopping time vs n of kernel GD with the symmetric-tree kernel, with the measured and the
    predicted slope (:func:`kernelft.vi.tree_kernel.tree_rate_check`)."""
    z = intervals.z_value(level)
    n_max = f8_summary["n"].max()
    truth = f8_summary[(f8_summary["n"] == n_max) & (f8_summary["feature"] > 0)]
    panels = [_panel(truth[["model", "method", "feature", "rho", "n", "truth", "vi_loss_mean", "vi_loss_lo",
                            "vi_loss_hi", "vi_sqdiff_mean"]],
                     "truth", estimate="vi_loss_mean", lo="vi_loss_lo", hi="vi_loss_hi",
                     estimate_sqdiff="vi_sqdiff_mean")]
    cover = intervals.coverage(coverage_raw[coverage_raw["feature"] > 0], level, by=("model", "method", "feature",
                                                                                            "rho", "n"))
    panels.append(_panel(cover, "coverage", estimate="coverage"))
    shap = shapley[shapley["feature"] > 0]
    panels.append(_panel(shap.assign(lo=shap["phi"] - z * shap["phi_se"], hi=shap["phi"] + z * shap["phi_se"]),
                         "shapley", estimate="phi", truth="exact"))
    hd = highdim_raw[highdim_raw["method"] != "full"]
    hd_time = hd.groupby(["model", "method", "p", "n"])[["seconds", "steps"]].sum().reset_index()
    p_hd, k_hd = int(hd_time["p"].iloc[0]), int(hd["feature"].nunique())
    hd_study = f"VI, all p = {p_hd}" if k_hd == p_hd else f"VI, {k_hd} of p = {p_hd}"
    hd_time = hd_time.assign(study=hd_study, fits=hd.groupby(["model", "method", "p", "n"]).size().to_numpy())
    shap_time = shapley[(shapley["feature"] == 0) & (shapley["method"] != "full")]
    shap_time = shap_time.assign(study=f"Shapley, p = {int(shapley['feature'].max())}")
    panels.append(_panel(pd.concat([hd_time, shap_time], ignore_index=True), "runtime"))
    hd_summary = simulation.summarize(highdim_raw, interval=0.9)
    hd_summary = hd_summary[hd_summary["feature"] > 0][["model", "method", "feature", "rho", "n", "truth",
                                                        "vi_loss_mean", "vi_sqdiff_mean"]]
    hd_design = highdim_raw["design"].iloc[0] if "design" in highdim_raw else "linear"
    panels.append(_panel(hd_summary.assign(p=int(highdim_raw["p"].iloc[0]), design=hd_design), "highdim",
                         estimate="vi_loss_mean", estimate_sqdiff="vi_sqdiff_mean"))
    real = intervals.add_intervals(real_raw[real_raw["feature"] > 0], level)
    panels.append(_panel(real[["model", "method", "feature", "feature_name", "dataset", "n", "vi_loss", "ci_lo",
                               "ci_hi", "vi_sqdiff", "seconds"]], "real", estimate="vi_loss", lo="ci_lo", hi="ci_hi",
                         estimate_sqdiff="vi_sqdiff"))
    summary = tree_summary.iloc[0]
    rate_columns = ["slope", "ci_low", "ci_high", "predicted_slope", "predicted_law", "power_slope", "passed"]
    panels.append(_panel(tree_points.assign(model="boosting", method="kernel_gd", **summary[rate_columns]), "rate",
                         estimate="test_mse_rule"))
    table = pd.concat(panels, ignore_index=True)
    first = ["panel", "model", "method", "feature", "rho", "n", "estimate", "lo", "hi", "truth", "estimate_sqdiff"]
    return table[first + [c for c in table.columns if c not in first]]


def headline(table: pd.DataFrame, feature: int = 1) -> dict[str, Any]:
    """The numbers the report quotes, from the F14 table: X1 vs truth per ρ at the largest F8 n,
    interval coverage per ρ, Shapley error vs exact, the p = 100 speed-up, the real-data VI."""
    out: dict[str, Any] = {}
    truth = table[(table["panel"] == "truth") & (table["feature"] == feature)]
    out["x1"] = [{"model": r.model, "method": r.method, "rho": r.rho, "n": int(r.n), "vi_loss_mean": r.estimate,
                  "vi_sqdiff_mean": r.estimate_sqdiff, "truth": r.truth, "distance": abs(r.estimate - r.truth)}
                 for r in truth.itertuples()]
    cover = table[(table["panel"] == "coverage") & (table["feature"] == feature)]
    out["coverage"] = [{"model": r.model, "method": r.method, "rho": r.rho, "n": int(r.n), "coverage": r.estimate,
                        "repetitions": int(r.repetitions), "level": r.level, "width_mean": r.width_mean}
                       for r in cover.itertuples()]
    shap = table[table["panel"] == "shapley"].assign(error=lambda f: (f["estimate"] - f["truth"]).abs())
    oracle = shap[shap["method"] == "oracle"].set_index("feature")["estimate"]
    shap = shap.assign(error_vs_oracle=(shap["estimate"] - shap["feature"].map(oracle)).abs())
    out["shapley"] = [{"model": model, "method": method, "mean_abs_error": float(g["error"].mean()),
                       "max_abs_error": float(g["error"].max()),
                       "mean_abs_error_vs_oracle": float(g["error_vs_oracle"].mean()),
                       "estimates": dict(zip(g["feature"].astype(int).astype(str), g["estimate"].round(4))),
                       "exact": dict(zip(g["feature"].astype(int).astype(str), g["truth"].round(4)))}
                      for (model, method), g in shap.groupby(["model", "method"])]
    runtime = table[table["panel"] == "runtime"]
    out["speedup"] = {}
    for (study, model), g in runtime.groupby(["study", "model"]):
        seconds = g.set_index("method")["seconds"]
        steps = g.set_index("method")["steps"]
        out["speedup"].setdefault(study, {})[model] = {
            "retrain_seconds": float(seconds["retrain"]), "warm_start_seconds": float(seconds["warm_start"]),
            "speedup": float(seconds["retrain"] / seconds["warm_start"]),
            "steps_ratio": float(steps["retrain"] / max(steps["warm_start"], 1))}
    real = table[(table["panel"] == "real") & (table["method"] == "warm_start")]
    out["real"] = [{"model": r.model, "feature": r.feature_name, "vi_loss": r.estimate, "ci": [r.lo, r.hi],
                    "vi_sqdiff": r.estimate_sqdiff}
                   for r in real.itertuples()]
    rate = table[table["panel"] == "rate"].iloc[0]
    out["tree_kernel_rate"] = {"measured_slope": rate["slope"], "ci": [rate["ci_low"], rate["ci_high"]],
                               "predicted_slope": rate["predicted_slope"], "predicted_law": rate["predicted_law"],
                               "power_law_slope": rate["power_slope"], "passed": bool(rate["passed"])}
    return out


def log_headline(numbers: dict[str, Any]) -> None:
    """Write the headline numbers to the log, one line each."""
    for r in numbers["x1"]:
        log.info("X1 %-8s %-10s rho=%-4g n=%d loss difference %.3f (squared difference %.3f) truth %.3f", r["model"],
                 r["method"], r["rho"], r["n"], r["vi_loss_mean"], r["vi_sqdiff_mean"], r["truth"])
    for r in numbers["coverage"]:
        log.info("coverage %-8s %-10s rho=%-4g %.2f of %d", r["model"], r["method"], r["rho"], r["coverage"],
                 r["repetitions"])
    for r in numbers["shapley"]:
        log.info("Shapley %-8s %-10s mean |error| %.3f max %.3f (vs oracle %.3f)", r["model"], r["method"],
                 r["mean_abs_error"], r["max_abs_error"], r["mean_abs_error_vs_oracle"])
    for study, models in numbers["speedup"].items():
        for model, s in models.items():
            log.info("%s %s: retrain %.1f s, warm start %.1f s, speed-up %.2fx", study, model, s["retrain_seconds"],
                     s["warm_start_seconds"], s["speedup"])
    rate = numbers["tree_kernel_rate"]
    log.info("symmetric-tree kernel: slope %.3f [%.3f, %.3f], predicted %.3f (%s)", rate["measured_slope"],
             *rate["ci"], rate["predicted_slope"], rate["predicted_law"])
