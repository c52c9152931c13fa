"""F13's claims, their paired intervals and verdicts (:mod:`kernelft.core.claims`).

The scores are the per-example correctness of every evaluation of the task arithmetic
(:func:`kernelft.taskvec.arithmetic.evaluate_grid`), both models (real, linearized) on the same test examples
with one seed. The test examples of all tasks form one example axis, task after task, so every statistic of
F13 is a function of means over that axis, and one bootstrap draw resamples it once for every quantity it
compares: paired over test examples (the same draw for the real and the linearized model, for single and
added, for θ_0 and the negation, and for the shared task of two pairs). A task's accuracy is the ratio of its
resampled correct count to its resampled example count (``m[score] / m[n:task]``), so a draw that takes more of
one task's examples changes no task's accuracy by itself.

The claims (one row each in :func:`claims_table`; interference = single − added accuracy at λ = 1, averaged
over the pair's two tasks):

- ``similar_interferes_less``: adding the vectors of the similar pair (``taskvec.similar_pair``) interferes
  less than adding those of pair P, per model: interval of interference(P) − interference(similar), superiority.
- ``linearized_interferes_less``: linearized task vectors add with less interference than real ones
  (Ortiz-Jiménez et al., NeurIPS 2023), per pair and over all pairs: interference(real) − interference(linearized).
- ``negation_forgets``: θ_0 − τ_t lowers the accuracy on t below θ_0's (Ilharco et al., ICLR 2023), per task and
  model: accuracy(θ_0) − accuracy(θ_0 − τ_t) on t.
- ``negation_spares_control``: θ_0 − τ_t keeps the accuracy on the other task of a pair, per task, control task
  and model: accuracy(θ_0 − τ_t) − accuracy(θ_0) on the control, equivalence within ``claims.margin``.
- ``interference_grows_with_alignment`` / ``…_with_overlap``: across the pairs, interference rises with the
  centred cross-task kernel alignment (``cka``) / the top-k eigenspace overlap (Sun & Raskutti 2026), per model:
  the least-squares slope of the pairs' interference on the kernel number. The kernel numbers are held fixed
  (they come from one eNTK of ``kernel_size`` training examples per task); the interval covers the test examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kernelft.core import claims
from kernelft.core.config import ConfigError

MODELS = ("real", "linearized")
"""The two models of the arithmetic, as the tables name them."""

Key = tuple[str, str, str, float, str]
"""One evaluation: (model, operation, vector, λ, eval_task)."""

Terms = Sequence[tuple[float, Key]]
"""A linear statistic Σ coefficient × accuracy(key)."""


@dataclass(frozen=True)
class Settings:
    """The ``claims`` config section (level, n_boot, margin) and the seed of the bootstrap draws."""

    level: float = 0.95
    n_boot: int = 2000
    margin: float = 0.05
    seed: int = 0

    @classmethod
    def from_config(cls, section: Mapping, seed: int) -> Settings:
        return cls(float(section["level"]), int(section["n_boot"]), float(section["margin"]), int(seed))


class Scores:
    """Per-example correctness of every evaluation on one example axis (every task's test examples, in turn).

    ``correct``: columns model, operation, vector, lambda, eval_task, example (0..n_t − 1, the row of task t's
    evaluation frame), correct (0/1); the tables of both models concatenated.
    """

    def __init__(self, correct: pd.DataFrame) -> None:
        correct = correct.assign(vector=correct["vector"].fillna(""), lam=correct["lambda"].astype(float).round(6))
        self.tasks = list(dict.fromkeys(correct["eval_task"]))
        sizes = correct.groupby("eval_task")["example"].max() + 1
        self.offset, start = {}, 0
        for task in self.tasks:
            self.offset[task], start = start, start + int(sizes[task])
        self.size = start
        self.sizes = {task: int(sizes[task]) for task in self.tasks}
        self._groups = {key: part for key, part in
                        correct.groupby(["model", "operation", "vector", "lam", "eval_task"], sort=False)}

    def score(self, key: Key) -> np.ndarray:
        """The evaluation's correctness on the example axis, 0 outside its task (size,)."""
        model, operation, vector, lam, task = key
        part = self._groups.get((model, operation, vector, round(float(lam), 6), task))
        if part is None:
            raise KeyError(f"no per-example scores for {key}: was it evaluated (taskvec.lambdas, negation_lambdas)?")
        if len(part) != self.sizes[task] or part["example"].nunique() != self.sizes[task]:
            raise ValueError(f"{key}: {len(part)} scores for the {self.sizes[task]} examples of {task}")
        out = np.zeros(self.size)
        out[self.offset[task] + part["example"].to_numpy()] = part["correct"].to_numpy()
        return out

    def indicator(self, task: str) -> np.ndarray:
        """1 on the task's examples, 0 elsewhere (size,)."""
        out = np.zeros(self.size)
        out[self.offset[task]: self.offset[task] + self.sizes[task]] = 1.0
        return out

    def linear(self, terms: Terms, settings: Settings) -> claims.Interval:
        """The paired interval of Σ c × accuracy(key) (each accuracy a ratio of resampled sums)."""
        data, parts = {}, []
        for i, (coefficient, key) in enumerate(terms):
            data[f"s{i}"], data[f"n:{key[4]}"] = self.score(key), self.indicator(key[4])
            parts.append((coefficient, f"s{i}", f"n:{key[4]}"))

        def statistic(m: Mapping[str, np.ndarray]) -> np.ndarray:
            return sum(c * m[s] / m[n] for c, s, n in parts)

        return claims.bootstrap(data, statistic, settings.n_boot, settings.level, settings.seed)

    def ratio(self, numerator: Key, denominator: Key, settings: Settings) -> claims.Interval:
        """The paired interval of accuracy(numerator) / accuracy(denominator)."""
        data = {"a": self.score(numerator), "b": self.score(denominator),
                "na": self.indicator(numerator[4]), "nb": self.indicator(denominator[4])}
        return claims.bootstrap(data, lambda m: (m["a"] / m["na"]) / (m["b"] / m["nb"]),
                                settings.n_boot, settings.level, settings.seed)


# --- the statistics --------------------------------------------------------------------------------------


def interference_terms(model: str, pair: Sequence[str], lam: float = 1.0) -> list[tuple[float, Key]]:
    """Interference of a pair: mean over its tasks t of accuracy(θ_0 + λτ_t) − accuracy(θ_0 + λ(τ_A + τ_B)) on t."""
    key = "+".join(pair)
    return [term for t in pair for term in ((0.5, (model, "single", t, lam, t)), (-0.5, (model, "added", key, lam, t)))]


def _scaled(terms: Terms, factor: float) -> list[tuple[float, Key]]:
    return [(factor * c, key) for c, key in terms]


def slope_weights(x: Sequence[float]) -> np.ndarray | None:
    """Least-squares slope weights w with slope = Σ w_P y_P for fixed x; None for fewer than two distinct x."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean()
    spread = float((centred**2).sum())
    return centred / spread if len(x) > 1 and spread > 1e-12 else None


def _row(claim: str, statement: str, model: str, subject: str, statistic: str, interval: claims.Interval,
         kind: str, margin: float | None) -> dict:
    verdict = claims.superiority(interval) if kind == "superiority" else claims.equivalence(interval, margin)
    return {"claim": claim, "statement": statement, "model": model, "subject": subject, "statistic": statistic,
            **interval.row("estimate"), "level": interval.level, "examples": interval.examples,
            "seeds": interval.seeds, "kind": kind, "margin": margin if kind == "equivalence" else np.nan,
            "verdict": verdict}


def claims_table(
    scores: Scores,
    pairs: Sequence[Mapping],
    diagnostics: pd.DataFrame,
    settings: Settings,
    similar_pair: str | None = "similar",
) -> pd.DataFrame:
    """One row per claim and subject (module docstring): claim, statement, model, subject, statistic, estimate,
    estimate_low, estimate_high, level, examples, seeds, kind (superiority / equivalence), margin, verdict
    (:data:`kernelft.core.claims.HOLDS`, ``FAILS``, ``UNDECIDED``, read from the interval only).

    ``pairs``: ``{"name", "tasks": [A, B]}``; ``diagnostics``: one row per pair (column ``pair`` = "A+B") with
    ``cka`` and ``overlap``; ``similar_pair``: the name of the similar pair (None: no such claim).
    """
    names = {p["name"]: list(p["tasks"]) for p in pairs}
    rows = []
    sup, eq = "superiority", "equivalence"
    if similar_pair is not None:
        if similar_pair not in names:
            raise ConfigError(f"config key taskvec.similar_pair={similar_pair!r} names no pair of taskvec.pairs "
                              f"({sorted(names)}); name one or set it to null")
        for model in MODELS:
            for name, tasks in names.items():
                if name == similar_pair:
                    continue
                terms = interference_terms(model, tasks) + _scaled(interference_terms(model, names[similar_pair]), -1)
                rows.append(_row("similar_interferes_less", f"{similar_pair} interferes less than {name}", model,
                                 f"{name} vs {similar_pair}", "interference(P) − interference(similar)",
                                 scores.linear(terms, settings), sup, None))
    for name, tasks in names.items():
        terms = interference_terms("real", tasks) + _scaled(interference_terms("linearized", tasks), -1)
        rows.append(_row("linearized_interferes_less", "linearized vectors add with less interference", "both", name,
                         "interference(real) − interference(linearized)", scores.linear(terms, settings), sup, None))
    every = [term for tasks in names.values()
             for term in _scaled(interference_terms("real", tasks) + _scaled(interference_terms("linearized", tasks),
                                                                             -1), 1 / len(names))]
    if len(names) > 1:
        rows.append(_row("linearized_interferes_less", "linearized vectors add with less interference", "both",
                         "all pairs", "mean over pairs of interference(real) − interference(linearized)",
                         scores.linear(every, settings), sup, None))
    controls = {}
    for tasks in names.values():
        for t, other in ((tasks[0], tasks[1]), (tasks[1], tasks[0])):
            controls.setdefault(t, [])
            if other not in controls[t]:
                controls[t].append(other)
    for model in MODELS:
        for t in controls:
            terms = [(1.0, (model, "zero_shot", "", 0.0, t)), (-1.0, (model, "negated", t, 1.0, t))]
            rows.append(_row("negation_forgets", "θ0 − τ_t lowers the accuracy on t", model, t,
                             "accuracy(θ0) − accuracy(θ0 − τ_t) on t", scores.linear(terms, settings), sup, None))
        for t, others in controls.items():
            for other in others:
                terms = [(1.0, (model, "negated", t, 1.0, other)), (-1.0, (model, "zero_shot", "", 0.0, other))]
                rows.append(_row("negation_spares_control", "θ0 − τ_t keeps the accuracy on the control task", model,
                                 f"{t} on {other}", "accuracy(θ0 − τ_t) − accuracy(θ0) on the control",
                                 scores.linear(terms, settings), eq, settings.margin))
    kernel = diagnostics.set_index("pair")
    for column, claim in (("cka", "interference_grows_with_alignment"), ("overlap", "interference_grows_with_overlap")):
        weights = slope_weights([kernel.loc["+".join(tasks), column] for tasks in names.values()])
        if weights is None:
            continue
        for model in MODELS:
            terms = [term for w, tasks in zip(weights, names.values())
                     for term in _scaled(interference_terms(model, tasks), w)]
            rows.append(_row(claim, f"interference rises with the cross-task {column}", model, "pairs",
                             f"slope of interference on {column} across the pairs", scores.linear(terms, settings),
                             sup, None))
    return pd.DataFrame(rows)


def summary_intervals(summary: pd.DataFrame, scores: Scores, settings: Settings) -> pd.DataFrame:
    """:func:`kernelft.taskvec.tables.summary_table` with intervals: ``<column>_low``, ``<column>_high`` for
    zero_shot, single, added, interference, normalised, negated, control_negated, and the new columns
    negation_drop (zero_shot − negated), control_change (control_negated − control_zero_shot) and
    pair_interference (the pair's interference, mean over its two tasks). added_best (λ picked on the test sets)
    gets none."""
    out = []
    for _, row in summary.iterrows():
        model, task, pair = row["model"], row["task"], row["pair"]
        a, b = pair.split("+")
        other = b if task == a else a
        zero, single = (model, "zero_shot", "", 0.0, task), (model, "single", task, 1.0, task)
        added, negated = (model, "added", pair, 1.0, task), (model, "negated", task, 1.0, task)
        control_zero, control = (model, "zero_shot", "", 0.0, other), (model, "negated", task, 1.0, other)
        linear = {
            "zero_shot": [(1.0, zero)], "single": [(1.0, single)], "added": [(1.0, added)],
            "interference": [(1.0, single), (-1.0, added)], "negated": [(1.0, negated)],
            "control_negated": [(1.0, control)], "negation_drop": [(1.0, zero), (-1.0, negated)],
            "control_change": [(1.0, control), (-1.0, control_zero)],
            "pair_interference": interference_terms(model, (a, b)),
        }
        extra = {}
        for column, terms in linear.items():
            extra.update(scores.linear(terms, settings).row(column))
        extra.update(scores.ratio(added, single, settings).row("normalised"))
        out.append({**row.to_dict(), **extra})
    return pd.DataFrame(out)
