"""Variable importance by early-stopped warm starts: the simulation of Sun & Raskutti (AISTATS 2025).

Sun, Z. & Raskutti, G., "Reliable and scalable variable importance estimation via warm-start and
early stopping", AISTATS 2025 (arXiv:2412.01120); reference code ZexuanSun/Early-stopping-VI.

For feature j the VI is VI_j = E[(f(X) − f_{−j}(X))²] = E[(Y − f_{−j})²] − E[(Y − f)²] (f = E[Y | X],
f_{−j} = E[Y | X_{−j}]). The headline estimate, the reference code's (e.g. ``codes/core/nn_utils.py``,
``vi_exp_wrapper``, line 64), is the test-split loss difference

    VI_j ≈ (1/n_test) Σ_i [(y_i − f̂_{−j}(x_i^{(−j)}))² − (y_i − f̂(x_i))²]       (column ``vi_loss``)

which is unbiased for the difference of the two models' test losses and can be negative (at a null
feature it scatters around 0); beside it the squared prediction difference

    VI_j ≈ (1/n_test) Σ_i (f̂(x_i) − f̂_{−j}(x_i^{(−j)}))²                      (column ``vi_sqdiff``)

which is never negative, so at a null feature its noise is all bias upwards. Both estimate the same
population quantity when f̂ → E[Y | X]. x^{(−j)} has X_j replaced by a constant: its training mean
in every split (``vi.drop_mean: train``) or each split's own mean (``split``, the reference's
``dropdata``). Three ways to get the reduced model f̂_{−j}, for a network and for boosted symmetric
trees (CatBoost, :mod:`kernelft.vi.boosting`):

- ``warm_start`` (the method): start from the full model, run early-stopped training on x^{(−j)};
- ``retrain``: train the reduced model from scratch on x^{(−j)} with the same early stopping;
- ``drop``: no training, f̂_{−j} = f̂ evaluated at x^{(−j)} (biased when X_j is correlated with others:
  it estimates β_j² Var(X_j) instead of β_j² Var(X_j | X_{−j})).

The true VI is β_j² / (Σ⁻¹)_{jj}, for X1 1.5² (1 − ρ²) (see :mod:`kernelft.vi.datasets`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from kernelft.core.config import ConfigError, section_defaults
from kernelft.vi import FIT_KEYS, boosting, datasets, intervals, network

log = logging.getLogger(__name__)

METHODS = ("warm_start", "retrain", "drop")
MODELS = ("network", "boosting")


@dataclass(frozen=True)
class VIConfig:
    """Settings of the data and the learners of every VI study: the `vi` keys :data:`kernelft.vi.FIT_KEYS`.
    Build it with :meth:`from_dict`, which takes the schema's default for each key left out."""

    beta: tuple[float, ...]
    noise_sd: float
    test_fraction: float
    val_fraction: float
    drop_mean: str
    width: int
    hidden_layers: int
    bias_scale: float
    lr: float
    max_steps: int
    patience: int
    min_delta: float
    boosting: bool
    boosting_params: dict[str, Any]

    @classmethod
    def from_dict(cls, section: Mapping[str, Any]) -> "VIConfig":
        """Build from (a slice of) the `vi` config section over the schema defaults; ``boosting_params``
        is merged over the default CatBoost settings. Keys other than :data:`kernelft.vi.FIT_KEYS` (grids,
        studies, summaries) are skipped; a key the `vi` section does not have is an error naming it."""
        defaults = section_defaults("vi")
        unknown = set(section) - set(defaults)
        if unknown:
            raise ConfigError(f"unknown key(s) in config['vi']: {sorted(unknown)}; expected some of {sorted(defaults)}")
        values = {key: section.get(key, defaults[key]) for key in FIT_KEYS}
        values["beta"] = tuple(float(b) for b in values["beta"])
        values["boosting_params"] = {**defaults["boosting_params"], **values["boosting_params"]}
        return cls(**values)


