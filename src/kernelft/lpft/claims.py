"""The claims of Tomihari & Sato (NeurIPS 2024) that F9, F11 and F12 test, decided from 95 % intervals.

Every run of the stage is evaluated on the same test examples (the ID and OOD draws use the global seed), and
every method runs the same data seeds, so two methods are compared *paired* over seeds and examples with the
two-way bootstrap of :mod:`kernelft.core.claims` (Owen 2007): a method's score matrix is (seeds × examples), row s
the run of data seed s, column i the i-th test example. Per-example scores:

- accuracy: 1 if the selected step's logits classify the example correctly, else 0 (ID: the ID test draw; OOD:
  the examples of every OOD draw side by side, so their mean is the mean over the OOD sets of equal size);
- feature change: ‖φ(x_i) − φ₀(x_i)‖ of the probe examples (the first ``lpft.probe_size`` ID test examples,
  :func:`kernelft.lpft.runs.feature_changes`);
- ECE (the ID test set; OOD: the examples of every OOD set pooled) is not a mean of per-example scores:
  :func:`ece_bootstrap` draws the same seed and example weights as :func:`kernelft.core.claims.bootstrap` and
  recomputes each run's 15-bin ECE on the weighted examples (the bin sums Σ_i v_i (correct_i − conf_i) per bin),
  then averages over the weighted seeds. ECE is biased upwards on resampled examples (sampling noise in the bins
  adds to the gaps), so a method's interval sits above its estimate; the paired differences are far less
  affected. After temperature scaling each run keeps the T fitted on its validation draw (the draw is not
  resampled), so the interval leaves out the uncertainty of T.

The claims (:data:`CLAIMS`) and how each verdict is read: "LP-X beats X" holds when the whole interval of the
difference lies above 0, does not hold when it lies below 0, and is undecided at this size otherwise
(:func:`kernelft.core.claims.superiority`); "LP-FT's ECE after scaling matches FT's" (ID, and OOD) holds when the
interval lies inside ±``claims.margin`` (:func:`kernelft.core.claims.equivalence`). Nothing is tuned to a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kernelft.core import claims
from kernelft.lpft.calibration import N_BINS, fit_temperature, softmax
from kernelft.lpft.stage import LABELS, PER_EXAMPLE, ood_keys_in


@dataclass(frozen=True)
class Claim:
    """One claim: ``method`` against ``reference`` on ``metric`` (``kind`` superiority or equivalence), shown in
    ``figure``. ``sign`` +1 when the claim is ``method − reference > 0``, −1 when ``reference − method > 0``."""

    name: str
    figure: str
    metric: str
    method: str
    reference: str
    kind: str
    sign: int
    text: str


CLAIMS = (
    Claim("ood_accuracy", "F11", "ood_accuracy", "lpft", "ft", "superiority", 1,
          "LP-FT keeps OOD accuracy better than FT: OOD accuracy LP-FT − FT > 0"),
    Claim("ood_accuracy_lora", "F11", "ood_accuracy", "lplora", "lora", "superiority", 1,
          "LP-LoRA keeps OOD accuracy better than LoRA: OOD accuracy LP-LoRA − LoRA > 0"),
    Claim("feature_change", "F9", "feature_change", "lpft", "ft", "superiority", -1,
          "LP-FT changes the features less than FT: feature change FT − LP-FT > 0"),
    Claim("feature_change_lora", "F9", "feature_change", "lplora", "lora", "superiority", -1,
          "LP-LoRA changes the features less than LoRA: feature change LoRA − LP-LoRA > 0"),
    Claim("ece_before", "F12", "id_ece_before", "lpft", "ft", "superiority", 1,
          "Before temperature scaling LP-FT is worse calibrated than FT: ID ECE LP-FT − FT > 0"),
    Claim("ece_after", "F12", "id_ece_after", "lpft", "ft", "equivalence", 1,
          "After temperature scaling LP-FT is calibrated like FT: |ID ECE LP-FT − FT| < claims.margin"),
    Claim("ood_ece_before", "F12", "ood_ece_before", "lpft", "ft", "superiority", 1,
          "Before temperature scaling LP-FT is worse calibrated than FT on the OOD sets: OOD ECE LP-FT − FT > 0"),
    Claim("ood_ece_after", "F12", "ood_ece_after", "lpft", "ft", "equivalence", 1,
          "After temperature scaling LP-FT is calibrated like FT on the OOD sets: |OOD ECE LP-FT − FT| < margin"),
)
"""The claims of Tomihari & Sato the stage decides, each where both its methods run."""

METRICS = ("id_accuracy", "ood_accuracy", "feature_change", "id_ece_before", "id_ece_after", "ood_ece_before",
           "ood_ece_after")
"""The per-method statistics given an interval (:func:`method_intervals`)."""

METRIC_NAMES = {"id_accuracy": "ID acc.", "ood_accuracy": "OOD acc.", "feature_change": "feature change",
                "id_ece_before": "ECE", "id_ece_after": "ECE (TS)", "ood_ece_before": "OOD ECE",
                "ood_ece_after": "OOD ECE (TS)"}
"""Short names of :data:`METRICS` for figures."""


# --- per-example scores ---------------------------------------------------------------------------


def correct(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1.0 where the logits' top class is the label, else 0.0, shape (n,)."""
    return (softmax(logits).argmax(axis=1) == np.asarray(labels)).astype(np.float64)


