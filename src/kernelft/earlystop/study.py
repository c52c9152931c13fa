"""The early-stopping stage of the workflow (Sun & Raskutti 2026; figures F5–F7), from a pool eNTK.

One eNTK of a pool of N training examples serves the whole stage: :func:`kernelft.earlystop.rates.sweep_sizes`
draws a test set of ``n_test`` pool examples once and, for each size n and repetition, n training
examples from the rest, so no other kernel is needed. This module turns the ``earlystop`` config
section into those calls:

- :func:`pool_targets`: labels ±1 and f_init = logit_1 − logit_0 of the pretrained model (the scalar
  output whose gradient the eNTK contracts, Malladi et al. 2023);
- :func:`pool_spectrum`: eigenvalues of K_pool/N, both decay laws and subsampling intervals
  (:mod:`kernelft.kernels.spectrum`), the source of the predicted slope;
- :func:`real_rate_study`: kernel GD with the RWY rule, the oracle and the validation stop over
  sizes, once per test target (labels or a denoised pseudo-truth fitted on a held-out part of the
  pool, :func:`kernelft.earlystop.rates.pseudo_truth`) and R² estimator (``ridge``, the denoised RKHS
  norm, and ``pinv``, y_Rᵀ K⁺ y_R as Sun & Raskutti 2026 state the rule), with the measured and
  predicted slopes (:func:`kernelft.earlystop.rates.rate_summary`); the stopping convention
  (``stopping_convention``) and the target of the R² estimate (``r2_target``) come from the config;
- :func:`synthetic_study`: the known-truth guard (:func:`kernelft.earlystop.rates.synthetic_rate_check`) on
  the pool's eigenvectors with the fitted law's eigenvalues, and the same check on the pool kernel.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from kernelft.core.config import ConfigError
from kernelft.earlystop.kernel_gd import R2_METHODS, STOPPING_CONVENTIONS, step_grid
from kernelft.earlystop.rates import (
    draw_samples,
    predict_slope,
    pseudo_truth,
    rate_summary,
    sweep_sizes,
    synthetic_rate_check,
)
from kernelft.kernels.outputs import margin
from kernelft.kernels.spectrum import (
    LawFit,
    SpectrumFit,
    bootstrap_rates,
    fit_spectrum,
    kernel_eigenvalues,
    kernel_eigh,
    spectrum_frame,
)

log = logging.getLogger(__name__)

TEST_TARGETS = ("pseudo_truth", "labels")
R2_TARGETS = ("labels", "pseudo_truth")
"""What y_R = target − f_init the R² estimate reads at the training points (``earlystop.r2_target``)."""
RUN_KEYS = ("eta_scale", "sigma2", "rcond", "val_fraction", "patience")
"""Keys of the ``earlystop`` section passed on to :func:`kernelft.earlystop.kernel_gd.run_early_stopping`."""
SPECTRUM_RANGE_KEYS = ("skip", "rel_floor", "max_fraction")
SUMMARY_MEANS = (
    "stop_rule", "stop_crossing", "stop_oracle", "stop_validation", "test_mse_rule", "test_mse_oracle",
    "test_mse_validation", "excess_rule", "excess_validation", "sigma2", "r2",
)
"""Columns of the sweep's points averaged (over sizes and repetitions) into the rate table."""


