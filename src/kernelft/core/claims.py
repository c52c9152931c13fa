"""Intervals for the comparisons the figures draw, and the verdicts on the papers' claims computed from them.

Every compared number of F1–F4, F9–F12 and F13 is a mean of per-example scores (1 if an example is
classified correctly, else 0; or a per-example loss or feature change) over the test examples and
seeds of a run grid. Two methods evaluated on the same test examples with the same seeds are compared
*paired*: each bootstrap draw resamples the seeds and the test examples once and applies the draw to
both methods, so that the example-to-example and seed-to-seed variation they share cancels.

The interval is the two-way ("pigeonhole") bootstrap of Owen (2007, "The pigeonhole bootstrap", Ann.
Appl. Stat. 1(2)): for a score matrix X (S seeds × N examples), a draw takes seed weights
w ~ Multinomial(S, 1/S) and example weights v ~ Multinomial(N, 1/N) independently and gives the
resampled mean ``wᵀ X v / (S N)``; the percentile interval of a statistic of such means over
``n_boot`` draws is reported. With one seed only the examples are resampled (the interval then
ignores seed-to-seed variation, which one seed cannot show).

Verdicts (:func:`superiority`, :func:`equivalence`) read only the interval: a claim "a > b" holds when
the interval of a − b lies above 0, does not hold when it lies below 0, and is undecided at this size
otherwise; a claim "a ≈ b" holds when the interval lies inside (−margin, margin), does not hold when it
lies wholly outside [−margin, margin], and is undecided otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided at this size"
"""The three verdicts a caption can state."""

METHOD = "two-way bootstrap over seeds and test examples, paired (Owen 2007)"
"""How every interval is computed, for captions and metadata."""


@dataclass(frozen=True)
class Interval:
    """A statistic with its percentile interval: ``estimate`` (on the data as drawn), ``low``, ``high``,
    ``level``, and the grid it was computed on (``seeds`` × ``examples``)."""

    estimate: float
    low: float
    high: float
    level: float
    seeds: int
    examples: int

    @property
    def width(self) -> float:
        """``high − low``."""
        return self.high - self.low

    def row(self, prefix: str) -> dict[str, float | int]:
        """The interval as table columns ``<prefix>``, ``<prefix>_low``, ``<prefix>_high`` (no level or grid)."""
        return {prefix: self.estimate, f"{prefix}_low": self.low, f"{prefix}_high": self.high}

    def as_dict(self) -> dict[str, float | int]:
        """All fields, for metadata."""
        return asdict(self)


def score_matrix(scores: np.ndarray | list, name: str = "scores") -> np.ndarray:
    """``scores`` as a finite float64 (seeds, examples) matrix; a 1-D array is one seed."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"{name}: expected a non-empty (seeds, examples) matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name}: {int((~np.isfinite(matrix)).sum())} non-finite scores")
    return matrix


def bootstrap(
    scores: Mapping[str, np.ndarray],
    statistic: Callable[[Mapping[str, np.ndarray]], np.ndarray],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The paired two-way bootstrap interval of ``statistic`` of the grand means of ``scores``.

    ``scores``: name → (seeds, examples) matrix, all of one shape, row s and column i the same seed and
    test example in every matrix (that is the pairing). ``statistic`` maps name → array of means to an
    array (it is called once on the plain means, shape (), and once on all draws, shape (n_boot,)), e.g.
    ``lambda m: m["ft"] − m["kernel"]``. ``seed`` seeds the draws (numpy's default generator).
    """
    matrices = {name: score_matrix(value, name) for name, value in scores.items()}
    shapes = {matrix.shape for matrix in matrices.values()}
    if len(shapes) != 1:
        raise ValueError(f"paired scores must share one (seeds, examples) shape, got "
                         f"{ {name: m.shape for name, m in matrices.items()} }")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a value in (0, 1)")
    (n_seeds, n_examples), = shapes
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(np.float64)
    example_weights = rng.multinomial(n_examples, np.full(n_examples, 1 / n_examples), size=n_boot).astype(np.float64)
    scale = 1.0 / (n_seeds * n_examples)
    drawn = {name: np.einsum("bs,se,be->b", seed_weights, matrix, example_weights) * scale
             for name, matrix in matrices.items()}
    plain = {name: np.asarray(matrix.mean()) for name, matrix in matrices.items()}
    values = np.asarray(statistic(drawn), dtype=np.float64)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(float(statistic(plain)), float(low), float(high), level, n_seeds, n_examples)


def difference(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """The paired interval of mean(a) − mean(b) (:func:`bootstrap`)."""
    return bootstrap({"a": a, "b": b}, lambda m: m["a"] - m["b"], n_boot, level, seed)


def mean(scores: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """The interval of one method's mean score (:func:`bootstrap`)."""
    return bootstrap({"x": scores}, lambda m: m["x"], n_boot, level, seed)


def superiority(interval: Interval) -> str:
    """Verdict on "a > b" from the interval of a − b: :data:`HOLDS` above 0, :data:`FAILS` below 0,
    else :data:`UNDECIDED`."""
    if interval.low > 0:
        return HOLDS
    if interval.high < 0:
        return FAILS
    return UNDECIDED


def equivalence(interval: Interval, margin: float) -> str:
    """Verdict on "a ≈ b within ``margin``" from the interval of a − b: :data:`HOLDS` inside (−margin,
    margin), :data:`FAILS` wholly beyond ±margin, else :data:`UNDECIDED`."""
    if margin <= 0:
        raise ValueError(f"margin={margin}: expected a positive equivalence margin")
    if -margin < interval.low and interval.high < margin:
        return HOLDS
    if interval.low >= margin or interval.high <= -margin:
        return FAILS
    return UNDECIDED


def interval_text(interval: Interval, scale: float = 100.0, digits: int = 1) -> str:
    """A table cell ``estimate [low, high]`` times ``scale`` (accuracies in points)."""
    values = (interval.estimate * scale, interval.low * scale, interval.high * scale)
    return "{:.{d}f} [{:.{d}f}, {:.{d}f}]".format(*values, d=digits)