def replicate_rng(seed: int, n: int, rep: int, stream: int = 0) -> np.random.Generator:
    """Random stream of one repetition: depends on (seed, n, rep) but not on ρ.

    Every ρ then sees the same standard normals (common random numbers, transformed by the Cholesky
    factor of Σ(ρ)) and the same network initialisations, so curves over ρ are smooth. A non-zero
    ``stream`` gives another study (coverage, p = 100, ...) its own data sets at the same n.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, n, rep] + ([stream] if stream else [])))


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


@dataclass
class Fit:
    """A fitted model as the VI loop sees it: its predictions and what the fit cost."""

    predict: Callable[[np.ndarray], np.ndarray]
    seconds: float
    steps: int
    stopping_time: int
    state: Any = None  # the model itself, to warm-start from


def network_learner(cfg: VIConfig, p: int, init_seeds: np.ndarray):
    """``learn(x_tr, y_tr, x_va, y_va, init, k)``: early-stopped GD from ``init`` or from fresh weights (seed k)."""
    train_kw = dict(lr=cfg.lr, max_steps=cfg.max_steps, patience=cfg.patience, min_delta=cfg.min_delta)

    def learn(x_tr, y_tr, x_va, y_va, init: Fit | None, k: int) -> Fit:
        if init is None:
            generator = torch.Generator().manual_seed(int(init_seeds[k]))
            net = network.make_network(p, cfg.width, cfg.hidden_layers, bias_scale=cfg.bias_scale, generator=generator)
        else:
            net = network.warm_start(init.state)
        result = network.train(net, _tensor(x_tr), _tensor(y_tr), _tensor(x_va), _tensor(y_va), **train_kw)
        return Fit(lambda x: network.predict(net, x), result.seconds, result.steps, result.stopping_time, net)

    return learn


def boosting_learner(cfg: VIConfig, seed: int, threads: int = 1):
    """``learn(...)`` for CatBoost symmetric trees; a warm start continues from ``init`` (``init_model``)."""

    def learn(x_tr, y_tr, x_va, y_va, init: Fit | None, k: int) -> Fit:
        start = None if init is None else init.state
        model = boosting.fit(x_tr, y_tr, x_va, y_va, seed=seed, params=cfg.boosting_params, init=start,
                                threads=threads)
        return Fit(model.predict, model.seconds, model.n_iter, model.n_iter, model)

    return learn


def _vi_estimates(f_test: np.ndarray, reduced_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Both test-split VI estimates of one reduced model: the loss difference ``vi_loss`` (the headline) with
    its standard error sd(d_i)/√n_test (:mod:`kernelft.vi.intervals`), the squared prediction difference
    ``vi_sqdiff``; and the reduced model's test MSE."""
    d = intervals.loss_differences(y_test, f_test, reduced_test)
    return {
        "vi_loss": float(d.mean()),
        "vi_loss_se": intervals.standard_error(d),
        "vi_sqdiff": float(np.mean((f_test - reduced_test) ** 2)),
        "test_mse": float(np.mean((y_test - reduced_test) ** 2)),
    }


def model_rows(
    model: str,
    learn,
    data: datasets.Split,
    truth: np.ndarray,
    base: dict,
    features: tuple[int, ...] | None = None,
    methods: tuple[str, ...] = METHODS,
    drop_mean: str = "train",
) -> list[dict[str, Any]]:
    """Fit the full ``model``, then the reduced model of each of ``features`` (0-based; default all) by
    each of ``methods`` (X_j replaced by the mean of ``drop_mean``, :func:`kernelft.vi.datasets.drop_in_splits`);
    one row each (``feature`` is 1-based, 0 for the full fit)."""
    full = learn(data.x_train, data.y_train, data.x_val, data.y_val, None, 0)
    f_test = full.predict(data.x_test)
    rows = [{**base, "model": model, "method": "full", "feature": 0, "truth": np.nan, "vi_loss": np.nan,
             "vi_loss_se": np.nan, "vi_sqdiff": np.nan, "test_mse": float(np.mean((data.y_test - f_test) ** 2)),
             "seconds": full.seconds, "steps": full.steps, "stopping_time": full.stopping_time}]
    for j in range(len(truth)) if features is None else features:
        x_tr, x_va, x_te = datasets.drop_in_splits(data, j, drop_mean)
        for method in methods:
            if method == "drop":
                start = time.perf_counter()
                reduced = Fit(full.predict, 0.0, 0, 0)
                reduced_test = reduced.predict(x_te)
                reduced.seconds = time.perf_counter() - start
            else:
                init = full if method == "warm_start" else None
                reduced = learn(x_tr, data.y_train, x_va, data.y_val, init, j + 1)
                reduced_test = reduced.predict(x_te)
            rows.append({**base, "model": model, "method": method, "feature": j + 1, "truth": float(truth[j]),
                         **_vi_estimates(f_test, reduced_test, data.y_test), "seconds": reduced.seconds,
                         "steps": reduced.steps, "stopping_time": reduced.stopping_time})
    return rows