def pool_targets(labels: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regression targets y ∈ {−1, +1} (N,) from 0/1 labels and f_init = logit_1 − logit_0 (N,) from (N, 2) logits."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"early stopping needs a binary task: logits must have shape (N, 2), got {logits.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, found {np.unique(labels)}")
    return 2.0 * labels - 1.0, margin(logits)


def steps_of(section: dict[str, Any]) -> np.ndarray:
    """Step grid of the learning curves: 0 and ``grid_points`` log-spaced steps up to ``max_steps``."""
    return step_grid(int(section["max_steps"]), int(section["grid_points"]))


def pool_spectrum(
    kernel: np.ndarray, spectrum: dict[str, Any], seed: int = 0, label: str = ""
) -> tuple[SpectrumFit, pd.DataFrame, pd.DataFrame]:
    """Fit both decay laws to the eigenvalues of K_pool/N with the ``spectrum`` section's ranges.

    Returns the fit, its subsampling intervals (:func:`kernelft.kernels.spectrum.bootstrap_rates`) and the
    long :func:`kernelft.kernels.spectrum.spectrum_frame` (the F5 table format).
    """
    ranges = {key: spectrum[key] for key in SPECTRUM_RANGE_KEYS if key in spectrum}
    eigenvalues = kernel_eigenvalues(kernel)
    fit = fit_spectrum(eigenvalues, **ranges)
    intervals = bootstrap_rates(kernel, n_boot=int(spectrum.get("n_boot", 200)),
                                fraction=float(spectrum.get("boot_fraction", 0.5)), seed=seed, **ranges)
    return fit, intervals, spectrum_frame(eigenvalues, fit, label=label, intervals=intervals)


def r2_methods(section: dict[str, Any]) -> list[str | None]:
    """The R² estimators to run: ``r2_methods`` (first = primary), or [None] when ``r2`` is given."""
    if section.get("r2") is not None:
        return [None]
    methods = list(section["r2_methods"])
    unknown = [m for m in methods if m not in R2_METHODS]
    if unknown:
        raise ValueError(f"earlystop.r2_methods: unknown {unknown}; expected some of {R2_METHODS}")
    return methods


RULE_DEFAULTS = {"stopping_convention": "first_crossing", "r2_target": "labels", "pseudo_truth_size": None}
"""Keys of the ``earlystop`` section added with issue #19 and their schema defaults, for a section
without them (a config slice saved before)."""


def rule_options(section: dict[str, Any]) -> dict[str, Any]:
    """``stopping_convention``, ``r2_target`` and the resolved ``pseudo_truth_size`` of the section,
    checked: ``pseudo_truth_size`` null means n_test (as many held-out examples as test examples)."""
    options = {key: section.get(key, default) for key, default in RULE_DEFAULTS.items()}
    if options["stopping_convention"] not in STOPPING_CONVENTIONS:
        raise ConfigError(f"earlystop.stopping_convention={options['stopping_convention']!r}; "
                          f"expected one of {STOPPING_CONVENTIONS}")
    if options["r2_target"] not in R2_TARGETS:
        raise ConfigError(f"earlystop.r2_target={options['r2_target']!r}; expected one of {R2_TARGETS}")
    if options["pseudo_truth_size"] is None:
        options["pseudo_truth_size"] = int(section["n_test"])
    return options


def run_label(task: str, method: str | None, test_target: str) -> str:
    """Label of one sweep in the tables and figures, e.g. ``tweets-sentiment2, R² ridge, vs pseudo_truth``."""
    return f"{task}, R² {'given' if method is None else method}, vs {test_target}"


def real_rate_study(
    kernel: np.ndarray,
    y: np.ndarray,
    f_init: np.ndarray,
    section: dict[str, Any],
    fit: SpectrumFit,
    intervals: pd.DataFrame | None = None,
    *,
    task: str = "",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Kernel GD with early stopping over ``section['sizes']`` on the pool kernel, per test target and
    R² estimator.

    ``kernel`` (N, N) is K_pool, ``y`` (N,) the ±1 labels, ``f_init`` (N,) the pretrained outputs.
    The pool is split once (:func:`kernelft.earlystop.rates.draw_samples`, ``seed``) into the test
    set (``n_test``), a held-out set of ``pseudo_truth_size`` examples and the rest, from which the
    training draws come. Test loss is measured against each of ``test_targets``: ``labels`` (MSE to
    ±1, which keeps the noise floor σ²) or ``pseudo_truth`` (the GCV kernel ridge fit of the held-out
    set only, :func:`kernelft.earlystop.rates.pseudo_truth`, which approximates the excess risk and
    has seen neither test nor training labels). R² is estimated from y_R = y − f_init
    (``r2_target: labels``) or from the pseudo-truth at the training points (``r2_target:
    pseudo_truth``, the real-data stand-in for the noiseless target of the authors' code). Every
    sweep sees the same test set and training draws, so the sweeps differ only in what they vary.

    Returns ``points`` (one row per run, with the :func:`kernelft.earlystop.rates.predict_slope` columns and
    ``task``, ``r2_method``, ``r2_target``, ``test_target``, ``stopping_convention``), ``curves``
    (learning curves, same keys; the first target and estimator come first) and ``rates``
    (:func:`summarize_rates`, one row per sweep).
    """
    targets = list(section["test_targets"])
    unknown = [t for t in targets if t not in TEST_TARGETS]
    if unknown:
        raise ConfigError(f"earlystop.test_targets: unknown {unknown}; expected some of {TEST_TARGETS}")
    rule = rule_options(section)
    prediction = predict_slope(fit, np.asarray(section["sizes"]), intervals)
    options = {key: section[key] for key in RUN_KEYS} | {"stopping_convention": rule["stopping_convention"]}
    draws = {"sizes": list(section["sizes"]), "n_test": int(section["n_test"]), "n_rep": int(section["n_rep"]),
             "seed": seed, "n_holdout": rule["pseudo_truth_size"]}
    truth = held_out_truth(kernel, y, f_init, section, seed)
    r2_values = truth if rule["r2_target"] == "pseudo_truth" else None
    points, curves = [], []
    for test_target in targets:
        for method in r2_methods(section):
            extra = {"r2": section["r2"]} if method is None else {"r2_method": method}
            run_points, run_curves = sweep_sizes(
                kernel, y, draws["sizes"], n_test=draws["n_test"], n_rep=draws["n_rep"], seed=seed,
                n_holdout=draws["n_holdout"], steps=steps_of(section), f_init=f_init,
                target=truth if test_target == "pseudo_truth" else None, r2_values=r2_values,
                label=run_label(task, method, test_target), **options, **extra,
            )
            keys = {"task": task, "r2_method": method or "given",
                    "r2_target": "given" if method is None else rule["r2_target"], "test_target": test_target}
            points.append(run_points.assign(**keys, **prediction))
            curves.append(run_curves.assign(**keys, stopping_convention=rule["stopping_convention"]))
    points_frame = pd.concat(points, ignore_index=True)
    return points_frame, pd.concat(curves, ignore_index=True), summarize_rates(points_frame, float(section["level"]))


def held_out_truth(kernel: np.ndarray, y: np.ndarray, f_init: np.ndarray, section: dict[str, Any],
                   seed: int = 0) -> np.ndarray | None:
    """The pseudo-truth (N,) of :func:`real_rate_study`, fitted on the held-out set of its pool split,
    or None when neither ``test_targets`` nor ``r2_target`` uses it. A ConfigError when it is used
    and ``pseudo_truth_size`` is 0."""
    rule = rule_options(section)
    if "pseudo_truth" not in section["test_targets"] and rule["r2_target"] != "pseudo_truth":
        return None
    if rule["pseudo_truth_size"] < 2:
        raise ConfigError(f"earlystop.pseudo_truth_size={rule['pseudo_truth_size']}: the pseudo-truth (a test "
                          "target or r2_target) is fitted on that many held-out pool examples; give at least 2")
    split = draw_samples(kernel.shape[0], list(section["sizes"]), n_test=int(section["n_test"]),
                         n_rep=int(section["n_rep"]), seed=seed, n_holdout=rule["pseudo_truth_size"])
    return pseudo_truth(kernel, y, split.holdout, f_init)


def sweep_draws(kernel: np.ndarray, y: np.ndarray, f_init: np.ndarray, section: dict[str, Any],
                seed: int = 0) -> dict[str, np.ndarray]:
    """The pool indices :func:`real_rate_study` trains and tests on, and its test targets, as arrays
    for an NPZ: ``test`` (n_test,), ``pseudo_truth_holdout`` (pseudo_truth_size,) the examples the
    pseudo-truth is fitted on, ``train_n<n>_rep<rep>`` (n,) per draw, ``labels`` (N,) the ±1 targets
    and ``pseudo_truth`` (N,) (:func:`kernelft.earlystop.rates.pseudo_truth`; NaN when the section
    does not use it)."""
    rule = rule_options(section)
    split = draw_samples(kernel.shape[0], list(section["sizes"]), n_test=int(section["n_test"]),
                         n_rep=int(section["n_rep"]), seed=seed, n_holdout=rule["pseudo_truth_size"])
    truth = held_out_truth(kernel, y, f_init, section, seed)
    arrays = {"test": split.test, "pseudo_truth_holdout": split.holdout, "labels": np.asarray(y, dtype=np.float64),
              "pseudo_truth": np.full(kernel.shape[0], np.nan) if truth is None else truth}
    arrays |= {f"train_n{n}_rep{rep}": train for n, rep, _, train in split.draws}
    return arrays


def summarize_rates(points: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """:func:`kernelft.earlystop.rates.rate_summary` of ``points`` plus the run means of :data:`SUMMARY_MEANS`.

    One row per label: measured slope of log test loss at T̂ against log n with its ``level``
    interval, the predicted slope (law, rate, interval), ``agrees`` and ``verdict``
    (:func:`kernelft.earlystop.rates.slope_verdict`); then ``mean_<column>`` for the
    stopping times, the test losses at T̂, T* and the validation stop, the excess losses over T*, σ²
    and R²; and ``rule_after_oracle`` (fraction of runs with T̂ > T*).
    """
    summary = rate_summary(points, level=level)
    grouped = points.groupby("label", sort=False)
    means = grouped[[c for c in SUMMARY_MEANS if c in points]].mean().add_prefix("mean_")
    means["rule_after_oracle"] = grouped.apply(lambda g: float((g["stop_rule"] > g["stop_oracle"]).mean()),
                                               include_groups=False)
    keys = [c for c in ("task", "r2_method", "r2_target", "test_target", "stopping_convention") if c in points]
    first = grouped[keys].first()
    return summary.merge(first, left_on="label", right_index=True).merge(means, left_on="label", right_index=True)


def law_kernel(kernel: np.ndarray, law: LawFit) -> np.ndarray:
    """N · U diag(λ_i) Uᵀ: the eigenvectors U of K/N kept, its eigenvalues replaced by the fitted law
    λ_i = ``law.predict(i)`` for every i = 1..N (shape (N, N))."""
    total = kernel.shape[0]
    _, vectors = kernel_eigh(kernel)
    return total * (vectors * law.predict(np.arange(1, total + 1))) @ vectors.T


def synthetic_study(
    kernel: np.ndarray,
    section: dict[str, Any],
    fit: SpectrumFit,
    *,
    task: str = "",
    fit_ranges: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Known-truth checks on the pool kernel (:func:`kernelft.earlystop.rates.synthetic_rate_check`), two of them:

    - ``fitted <law> law``: the pool's eigenvectors with the eigenvalues of ``fit.better`` (the law
      whose slope F6 predicts) — the spectrum obeys the law exactly, so the predicted slope must fall
      in the measured interval: the guard of the code and of the rate formula;
    - ``eNTK spectrum``: the pool kernel itself — shows how far a spectrum that follows the law
      only over part of its range moves the measured slope from the prediction.

    Each kernel is scaled so that λ_1(K/N) = 1: the target f* (‖f*‖²_H = 1, in the span of the
    kernel) then has values of order 1, so ``synthetic.sigma`` is a noise level relative to the
    signal whatever the scale of the eNTK (the dynamics in ηt, η = eta_scale/λ_1, do not depend on
    it). Labels get noise ``synthetic.sigma``; the rule is given the true σ² and R²; test loss is
    measured against f*; sizes, n_test, n_rep, the step grid and the stopping options
    (``stopping_convention`` included) are those of the real task; ``fit_ranges`` (the ``spectrum``
    section's skip, rel_floor, max_fraction) is the fit range of each kernel's predicted slope, as
    for ``fit``. One target (with its own test set and draws) per seed ``synthetic.seed``, +1, …,
    ``synthetic.n_targets`` of them, and the slope is fitted to all their runs pooled: the slope of a
    single target's runs scatters more than its t-interval says (on the MiniLM pool, fitted power
    law, six seeds: −0.40 to −0.81 around the predicted −0.63, each interval about ±0.2). Returns
    ``points`` (one row per run, with the prediction and ``target_seed``) and ``check`` (one row per
    kernel, the columns of :func:`summarize_rates` plus ``passed``, the predicted slope inside the
    measured interval, ``sigma`` and ``n_targets``).
    """
    synthetic = section["synthetic"]
    options = {key: section[key] for key in RUN_KEYS if key != "sigma2"}
    options["stopping_convention"] = rule_options(section)["stopping_convention"]
    seeds = [int(synthetic["seed"]) + k for k in range(int(synthetic.get("n_targets", 1)))]
    kernels = {f"fitted {fit.better.law} law": law_kernel(kernel, fit.better), "eNTK spectrum": kernel}
    points, checks = [], []
    for name, matrix in kernels.items():
        matrix = np.asarray(matrix, dtype=np.float64)
        matrix = matrix / kernel_eigenvalues(matrix)[0]
        label = f"{task + ', ' if task else ''}synthetic on the {name}"
        runs = []
        for seed in seeds:
            check = synthetic_rate_check(
                matrix, list(section["sizes"]), float(synthetic["sigma"]), seed, n_test=int(section["n_test"]),
                n_rep=int(section["n_rep"]), level=float(section["level"]), steps=steps_of(section),
                fit_ranges=fit_ranges, **options,
            )
            runs.append(check.points.assign(target_seed=seed))
        run_points = pd.concat(runs, ignore_index=True).assign(
            label=label, task=task, r2_method="given", r2_target="given", test_target="f_star"
        )
        frame = summarize_rates(run_points, float(section["level"]))
        frame["passed"] = frame["agrees"]
        frame["kernel"] = name
        frame["sigma"] = float(synthetic["sigma"])
        frame["n_targets"] = len(seeds)
        points.append(run_points)
        checks.append(frame)
    return pd.concat(points, ignore_index=True), pd.concat(checks, ignore_index=True)


def rate_tables(summaries: list[pd.DataFrame], points: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The F6 tables: rate rows (real sweeps and synthetic checks) and the points, with ``panel`` and
    ``series`` (the short legend name within the panel: ``R² ridge``, ``fitted power law``, ...) columns.

    Real sweeps go to the panel ``eNTK of <task>: test MSE vs <test_target>`` (one per target); synthetic checks to
    ``synthetic targets on the pool's eigenvectors: excess risk`` (their losses differ by decades, so
    :func:`kernelft.earlystop.plots.plot_rates` draws each panel on its own axes).
    """
    def panel(frame: pd.DataFrame) -> pd.Series:
        synthetic = frame["test_target"].eq("f_star")
        real = "eNTK of " + frame["task"].astype(str) + ": test MSE vs " + frame["test_target"].astype(str)
        return real.where(~synthetic, "synthetic targets on the pool's eigenvectors: excess risk")

    def series(frame: pd.DataFrame) -> pd.Series:
        real = "R² " + frame["r2_method"].astype(str)
        if "source" in frame.columns:
            real = real.where(~frame["source"].eq("finetune"), "real FT, " + real)
        return real.where(~frame["test_target"].eq("f_star"), frame["label"].str.replace(r"^.*synthetic on the ", "",
                                                                                          regex=True))

    frames = []
    for frame in (pd.concat(summaries, ignore_index=True), pd.concat(points, ignore_index=True)):
        frame.insert(1, "panel", panel(frame))
        frame.insert(2, "series", series(frame))
        frames.append(frame)
    return frames[0], frames[1]


def learning_curve_table(kernel_curves: list[pd.DataFrame], finetune_curves: list[pd.DataFrame]) -> pd.DataFrame:
    """The long F7 table: kernel-GD curves of each task's primary sweep (first test target, first R²
    estimator) and the real fine-tuning curves stopped at T̂ (:mod:`kernelft.earlystop.finetune`, with
    ``test_mse`` = their ``test_mse_<target>`` for that sweep's target), told apart by ``source``
    (kernel_gd, finetune)."""
    kernel, finetune = [], []
    for frame in kernel_curves:
        first = frame.iloc[0]
        primary = (frame["r2_method"] == first["r2_method"]) & (frame["test_target"] == first["test_target"])
        kernel.append(frame[primary])
        for curve in finetune_curves:
            if curve["task"].iloc[0] == first["task"]:
                finetune.append(curve.assign(test_mse=curve[f"test_mse_{first['test_target']}"],
                                             test_target=first["test_target"]))
    return pd.concat(
        [pd.concat(kernel, ignore_index=True).assign(source="kernel_gd"),
         pd.concat(finetune, ignore_index=True).assign(source="finetune")],
        ignore_index=True,
    )