def scores(arrays: Mapping[str, np.ndarray], metric: str) -> np.ndarray:
    """One run's per-example scores of ``metric``: ``id_accuracy`` (ID test), ``ood_accuracy`` (every OOD set's
    examples in turn) or ``feature_change`` (the probe examples; needs a run written with ``probe_*``)."""
    if metric == "id_accuracy":
        return correct(arrays["logits"], arrays["labels"])
    if metric == "ood_accuracy":
        keys = ood_keys_in(arrays)
        return np.concatenate([correct(arrays[f"{key}_logits"], arrays[f"{key}_labels"]) for key in keys])
    if metric == "feature_change":
        key = f"{PER_EXAMPLE}feature_change"
        if key not in arrays:
            raise ValueError(f"a run's logits file has no {key!r} (written before the per-example feature metrics); "
                             "rerun the lpft_run jobs")
        return np.asarray(arrays[key], dtype=np.float64)
    raise ValueError(f"no per-example scores for {metric!r}: expected id_accuracy, ood_accuracy or feature_change")


@dataclass(frozen=True)
class Run:
    """A run as the claims see it: ``method``, data ``seed`` and the arrays of its logits file."""

    method: str
    seed: int
    arrays: Mapping[str, np.ndarray]


def _grid(runs: Sequence[Run], method: str) -> list[Run]:
    """The runs of ``method`` in seed order."""
    mine = sorted((run for run in runs if run.method == method), key=lambda run: run.seed)
    if not mine:
        raise ValueError(f"no runs of method {method!r}")
    return mine


def _check_pairing(runs: Sequence[Run], methods: Sequence[str]) -> None:
    """Methods compared paired must share their seeds and their test examples (checked by their labels)."""
    grids = {method: _grid(runs, method) for method in methods}
    seeds = {method: [run.seed for run in grid] for method, grid in grids.items()}
    if len({tuple(s) for s in seeds.values()}) != 1:
        raise ValueError(f"paired methods must share their seeds, got {seeds}")
    first = grids[methods[0]][0].arrays
    for grid in grids.values():
        for run in grid:
            for key in ["labels", *(f"{k}_labels" for k in ood_keys_in(first))]:
                if not np.array_equal(run.arrays[key], first[key]):
                    raise ValueError(f"{run.method} seed {run.seed}: its {key} differ from the other runs', so its "
                                     "test examples are not the same draw; rerun the lpft_run jobs with one seed")


