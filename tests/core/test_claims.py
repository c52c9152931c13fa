"""The paired two-way bootstrap and the verdicts read from it (kernelft.core.claims)."""

import numpy as np
import pytest

from kernelft.core import claims
from kernelft.core.claims import FAILS, HOLDS, UNDECIDED, Interval


def test_identical_methods_differ_by_exactly_zero():
    scores = np.random.default_rng(0).integers(0, 2, size=(3, 400))
    interval = claims.difference(scores, scores)
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert (interval.seeds, interval.examples) == (3, 400)


def test_one_method_interval_matches_the_binomial_standard_error():
    rng = np.random.default_rng(1)
    correct = rng.random(2000) < 0.7
    interval = claims.mean(correct, n_boot=4000)
    p = correct.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / correct.size)
    assert interval.estimate == pytest.approx(p)
    assert interval.low == pytest.approx(p - half, abs=0.004)
    assert interval.high == pytest.approx(p + half, abs=0.004)


def test_pairing_cancels_what_two_methods_share():
    """b differs from a on 10 of 400 examples: the paired interval of a − b is far narrower than the
    interval of either accuracy, which an unpaired comparison would have to add up."""
    rng = np.random.default_rng(2)
    a = (rng.random((3, 400)) < 0.6).astype(float)
    b = a.copy()
    b[:, :10] = 1 - b[:, :10]
    paired = claims.difference(a, b)
    assert paired.width < 0.5 * claims.mean(a).width
    assert paired.estimate == pytest.approx(a.mean() - b.mean())


def test_seed_variation_widens_the_interval():
    """Seeds that disagree as a whole (a seed effect) give a wider interval than seeds that agree."""
    rng = np.random.default_rng(3)
    base = (rng.random((1, 400)) < 0.5).astype(float)
    same = np.repeat(base, 3, axis=0)
    shifted = same + np.array([[-0.1], [0.0], [0.1]])
    assert claims.mean(shifted).width > 1.5 * claims.mean(same).width


def test_draws_are_seeded():
    scores = np.random.default_rng(4).random((2, 50))
    assert claims.mean(scores, seed=7) == claims.mean(scores, seed=7)
    assert claims.mean(scores, seed=7) != claims.mean(scores, seed=8)


def test_any_statistic_of_the_means():
    a, b = np.ones((2, 10)), np.zeros((2, 10))
    interval = claims.bootstrap({"a": a, "b": b}, lambda m: np.abs(m["b"] - 0.5) - np.abs(m["a"]))
    assert (interval.low, interval.high) == (-0.5, -0.5)


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="share one"):
        claims.difference(np.zeros((2, 10)), np.zeros((3, 10)))
    with pytest.raises(ValueError, match="non-finite"):
        claims.mean(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="non-empty"):
        claims.mean(np.zeros((0,)))


def _interval(low, high):
    return Interval((low + high) / 2, low, high, 0.95, 3, 400)


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (0.01, 0.05, HOLDS), (-0.05, -0.01, FAILS), (-0.01, 0.05, UNDECIDED), (0.0, 0.02, UNDECIDED),
])
def test_superiority_verdict(low, high, verdict):
    assert claims.superiority(_interval(low, high)) == verdict


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (-0.03, 0.04, HOLDS), (0.06, 0.10, FAILS), (-0.12, -0.05, FAILS), (0.02, 0.08, UNDECIDED),
    (-0.08, 0.08, UNDECIDED),
])
def test_equivalence_verdict(low, high, verdict):
    assert claims.equivalence(_interval(low, high), margin=0.05) == verdict


def test_interval_text_in_points():
    assert claims.interval_text(Interval(0.0123, -0.01, 0.0345, 0.95, 3, 400)) == "1.2 [-1.0, 3.5]"