def run_replicate(
    rho: float,
    n: int,
    rep: int,
    cfg: VIConfig,
    seed: int,
    threads: int = 1,
    features: tuple[int, ...] | None = None,
    methods: tuple[str, ...] = METHODS,
    stream: int = 0,
    design=None,
) -> list[dict[str, Any]]:
    """One simulated data set: fit the full models, then the VI of ``features`` (0-based; default all)
    by each of ``methods``; ``stream`` selects the study's random stream (:func:`replicate_rng`).
    ``design`` (:mod:`kernelft.vi.designs`, with ``simulate(n, rng)`` and ``true_vi()``) draws the data;
    default the linear design Y = Xᵀβ + ε of ``cfg`` at correlation ρ.

    Returns one row per (model, method, feature) with ``vi_loss``, ``vi_sqdiff``, ``truth``, ``test_mse``,
    ``seconds`` (wall time to get f̂_{−j}; for ``method == "full"`` the full fit), ``steps``
    (gradient steps or boosting stages run) and ``stopping_time`` (the step kept).
    """
    rng = replicate_rng(seed, n, rep, stream)
    p = len(cfg.beta)
    if design is None:
        x, y = datasets.simulate(n, rho, rng, beta=cfg.beta, noise_sd=cfg.noise_sd)
        truth = datasets.true_vi(cfg.beta, datasets.covariance(p, rho))
    else:
        if design.p != p:
            raise ValueError(f"the design has {design.p} features but the learners' beta has {p}")
        x, y = design.simulate(n, rng)
        truth = design.true_vi()
    data = datasets.split(x, y, rng, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)
    init_seeds = rng.integers(0, 2**31 - 1, size=p + 1)
    base = {"rho": rho, "n": n, "rep": rep}
    rows = model_rows("network", network_learner(cfg, p, init_seeds), data, truth, base, features, methods,
                      cfg.drop_mean)
    if cfg.boosting:
        learn = boosting_learner(cfg, int(init_seeds[0]), threads)
        rows += model_rows("boosting", learn, data, truth, base, features, methods, cfg.drop_mean)
    return rows


def run_cell(
    rho: float, n: int, repetitions: int, cfg: VIConfig, seed: int, threads: int = 1, progress: bool = True
) -> pd.DataFrame:
    """All repetitions of one (ρ, n) cell as a long table (see :func:`run_replicate`).

    Torch and the OpenMP pools of scikit-learn are limited to ``threads`` so that timings of the
    methods, all measured in this one process, compare like with like.
    """
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=threads):
        for rep in tqdm(range(repetitions), desc=f"VI rho={rho:g} n={n}", disable=not progress):
            rows += run_replicate(rho, n, rep, cfg, seed, threads)
    table = pd.DataFrame(rows)
    log.info("rho=%g n=%d: %d rows in %.1f s of fitting", rho, n, len(table), table["seconds"].sum())
    return table