def matrix(runs: Sequence[Run], method: str, metric: str) -> np.ndarray:
    """The (seeds × examples) score matrix of ``method`` (:func:`scores`)."""
    return np.stack([scores(run.arrays, metric) for run in _grid(runs, method)])


# --- ECE under the two-way bootstrap ------------------------------------------------------------------


def _ece_terms(logits: np.ndarray, labels: np.ndarray, temperature: float, n_bins: int = N_BINS) -> np.ndarray:
    """(n, n_bins): example i's (correct_i − conf_i) in the column of its confidence bin, 0 elsewhere, so that
    ECE = Σ_b |Σ_i D_ib| / n (:func:`kernelft.lpft.calibration.ece`'s bins, closed on the right)."""
    p = softmax(np.asarray(logits, dtype=np.float64) / temperature)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    terms = np.zeros((len(conf), n_bins))
    terms[np.arange(len(conf)), index] = hit - conf
    return terms


def ece_bootstrap(
    terms: Mapping[str, np.ndarray],
    statistic,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> claims.Interval:
    """The paired two-way bootstrap interval of ``statistic`` of seed-mean ECEs.

    ``terms``: name → (seeds, examples, bins) array of :func:`_ece_terms` per run. Each draw takes seed weights
    w ~ Multinomial(S, 1/S) and example weights v ~ Multinomial(N, 1/N) in the order and with the generator of
    :func:`kernelft.core.claims.bootstrap`, and gives each method ``(1/S) Σ_s w_s Σ_b |Σ_i v_i D_sib| / N``, the
    ECE of run s on the resampled examples averaged over the resampled seeds. ``statistic`` maps name → array
    of those (shape () on the data as drawn, (n_boot,) on the draws) to an array.
    """
    shapes = {np.shape(value) for value in terms.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"paired ECE terms must share one (seeds, examples, bins) shape, got {shapes}")
    (n_seeds, n_examples, _), = shapes
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(np.float64)
    example_weights = rng.multinomial(n_examples, np.full(n_examples, 1 / n_examples), size=n_boot).astype(np.float64)
    drawn, plain = {}, {}
    for name, value in terms.items():
        d = np.asarray(value, dtype=np.float64)
        per_run = np.abs(np.einsum("be,sek->bsk", example_weights, d)).sum(-1) / n_examples  # (n_boot, seeds)
        drawn[name] = (seed_weights * per_run).sum(1) / n_seeds
        plain[name] = np.asarray(np.abs(d.sum(1)).sum(-1).mean() / n_examples)
    values = np.asarray(statistic(drawn), dtype=np.float64)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return claims.Interval(float(statistic(plain)), float(low), float(high), level, n_seeds, n_examples)


def ece_terms(runs: Sequence[Run], method: str, when: str, split: str = "id") -> np.ndarray:
    """(seeds, examples, bins) ECE terms of ``method`` on the ID test set (``split`` ``id``) or on the examples of
    every OOD set pooled (``ood``; with one OOD set its ECE, with several the ECE of their union, not the mean of
    theirs), ``when`` ``before`` or ``after`` temperature scaling (T fitted on each run's validation draw)."""
    grid = _grid(runs, method)
    temperatures = [fit_temperature(run.arrays["val_logits"], run.arrays["val_labels"]) if when == "after" else 1.0
                    for run in grid]

    def split_of(arrays):
        if split == "id":
            return arrays["logits"], arrays["labels"]
        keys = ood_keys_in(arrays)
        return (np.concatenate([arrays[f"{key}_logits"] for key in keys]),
                np.concatenate([arrays[f"{key}_labels"] for key in keys]))

    return np.stack([_ece_terms(*split_of(run.arrays), t) for run, t in zip(grid, temperatures)])


# --- intervals and verdicts ------------------------------------------------------------------------


def _interval(runs: Sequence[Run], metric: str, methods: Sequence[str], statistic, settings: Mapping,
              seed: int) -> claims.Interval:
    """The paired interval of ``statistic`` of ``methods``' ``metric``."""
    n_boot, level = int(settings.get("n_boot", 2000)), float(settings.get("level", 0.95))
    if "_ece_" in metric:
        split, when = metric.split("_ece_")
        return ece_bootstrap({m: ece_terms(runs, m, when, split) for m in methods}, statistic, n_boot, level, seed)
    return claims.bootstrap({m: matrix(runs, m, metric) for m in methods}, statistic, n_boot, level, seed)


def method_intervals(runs: Sequence[Run], settings: Mapping, seed: int) -> pd.DataFrame:
    """Per method and :data:`METRICS` entry, its mean with its interval over seeds and examples: columns
    ``method``, ``metric``, ``estimate``, ``low``, ``high``, ``level``, ``seeds``, ``examples``. A method without
    feature steps (LP) has feature change 0 by definition; it is given as such."""
    rows = []
    for method in dict.fromkeys(run.method for run in runs):
        for metric in METRICS:
            interval = _interval(runs, metric, [method], lambda m, k=method: m[k], settings, seed)
            rows.append({"method": method, "metric": metric, **interval.as_dict()})
    return pd.DataFrame(rows)


DECISION_COLUMNS = ["claim", "figure", "statement", "method", "reference", "metric", "statistic", "kind", "difference",
                    "low", "high", "level", "margin", "seeds", "examples", "verdict", "interval_method"]
"""The columns of :func:`decide`'s table (also when no claim's methods ran, e.g. the smoke config)."""


def decide(runs: Sequence[Run], settings: Mapping, seed: int) -> pd.DataFrame:
    """The verdict on each claim of :data:`CLAIMS` whose methods both ran: columns ``claim``, ``figure``,
    ``statement``, ``method``, ``reference``, ``metric``, ``statistic`` (e.g. "OOD acc. LP-FT − FT"), ``kind``,
    ``difference`` (the claimed direction's
    difference: method − reference, or reference − method for "changes less"), ``low``, ``high``, ``level``,
    ``margin`` (equivalence only), ``seeds``, ``examples``, ``verdict``, ``interval_method``."""
    present = {run.method for run in runs}
    margin = float(settings.get("margin", 0.05))
    rows = []
    for claim in CLAIMS:
        if not {claim.method, claim.reference} <= present:
            continue
        _check_pairing(runs, [claim.method, claim.reference])
        interval = _interval(runs, claim.metric, [claim.method, claim.reference],
                             lambda m, c=claim: c.sign * (m[c.method] - m[c.reference]), settings, seed)
        if claim.kind == "superiority":
            verdict = claims.superiority(interval)
        else:
            verdict = claims.equivalence(interval, margin)
        first, second = (claim.method, claim.reference) if claim.sign > 0 else (claim.reference, claim.method)
        statistic = f"{METRIC_NAMES[claim.metric]} {LABELS[first]} − {LABELS[second]}"
        rows.append({"claim": claim.name, "figure": claim.figure, "statement": claim.text, "method": claim.method,
                     "reference": claim.reference, "metric": claim.metric, "statistic": statistic, "kind": claim.kind,
                     "difference": interval.estimate, "low": interval.low, "high": interval.high,
                     "level": interval.level, "margin": margin if claim.kind == "equivalence" else np.nan,
                     "seeds": interval.seeds, "examples": interval.examples, "verdict": verdict,
                     "interval_method": claims.METHOD})
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def verdict_text(row: Mapping) -> str:
    """One line for a figure, e.g. ``OOD acc. LP-FT − FT: +2.1 [−0.5, 4.7] pts → undecided at this size``
    (accuracies and ECE in points, feature change as is)."""
    points = row["metric"] != "feature_change"
    scale, digits, unit = (100.0, 1, " pts") if points else (1.0, 2, "")
    low, high = row["low"] * scale, row["high"] * scale
    values = f"{row['difference'] * scale:+.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{row['statistic']}: {values}{unit} → {row['verdict']}"


# --- the intervals and verdicts in the figures' tables -------------------------------------------------

FIGURE_METRICS = {"F9": ("feature_change",), "F11": ("id_accuracy", "ood_accuracy"),
                  "F12": ("id_ece_before", "id_ece_after", "ood_ece_before", "ood_ece_after")}
"""The per-method intervals each figure's table carries (``<metric>_ci_low``, ``<metric>_ci_high``)."""


def annotate(tables: Mapping[str, pd.DataFrame], intervals: pd.DataFrame, verdicts: pd.DataFrame
             ) -> dict[str, pd.DataFrame]:
    """F9, F11 and F12's tables (:func:`kernelft.lpft.stage.figure_tables`) with the intervals of
    :func:`method_intervals` (``<metric>_ci_low``/``_ci_high`` on every row of a method; F9: of the selected
    step's feature change) and the verdicts of :func:`decide` on the figure's claims (``<claim>_statistic``,
    ``_difference``, ``_low``, ``_high``, ``_verdict`` on the row of the claim's LP method, empty elsewhere).
    Other tables pass through."""
    out = dict(tables)
    for figure, metrics in FIGURE_METRICS.items():
        table = out[figure].copy()
        for metric in metrics:
            part = intervals[intervals["metric"] == metric].set_index("method")
            for side in ("low", "high"):
                table[f"{metric}_ci_{side}"] = table["method"].map(part[side])
        tasks = [c.removesuffix("_mean") for c in table.columns
                 if c.startswith("ood_accuracy:") and c.endswith("_mean")]
        if len(tasks) == 1:  # one OOD set: its accuracy is the mean over the sets
            for side in ("low", "high"):
                table[f"{tasks[0]}_ci_{side}"] = table["ood_accuracy_ci_" + side]
        for row in verdicts[verdicts["figure"] == figure].to_dict("records") if len(verdicts) else []:
            mine = table["method"] == row["method"]
            for key in ("statistic", "difference", "low", "high", "verdict"):
                column = f"{row['claim']}_{key}"
                table[column] = pd.Series([row[key] if m else None for m in mine], index=table.index, dtype=object)
        out[figure] = table
    return out


PAPER_INTERVALS = {"id_accuracy": "ID acc [95 %]", "ood_accuracy": "OOD acc [95 %]",
                   "feature_change": "feature change [95 %]", "id_ece_before": "ECE [95 %]",
                   "id_ece_after": "ECE (TS) [95 %]", "ood_ece_before": "OOD ECE [95 %]",
                   "ood_ece_after": "OOD ECE (TS) [95 %]"}
"""Interval columns of the paper-style table, each ``estimate [low, high]`` (accuracy and ECE in points)."""


def paper_intervals(table: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """The paper-style table (:func:`kernelft.lpft.stage.paper_table`, methods by display name) with
    :data:`PAPER_INTERVALS` columns before ``seeds``."""
    out = table.copy()
    names = {LABELS.get(m, m): m for m in intervals["method"]}
    at = out.columns.get_loc("seeds")
    for i, (metric, header) in enumerate(PAPER_INTERVALS.items()):
        part = intervals[intervals["metric"] == metric].set_index("method")
        scale, digits = (1.0, 3) if metric == "feature_change" else (100.0, 1)
        cells = []
        for label in out["method"]:
            row = part.loc[names.get(label, label)]
            interval = claims.Interval(row["estimate"], row["low"], row["high"], row["level"], int(row["seeds"]),
                                       int(row["examples"]))
            cells.append(claims.interval_text(interval, scale, digits))
        out.insert(at + i, header, cells)
    return out
