"""LP-FT through the NTK (Tomihari & Sato, NeurIPS 2024): the stage's data, NTK split and tables.

Tomihari & Sato, "Understanding Linear Probing then Fine-tuning Language Models from NTK
Perspective" (arXiv:2405.16747; reference code tom4649/lp-ft_ntk). Five methods share one budget
and the one runner (:mod:`kernelft.training.runner`): FT, LP, LP-FT, LoRA, LP-LoRA, each with a linear
head ``f(x) = V φ(x) + b`` on the first token. The paper's claims this stage measures:

- LP grows the head norm ‖V‖_F (cross-entropy keeps pushing a separable probe outwards), so FT
  started from it changes the features less: ``feature_change = (1/m) Σ_i ‖φ(x_i) − φ₀(x_i)‖``.
- Fewer feature changes preserve the pretrained features, hence better out-of-distribution (OOD)
  accuracy; the large head makes the logits over-confident (worse ECE), which temperature scaling
  (Guo et al. 2017, T fitted on an ID validation split) repairs.
- The eNTK at the start of FT splits into a pre-train-effective part ``(φᵀφ′ + 1) I`` (gradients
  w.r.t. V, b) and an FT-effective part ``V J_φ J_φ′ᵀ Vᵀ`` (gradients w.r.t. the encoder, or the
  LoRA adapters), :mod:`kernelft.lpft.ntk`; the head norm sets their balance.

Here the distribution shift is a topic shift in the tweet corpus: in-distribution (ID) = airline
tweets, OOD = tweets of the other collections, both binary sentiment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kernelft.core.config import ConfigError
from kernelft.core.tables import mean_sd, mean_sd_text
from kernelft.lpft import METHODS
from kernelft.lpft.calibration import calibration_metrics, fit_temperature, reliability_table, softmax
from kernelft.text.data import sample_train

if TYPE_CHECKING:  # the runner imports torch; the tables and figures of this stage do not need it
    from kernelft.training.runner import FinetuneConfig

log = logging.getLogger(__name__)

LABELS = {"ft": "FT", "lp": "LP", "lpft": "LP-FT", "lora": "LoRA", "lplora": "LP-LoRA"}
"""Display names of the methods."""

VAL_SEED_OFFSET = 7919
"""Added to the data seed for the validation draw, so it never repeats the training draw's order."""


# --- data -----------------------------------------------------------------------------------------


def run_config(section: Mapping[str, Any], method: str, seed: int) -> FinetuneConfig:
    """The runner's config for one (method, seed): the `lpft` section's shared keys (steps,
    batch_size, eval_every, probe_size, lora_rank, ...) with ``learning_rates[method]`` as ``lr``."""
    from kernelft.training.runner import FinetuneConfig

    if method not in METHODS:
        raise ConfigError(f"lpft.methods: {method!r} is not one of {METHODS}")
    rates = section.get("learning_rates", {})
    lr = rates.get(method, 1.0) if method == "lp" else rates.get(method)
    if lr is None:
        raise ConfigError(f"lpft.learning_rates has no entry for method {method!r}")
    shared = {key: value for key, value in section.items() if key not in ("learning_rates", "methods")}
    return FinetuneConfig.from_section(shared, name="lpft", method=method, lr=float(lr), seed=seed, loss="ce")


def evaluation_sets(
    id_test: pd.DataFrame,
    ood_test: pd.DataFrame,
    id_pool: pd.DataFrame,
    train: pd.DataFrame,
    test_size: int,
    val_size: int,
    num_classes: int,
    seed: int,
    data_seed: int,
) -> dict[str, pd.DataFrame]:
    """The ID test, OOD test and ID validation tables of one run.

    ``test`` and ``ood``: label-balanced draws of ``test_size`` rows from the tasks' fixed test
    sets with the global ``seed`` (the same for every run, so methods and seeds are compared on one
    set). ``val``: ``val_size`` balanced rows of the ID training pool not in ``train`` (texts are
    unique in a pool), drawn with ``data_seed``; temperature scaling is fitted on it.
    """
    rest = id_pool.loc[~id_pool["text"].isin(set(train["text"]))].reset_index(drop=True)
    return {
        "test": sample_train(id_test, test_size, seed, num_classes),
        "ood": sample_train(ood_test, test_size, seed, num_classes),
        "val": sample_train(rest, val_size, data_seed + VAL_SEED_OFFSET, num_classes),
    }


# --- calibration and tables -----------------------------------------------------------------------


