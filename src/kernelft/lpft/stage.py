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

In the default config the distribution shift is a topic shift in the tweet corpus: in-distribution (ID) =
airline tweets, OOD = tweets of the other collections, both binary sentiment; the paper config trains on
Amazon reviews and tests on several OOD sets (``lpft.ood_tasks``), each reported on its own.

The reference's training protocol (HF ``Trainer``, ``scripts/evaluation_scripts/*/run_*_roberta.sh``) is
config: ``epochs`` (steps = ⌈epochs · n / batch⌉, one evaluation per epoch), a batch size per method
(``batch_sizes``), the learning-rate schedule, gradient clipping, dropout, and ``select: best_dev``, the
evaluation step with the best accuracy on the ID validation draw (``val_size``, the split temperature
scaling is fitted on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kernelft.core.config import ConfigError, section_defaults
from kernelft.core.tables import mean_sd, mean_sd_text
from kernelft.lpft import METHODS
from kernelft.lpft.calibration import calibration_metrics, fit_temperature, reliability_table, softmax
from kernelft.text.data import sample_train
from kernelft.training import LINEAR_PROBE_METHODS, LORA_METHODS, set_protocol_keys

if TYPE_CHECKING:  # the runner imports torch; the tables and figures of this stage do not need it
    from kernelft.training.runner import FinetuneConfig

log = logging.getLogger(__name__)

LABELS = {"ft": "FT", "lp": "LP", "lpft": "LP-FT", "lora": "LoRA", "lplora": "LP-LoRA"}
"""Display names of the methods."""

VAL_SEED_OFFSET = 7919
"""Added to the data seed for the validation draw, so it never repeats the training draw's order."""

OOD = "ood"
"""Name of a run's first OOD set (in its curve's columns and its logits file); the i-th is ``ood<i>``."""


def ood_keys(count: int) -> list[str]:
    """Names of a run's OOD sets in ``lpft.ood_tasks`` order: ``ood``, ``ood2``, ``ood3``, ... (a single OOD
    set is ``ood``, as before the stage took several)."""
    return [OOD if i == 0 else f"{OOD}{i + 1}" for i in range(count)]


def ood_keys_in(arrays: Mapping[str, Any]) -> list[str]:
    """The OOD sets a run's logits file holds (``ood_logits``, ``ood2_logits``, ...), in order."""
    count = 0
    while f"{ood_keys(count + 1)[-1]}_logits" in arrays:
        count += 1
    return ood_keys(count)


# --- data -----------------------------------------------------------------------------------------


def section_batch_size(section: Mapping[str, Any], method: str) -> int | None:
    """``batch_sizes[method]`` of an `lpft` section, None where it is not set (the method takes batch_size)."""
    value = (section.get("batch_sizes") or {}).get(method)
    return None if value is None else int(value)


def epoch_ends(epochs: float, n: int, batch_size: int) -> tuple[int, ...]:
    """The steps after which epoch e = 1, 2, ... ends, ⌈e · n / batch_size⌉ (the step whose minibatch holds the
    e·n-th example), and the last step ⌈epochs · n / batch_size⌉ (:func:`kernelft.malladi.runs.finetune_steps`)."""
    last = max(1, math.ceil(epochs * n / batch_size))
    ends = [math.ceil(e * n / batch_size) for e in range(1, math.floor(epochs) + 1)]
    return tuple(sorted({*(step for step in ends if step <= last), last}))


def run_config(section: Mapping[str, Any], method: str, seed: int) -> FinetuneConfig:
    """The runner's config for one (method, seed): the `lpft` section's shared keys (steps, batch_size,
    eval_every, probe_size, lora_rank, the protocol keys lr_schedule ... select) with ``learning_rates[method]``
    as ``lr`` and ``batch_sizes[method]`` (when given) as ``batch_size``. With ``epochs``, the steps are
    ⌈epochs · n / batch_size⌉ and the evaluations the epochs' ends (:func:`epoch_ends`): ``eval_every`` is the
    last step (so step 0 and the last) and ``eval_steps`` the ends."""
    from kernelft.training.runner import FinetuneConfig

    if method not in METHODS:
        raise ConfigError(f"lpft.methods: {method!r} is not one of {METHODS}")
    rates = section.get("learning_rates", {})
    lr = rates.get(method, 1.0) if method == "lp" else rates.get(method)
    if lr is None:
        raise ConfigError(f"lpft.learning_rates has no entry for method {method!r}")
    shared = {key: value for key, value in section.items() if key not in ("learning_rates", "methods", "batch_sizes")}
    overrides: dict[str, Any] = {}
    if section_batch_size(section, method) is not None:
        overrides["batch_size"] = section_batch_size(section, method)
    if section.get("epochs") is not None:
        batch_size = overrides.get("batch_size", shared.get("batch_size"))
        if batch_size is None or "n" not in section:
            raise ConfigError("lpft.epochs needs lpft.n and lpft.batch_size to count the steps of an epoch")
        ends = epoch_ends(float(section["epochs"]), int(section["n"]), int(batch_size))
        overrides.update(steps=ends[-1], eval_every=ends[-1], eval_steps=ends)
    return FinetuneConfig.from_section(shared, name="lpft", method=method, lr=float(lr), seed=seed, loss="ce",
                                       **overrides)


ADDED_KEYS = ("ood_tasks", "epochs", "batch_sizes", "lr_schedule", "warmup_steps", "max_grad_norm", "dropout", "select")
"""`lpft` keys added after the stage's first runs, in a run's params (:func:`run_params`) only where set."""


def run_params(section: Mapping[str, Any], method: str) -> dict[str, Any]:
    """What the outputs of one run (rule lpft_run) depend on, its ``params.lpft``: the `lpft` ``section``'s keys
    in their order, without the method and seed lists (they only name jobs), the NTK's kernel_size and
    max_length (in the model's params), with only ``method``'s learning rate, the LoRA keys only for LoRA
    methods and the probe keys only for probe methods.

    The keys of :data:`ADDED_KEYS` appear only where set, so a run made before they existed keeps its params
    (Snakemake compares the repr of this dict): one OOD task as ``ood_task``, the key ``ood_tasks`` replaced
    (several as ``ood_tasks``); ``epochs`` and the protocol keys where they differ from the schema default
    (with ``epochs``, ``steps`` and ``eval_every`` are left out: they are not used); ``batch_sizes`` only with
    an entry for ``method``.
    """
    defaults = section_defaults("lpft")
    unused = [
        *(() if method in LORA_METHODS else ("lora_rank", "lora_alpha")),
        *(() if method in LINEAR_PROBE_METHODS else ("lp_cv", "lp_C")),
    ]
    skipped = {"methods", "seeds", "kernel_size", "learning_rates", "max_length", *ADDED_KEYS, *unused}
    params: dict[str, Any] = {}
    for key, value in section.items():
        if key == "ood_tasks":
            params.update({"ood_task": value[0]} if len(value) == 1 else {"ood_tasks": list(value)})
        elif key not in skipped:
            params[key] = value
    rates = section["learning_rates"]
    params["learning_rates"] = {method: rates[method]} if method in rates else {}
    if "epochs" in section and section["epochs"] != defaults["epochs"]:
        params["epochs"] = section["epochs"]
    params.update(set_protocol_keys(section))
    if params.get("epochs") is not None:  # the epochs set the steps and the evaluations
        params = {key: value for key, value in params.items() if key not in ("steps", "eval_every")}
    if section_batch_size(section, method) is not None:
        params["batch_sizes"] = {method: section_batch_size(section, method)}
    return params


def evaluation_sets(
    id_test: pd.DataFrame,
    ood_tests: Sequence[pd.DataFrame],
    id_pool: pd.DataFrame,
    train: pd.DataFrame,
    test_size: int,
    val_size: int,
    num_classes: int,
    seed: int,
    data_seed: int,
) -> dict[str, pd.DataFrame]:
    """The ID test, OOD test and ID validation tables of one run: ``test``, one per OOD task (``ood``,
    ``ood2``, ... in the order of ``ood_tests``, :func:`ood_keys`) and ``val``.

    ``test`` and the OOD sets: label-balanced draws of ``test_size`` rows from the tasks' fixed test
    sets with the global ``seed`` (the same for every run, so methods and seeds are compared on one
    set). ``val``: ``val_size`` balanced rows of the ID training pool whose text is neither in ``train``
    nor in the ID test set ``id_test`` (a hub corpus may repeat a text across its splits), drawn with
    ``data_seed``; temperature scaling is fitted on it and ``select: best_dev`` chooses on it.
    """
    if isinstance(ood_tests, pd.DataFrame):
        raise TypeError("evaluation_sets: ood_tests is a list of OOD test tables, one per lpft.ood_tasks entry")
    seen = set(train["text"]) | set(id_test["text"])
    rest = id_pool.loc[~id_pool["text"].isin(seen)].reset_index(drop=True)
    sets = {"test": sample_train(id_test, test_size, seed, num_classes)}
    sets.update({key: sample_train(frame, test_size, seed, num_classes)
                 for key, frame in zip(ood_keys(len(ood_tests)), ood_tests)})
    sets["val"] = sample_train(rest, val_size, data_seed + VAL_SEED_OFFSET, num_classes)
    return sets


# --- calibration and tables -----------------------------------------------------------------------

CALIBRATION_METRICS = ("accuracy", "ece", "mce", "nll", "confidence")
"""What :func:`set_calibration` reports of a test set, before and after temperature scaling."""


def set_calibration(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """``<metric>_<before|after>`` of one test set for :data:`CALIBRATION_METRICS`: its logits as they are and
    divided by ``temperature``."""
    row = {}
    for when, scale in (("before", 1.0), ("after", temperature)):
        metrics = calibration_metrics(np.asarray(logits) / scale, labels)
        row.update({f"{key}_{when}": metrics[key] for key in CALIBRATION_METRICS})
    return row


def calibration_row(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Calibration of one run before and after temperature scaling.

    ``arrays``: ``logits``/``labels`` (ID test), ``<ood>_logits``/``<ood>_labels`` per OOD set
    (:func:`ood_keys`), ``val_logits``/``val_labels``. T is fitted on the validation split (NLL,
    :func:`~kernelft.lpft.calibration.fit_temperature`) and applied to every test set. Keys: ``temperature``,
    ``id_<metric>_<before|after>`` and ``ood_<metric>_<before|after>``, the mean over the OOD sets (the set
    itself when there is one; each set on its own: :func:`ood_rows`), for accuracy, ece, mce, nll, confidence.
    """
    temperature = fit_temperature(arrays["val_logits"], arrays["val_labels"])
    row: dict[str, float] = {"temperature": temperature}
    row.update({f"id_{key}": value for key, value in
                set_calibration(arrays["logits"], arrays["labels"], temperature).items()})
    per_set = [set_calibration(arrays[f"{key}_logits"], arrays[f"{key}_labels"], temperature)
               for key in ood_keys_in(arrays)]
    row.update({f"ood_{key}": float(np.mean([values[key] for values in per_set])) for key in per_set[0]})
    return row


def ood_rows(curve: pd.DataFrame, arrays: Mapping[str, np.ndarray], ood_tasks: Sequence[str]) -> list[dict]:
    """One row per OOD set of a run: ``method``, ``seed``, ``ood_task`` (the name from ``ood_tasks``, in
    :func:`ood_keys` order), ``accuracy`` at the run's selected step and :func:`set_calibration` with the
    run's temperature (fitted on the ID validation split)."""
    keys = ood_keys_in(arrays)
    if len(keys) != len(ood_tasks):
        raise ValueError(f"a run has {len(keys)} OOD sets ({keys}) but lpft.ood_tasks names {len(ood_tasks)}: "
                         f"{list(ood_tasks)}; rerun the lpft_run jobs")
    row = _selected_row(curve, arrays)
    temperature = fit_temperature(arrays["val_logits"], arrays["val_labels"])
    return [{"method": str(row["method"]), "seed": int(row["seed"]), "ood_task": name,
             "accuracy": float(row[f"{key}_accuracy"]),
             **set_calibration(arrays[f"{key}_logits"], arrays[f"{key}_labels"], temperature)}
            for key, name in zip(keys, ood_tasks)]


def evaluated_rows(curve: pd.DataFrame) -> pd.DataFrame:
    """The evaluation rows of a run's curve: those with a feature change (every evaluation step; the ID and OOD
    test accuracies are measured at the selected step only, the runner's ``evaluate: selected``)."""
    return curve.dropna(subset=["feature_change"])


def _selected_row(curve: pd.DataFrame, arrays: Mapping[str, np.ndarray]) -> pd.Series:
    """The curve's row of the run's selected step (``selected_step`` in its logits file; the last evaluation
    for a run written before the key existed, which selected the last step)."""
    evaluated = evaluated_rows(curve)
    if "selected_step" not in arrays:
        return evaluated.iloc[-1]
    return evaluated.loc[evaluated["step"] == int(arrays["selected_step"])].iloc[0]


PER_EXAMPLE = "probe_"
"""Prefix of the per-example feature metrics in a run's logits file: ``probe_feature_change`` ... (m,) each."""


FEATURE_METRICS = ("feature_change", "feature_cosine", "feature_norm_change")
"""The representation metrics of a run at its selected step (:func:`kernelft.lpft.runs.feature_metrics`)."""


def run_summary(curve: pd.DataFrame, arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """One row per run: the curve's row of the selected step (the last for ``select: last``): train / ID
    accuracy, OOD accuracy (the mean over the OOD sets), feature change, head norm at the start and there;
    the cosine similarity and norm difference of the features (NaN for a run written before they were
    recorded); plus :func:`calibration_row`."""
    evaluated = evaluated_rows(curve)
    first, last, chosen = evaluated.iloc[0], evaluated.iloc[-1], _selected_row(curve, arrays)
    ood = [float(chosen[f"{key}_accuracy"]) for key in ood_keys_in(arrays)]
    return {
        "method": str(last["method"]),
        "seed": int(last["seed"]),
        "steps": int(last["step"]),
        "selected_step": int(chosen["step"]),
        "train_accuracy": float(chosen["train_accuracy"]),
        "id_accuracy": float(chosen["test_accuracy"]),
        "ood_accuracy": float(np.mean(ood)),
        "feature_change": float(chosen["feature_change"]),
        **{key: float(arrays[key]) if key in arrays else float("nan") for key in FEATURE_METRICS[1:]},
        "head_norm_start": float(first["head_norm"]),
        "head_norm_end": float(chosen["head_norm"]),
        **calibration_row(arrays),
    }


def summarize(curves: Sequence[pd.DataFrame], arrays: Sequence[Mapping[str, np.ndarray]],
              ood_tasks: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The stage's tables from its runs (one curve and logits file each): ``curves`` (concatenated),
    ``runs`` (:func:`run_summary`), ``ood`` (:func:`ood_rows`, one row per run and OOD set), ``reliability``
    (:func:`pooled_reliability`) and ``table`` (:func:`paper_table`)."""
    runs = pd.DataFrame([run_summary(curve, data) for curve, data in zip(curves, arrays)])
    ood = pd.DataFrame([row for curve, data in zip(curves, arrays) for row in ood_rows(curve, data, ood_tasks)])
    reliability = pooled_reliability([(row.method, data, row.temperature) for row, data in
                                      zip(runs.itertuples(), arrays)])
    return {"curves": pd.concat(list(curves), ignore_index=True), "runs": runs, "ood": ood,
            "reliability": reliability, "table": paper_table(runs, ood)}


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
    "feature_cosine": "feature cos",
    "feature_norm_change": "feature norm diff",
    "head_norm_end": "head norm",
    "temperature": "T",
    "id_ece_before": "ECE",
    "id_ece_after": "ECE (TS)",
    "id_mce_before": "MCE",
    "id_mce_after": "MCE (TS)",
    "ood_ece_before": "OOD ECE",
    "ood_ece_after": "OOD ECE (TS)",
}
"""Columns of the paper-style table (Tomihari & Sato's Tables 1-2 and 5) and their headers; the OOD columns
are means over the OOD sets (each set's accuracy follows, ``OOD acc: <task>``, when there are several)."""


def _method_order(stats: pd.DataFrame) -> pd.DataFrame:
    stats = stats.assign(order=stats["method"].map({m: i for i, m in enumerate(METHODS)}))
    return stats.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)


def per_ood_task(ood: pd.DataFrame, columns: Sequence[str], prefix: str = "ood_") -> pd.DataFrame:
    """``method`` and, for each OOD task t and column c of ``ood`` (:func:`ood_rows`), ``<prefix><c>:<t>_mean``
    and ``_std`` over seeds: the OOD sets side by side, one row per method."""
    stats = mean_sd(ood, ["method", "ood_task"], list(columns))
    wide = pd.DataFrame({"method": list(dict.fromkeys(stats["method"]))})
    for task in dict.fromkeys(stats["ood_task"]):
        part = stats[stats["ood_task"] == task].set_index("method")
        for column in columns:
            for stat in ("mean", "std"):
                wide[f"{prefix}{column}:{task}_{stat}"] = wide["method"].map(part[f"{column}_{stat}"]).to_numpy()
    return wide


def paper_table(runs: pd.DataFrame, ood: pd.DataFrame | None = None, digits: int = 3) -> pd.DataFrame:
    """Methods as rows, ``mean ± std`` over seeds as strings, in :data:`METHODS` order; with ``ood``
    (:func:`ood_rows`) naming two or more OOD tasks, one ``OOD acc: <task>`` column per task after the mean."""
    columns = [c for c in PAPER_COLUMNS if c in runs.columns]
    stats = _method_order(mean_sd(runs, "method", columns))
    table = pd.DataFrame({"method": stats["method"].map(LABELS).fillna(stats["method"])})
    for column in columns:
        mean, std = stats[f"{column}_mean"], stats[f"{column}_std"]
        table[PAPER_COLUMNS[column]] = [mean_sd_text(m, s, digits, "{mean} ± {sd}") for m, s in zip(mean, std)]
    if ood is not None and ood["ood_task"].nunique() > 1:
        wide = stats[["method"]].merge(per_ood_task(ood, ["accuracy"]), on="method", how="left")
        at = table.columns.get_loc("OOD acc") + 1
        for i, task in enumerate(dict.fromkeys(ood["ood_task"])):
            mean, std = wide[f"ood_accuracy:{task}_mean"], wide[f"ood_accuracy:{task}_std"]
            table.insert(at + i, f"OOD acc: {task}", [mean_sd_text(m, s, digits, "{mean} ± {sd}")
                                                      for m, s in zip(mean, std)])
    table["seeds"] = stats["seeds"].to_numpy()
    return table


NTK_COLUMNS = ["head_norm", "train_accuracy", "train_loss", "trace_pre_train_effective", "trace_ft_effective",
               "share_trace_ft_effective", "fro_pre_train_effective", "fro_ft_effective", "share_fro_ft_effective",
               "ratio_fro_ft_to_pre_train"]
CALIBRATION_COLUMNS = ["temperature"] + [f"{split}_{metric}_{when}" for split in ("id", "ood")
                                         for metric in ("ece", "mce", "nll", "confidence")
                                         for when in ("before", "after")]


def figure_tables(curves: pd.DataFrame, runs: pd.DataFrame, ntk: pd.DataFrame,
                  ood: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The numbers of F9-F12, mean and std over seeds: ``F9`` head norm, feature change, train / ID / OOD
    accuracy (the mean over the OOD sets) by method and evaluation step, with each method's feature change,
    cosine similarity and norm difference at the selected step (``selected_feature_change``,
    ``feature_cosine``, ``feature_norm_change``, the same on every row of a method); ``F10`` the eNTK split by
    method; ``F11`` train / ID / OOD accuracy and feature change by method, with each OOD task's accuracy
    (``ood_accuracy:<task>``) from ``ood``; ``F12`` temperature, ECE, MCE, NLL and confidence before/after
    scaling (OOD: the mean over the sets; each set's ECE as ``ood_ece_<before|after>:<task>``)."""
    evaluated = evaluated_rows(curves)
    sets = [f"{key}_accuracy" for key in ood_keys(len(curves.columns)) if f"{key}_accuracy" in curves.columns]
    evaluated = evaluated.assign(ood_accuracy=evaluated[sets].mean(axis=1))  # the mean over the OOD sets
    curve_columns = ["head_norm", "feature_change", "train_accuracy", "test_accuracy", "ood_accuracy"]
    selected = mean_sd(runs.rename(columns={"feature_change": "selected_feature_change"}), "method",
                       ["selected_feature_change", *FEATURE_METRICS[1:]]).drop(columns="seeds")
    f9 = mean_sd(evaluated, ["method", "step"], curve_columns).merge(selected, on="method", how="left")
    f11 = mean_sd(runs, "method", ["train_accuracy", "id_accuracy", "ood_accuracy", "feature_change",
                                   "head_norm_start", "head_norm_end"])
    f12 = mean_sd(runs, "method", CALIBRATION_COLUMNS)
    if ood is not None and len(ood):
        f11 = f11.merge(per_ood_task(ood, ["accuracy"]), on="method", how="left")
        f12 = f12.merge(per_ood_task(ood, ["ece_before", "ece_after"]), on="method", how="left")
    return {"F9": f9, "F10": mean_sd(ntk, "method", NTK_COLUMNS), "F11": f11, "F12": f12}