def summarize(raw: pd.DataFrame, interval: float = 0.9) -> pd.DataFrame:
    """Per (model, method, feature, ρ, n), over repetitions: mean, sd and the central ``interval`` quantile
    range of the headline estimate ``vi_loss`` (columns ``vi_loss_*``) and of ``vi_sqdiff``
    (``vi_sqdiff_*``), the truth, mean |error| and bias of each, wall time and steps.

    ``feature == 0`` rows are the full fits (no VI, only time). This is the F8 table.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must lie in (0, 1), got {interval}")
    lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
    raw = raw.assign(abs_error=(raw["vi_loss"] - raw["truth"]).abs(),
                     abs_error_sqdiff=(raw["vi_sqdiff"] - raw["truth"]).abs())
    grouped = raw.groupby(["model", "method", "feature", "rho", "n"], sort=True)
    spread = {}
    for column in ("vi_loss", "vi_sqdiff"):
        spread |= {f"{column}_mean": (column, "mean"), f"{column}_sd": (column, "std"),
                   f"{column}_lo": (column, lambda v: v.quantile(lo)),
                   f"{column}_hi": (column, lambda v: v.quantile(hi))}
    table = grouped.agg(
        repetitions=("rep", "nunique"),
        truth=("truth", "first"),
        **spread,
        abs_error_mean=("abs_error", "mean"),
        abs_error_sqdiff_mean=("abs_error_sqdiff", "mean"),
        test_mse_mean=("test_mse", "mean"),
        seconds_mean=("seconds", "mean"),
        seconds_sd=("seconds", "std"),
        steps_mean=("steps", "mean"),
        stopping_time_mean=("stopping_time", "mean"),
    ).reset_index()
    table["bias"] = table["vi_loss_mean"] - table["truth"]
    table["bias_sqdiff"] = table["vi_sqdiff_mean"] - table["truth"]
    table["interval"] = interval
    return table


def speedups(raw: pd.DataFrame, by: tuple[str, ...] = ("model",)) -> pd.DataFrame:
    """Speed-up of warm start over retraining: Σ seconds(retrain) / Σ seconds(warm start) per group.

    Sums run over every feature and repetition in the group, all timed in the same processes; the
    same ratio of gradient steps (boosting stages) is ``steps_ratio``, a load-independent check.
    """
    reduced = raw[raw["method"].isin(["warm_start", "retrain"])]
    totals = reduced.groupby([*by, "method"])[["seconds", "steps"]].sum().unstack("method")
    out = pd.DataFrame({
        "retrain_seconds": totals[("seconds", "retrain")],
        "warm_start_seconds": totals[("seconds", "warm_start")],
        "speedup": totals[("seconds", "retrain")] / totals[("seconds", "warm_start")],
        "steps_ratio": totals[("steps", "retrain")] / totals[("steps", "warm_start")].clip(lower=1),
    })
    return out.reset_index()


def headline(raw: pd.DataFrame, summary: pd.DataFrame, null_features: tuple[int, ...] = (4, 5, 6)) -> dict[str, Any]:
    """The numbers the report quotes, at the largest n of the run.

    ``x1``: per model, method and ρ, the mean VI estimates of X1 (``vi_loss_mean``, the headline, and
    ``vi_sqdiff_mean``), the truth 1.5²(1 − ρ²) and the distance |vi_loss_mean − truth|; ``null``: mean
    (and max over features) of both estimates at the null features per method;
    ``speedup``: warm start over retraining per model, overall and per ρ.
    """
    n_max = int(summary["n"].max())
    at = summary[(summary["n"] == n_max) & (summary["feature"] > 0)]
    x1 = at[at["feature"] == 1]
    nulls = at[at["feature"].isin(null_features)]
    out: dict[str, Any] = {"n": n_max, "x1": [], "null": [], "speedup": {}}
    for row in x1.itertuples():
        out["x1"].append({"model": row.model, "method": row.method, "rho": row.rho, "vi_loss_mean": row.vi_loss_mean,
                          "vi_sqdiff_mean": row.vi_sqdiff_mean, "truth": row.truth,
                          "distance": abs(row.vi_loss_mean - row.truth)})
    for (model, method), group in nulls.groupby(["model", "method"]):
        out["null"].append({"model": model, "method": method, "vi_loss_mean": float(group["vi_loss_mean"].mean()),
                            "vi_loss_max_mean": float(group["vi_loss_mean"].max()),
                            "vi_sqdiff_mean": float(group["vi_sqdiff_mean"].mean()),
                            "vi_sqdiff_max_mean": float(group["vi_sqdiff_mean"].max())})
    overall = speedups(raw)
    per_rho = speedups(raw[raw["n"] == n_max], by=("model", "rho"))
    for model in overall["model"]:
        row = overall[overall["model"] == model].iloc[0]
        out["speedup"][model] = {
            "overall": float(row["speedup"]),
            "steps_ratio": float(row["steps_ratio"]),
            "at_n_max_per_rho": {
                float(r.rho): float(r.speedup) for r in per_rho[per_rho["model"] == model].itertuples()
            },
        }
    return out


def log_headline(numbers: dict[str, Any]) -> None:
    """Write the headline numbers to the log, one line each."""
    log.info("VI at the largest n = %d", numbers["n"])
    for r in numbers["x1"]:
        log.info("X1 %-8s %-10s rho=%-4g loss difference %.3f (squared difference %.3f) truth %.3f distance %.3f",
                 r["model"], r["method"], r["rho"], r["vi_loss_mean"], r["vi_sqdiff_mean"], r["truth"], r["distance"])
    for r in numbers["null"]:
        log.info("null X4-X6 %-8s %-10s loss difference mean %.4f max %.4f (squared difference mean %.4f)",
                 r["model"], r["method"], r["vi_loss_mean"], r["vi_loss_max_mean"], r["vi_sqdiff_mean"])
    for model, s in numbers["speedup"].items():
        log.info("speed-up %s: %.2fx in seconds, %.2fx in steps", model, s["overall"], s["steps_ratio"])