def calibration_row(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Calibration of one run before and after temperature scaling.

    ``arrays``: ``logits``/``labels`` (ID test), ``ood_logits``/``ood_labels``,
    ``val_logits``/``val_labels``. T is fitted on the validation split (NLL,
    :func:`~kernelft.lpft.calibration.fit_temperature`) and applied to both test sets. Keys:
    ``temperature`` and ``<id|ood>_<metric>_<before|after>`` for accuracy, ece, mce, nll, confidence.
    """
    temperature = fit_temperature(arrays["val_logits"], arrays["val_labels"])
    row: dict[str, float] = {"temperature": temperature}
    for split, prefix in (("id", ""), ("ood", "ood_")):
        logits, labels = arrays[f"{prefix}logits"], arrays[f"{prefix}labels"]
        for when, scale in (("before", 1.0), ("after", temperature)):
            metrics = calibration_metrics(np.asarray(logits) / scale, labels)
            for key in ("accuracy", "ece", "mce", "nll", "confidence"):
                row[f"{split}_{key}_{when}"] = metrics[key]
    return row


def run_summary(curve: pd.DataFrame, arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """One row per run: the curve's last evaluation (train/ID/OOD accuracy, feature change, head norm
    at the start and end) plus :func:`calibration_row`."""
    evaluated = curve.dropna(subset=["test_accuracy"])
    first, last = evaluated.iloc[0], evaluated.iloc[-1]
    return {
        "method": str(last["method"]),
        "seed": int(last["seed"]),
        "steps": int(last["step"]),
        "train_accuracy": float(last["train_accuracy"]),
        "id_accuracy": float(last["test_accuracy"]),
        "ood_accuracy": float(last["ood_accuracy"]),
        "feature_change": float(last["feature_change"]),
        "head_norm_start": float(first["head_norm"]),
        "head_norm_end": float(last["head_norm"]),
        **calibration_row(arrays),
    }


def pooled_reliability(runs: Sequence[tuple[str, Mapping[str, np.ndarray], float]], n_bins: int = 15) -> pd.DataFrame:
    """Reliability-diagram rows per method on the ID test set, seeds pooled, before and after scaling.

    ``runs``: ``(method, arrays, temperature)`` per run. Columns: ``method``, ``scaling``
    (``before``/``after``) and :func:`~kernelft.lpft.calibration.reliability_table`'s.
    """
    frames = []
    methods = list(dict.fromkeys(method for method, _, _ in runs))
    for method in methods:
        mine = [(arrays, t) for m, arrays, t in runs if m == method]
        labels = np.concatenate([np.asarray(a["labels"]) for a, _ in mine])
        for when in ("before", "after"):
            logits = np.concatenate([np.asarray(a["logits"]) / (t if when == "after" else 1.0) for a, t in mine])
            table = reliability_table(softmax(logits), labels, n_bins)
            table.insert(0, "scaling", when)
            table.insert(0, "method", method)
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


PAPER_COLUMNS = {
    "id_accuracy": "ID acc",
    "ood_accuracy": "OOD acc",
    "feature_change": "feature change",
    "head_norm_end": "head norm",
    "temperature": "T",
    "id_ece_before": "ECE",
    "id_ece_after": "ECE (TS)",
    "id_mce_before": "MCE",
    "id_mce_after": "MCE (TS)",
    "ood_ece_before": "OOD ECE",
    "ood_ece_after": "OOD ECE (TS)",
}
"""Columns of the paper-style table (Tomihari & Sato's Tables 1-2 and 5) and their headers."""


def paper_table(runs: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Methods as rows, ``mean ± std`` over seeds as strings, in :data:`METHODS` order."""
    stats = mean_sd(runs, "method", list(PAPER_COLUMNS))
    stats["order"] = stats["method"].map({m: i for i, m in enumerate(METHODS)})
    stats = stats.sort_values("order")
    table = pd.DataFrame({"method": stats["method"].map(LABELS).fillna(stats["method"])})
    for column, header in PAPER_COLUMNS.items():
        mean, std = stats[f"{column}_mean"], stats[f"{column}_std"]
        table[header] = [mean_sd_text(m, s, digits, "{mean} ± {sd}") for m, s in zip(mean, std)]
    table["seeds"] = stats["seeds"].to_numpy()
    return table.reset_index(drop=True)


NTK_COLUMNS = ["head_norm", "train_accuracy", "train_loss", "trace_pre_train_effective", "trace_ft_effective",
               "share_trace_ft_effective", "fro_pre_train_effective", "fro_ft_effective", "share_fro_ft_effective",
               "ratio_fro_ft_to_pre_train"]
CALIBRATION_COLUMNS = ["temperature"] + [f"{split}_{metric}_{when}" for split in ("id", "ood")
                                         for metric in ("ece", "mce", "nll", "confidence")
                                         for when in ("before", "after")]


def figure_tables(curves: pd.DataFrame, runs: pd.DataFrame, ntk: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The numbers of F9-F12, mean and std over seeds: ``F9`` head norm and feature change by method
    and evaluation step; ``F10`` the eNTK split by method; ``F11`` train / ID / OOD accuracy and
    feature change by method; ``F12`` temperature, ECE, MCE, NLL and confidence before/after scaling."""
    evaluated = curves.dropna(subset=["test_accuracy"])
    curve_columns = ["head_norm", "feature_change", "train_accuracy", "test_accuracy", "ood_accuracy"]
    return {
        "F9": mean_sd(evaluated, ["method", "step"], curve_columns),
        "F10": mean_sd(ntk, "method", NTK_COLUMNS),
        "F11": mean_sd(runs, "method", ["train_accuracy", "id_accuracy", "ood_accuracy", "feature_change",
                                         "head_norm_start", "head_norm_end"]),
        "F12": mean_sd(runs, "method", CALIBRATION_COLUMNS),
    }
