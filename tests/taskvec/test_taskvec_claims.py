"""F13's claims (kernelft.taskvec.claims) on synthetic per-example scores whose verdicts are certain, and the
evaluation helpers the intervals rest on (which sets a grid point is evaluated on, the evaluation precision)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from kernelft.core import claims as core_claims
from kernelft.core.config import ConfigError
from kernelft.taskvec.arithmetic import (
    Point,
    evaluate_grid,
    evaluated_tasks,
    evaluation_precision,
    grid_points,
    linearized_outputs,
    partners,
)
from kernelft.taskvec.claims import Scores, Settings, claims_table, slope_weights, summary_intervals
from kernelft.taskvec.plots import plot_task_vectors
from kernelft.taskvec.tables import summary_table
from kernelft.taskvec.vectors import parameters_of, set_parameters

N = 200
PAIRS = [{"name": "similar", "tasks": ["a", "b"]}, {"name": "different", "tasks": ["b", "c"]},
         {"name": "different-ac", "tasks": ["a", "c"]}]
SETTINGS = Settings(level=0.95, n_boot=500, margin=0.05, seed=0)


def _synthetic() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-example correctness with known answers, the accuracy table and kernel diagnostics.

    Single τ_t: 80 % correct on t. Added: the similar pair (a+b) equals the single models on every example for
    both models (no interference); b+c: the real model loses every other correct example, the linearized
    none; a+c: the real model none, the linearized every other one. θ0: 50 %; θ0 − τ_t: 0 % on t, and on the
    control the θ0 scores, except τ_c on a, which loses all of θ0's correct examples for both models.
    """
    rng = np.random.default_rng(0)
    zero = {t: (rng.random(N) < 0.5).astype(int) for t in "abc"}
    single = {t: (rng.random(N) < 0.8).astype(int) for t in "abc"}
    halved = {t: single[t] * (np.arange(N) % 2) for t in "abc"}
    rows = []

    def add(model, operation, vector, lam, task, correct):
        rows.append(pd.DataFrame({"model": model, "operation": operation, "vector": vector, "lambda": lam,
                                  "eval_task": task, "example": np.arange(N), "correct": correct}))

    for model in ("real", "linearized"):
        for t in "abc":
            add(model, "zero_shot", "", 0.0, t, zero[t])
            add(model, "single", t, 1.0, t, single[t])
            add(model, "negated", t, 1.0, t, np.zeros(N, dtype=int))
            for other in partners([p["tasks"] for p in PAIRS])[t]:
                add(model, "negated", t, 1.0, other, np.zeros(N, dtype=int) if (t, other) == ("c", "a")
                    else zero[other])
        for t in "ab":
            add(model, "added", "a+b", 1.0, t, single[t])
        for t in "bc":
            add(model, "added", "b+c", 1.0, t, halved[t] if model == "real" else single[t])
        for t in "ac":
            add(model, "added", "a+c", 1.0, t, single[t] if model == "real" else halved[t])
    correct = pd.concat(rows, ignore_index=True)
    accuracy = (correct.groupby(["model", "operation", "vector", "lambda", "eval_task"], as_index=False)["correct"]
                .mean().rename(columns={"correct": "accuracy"}))
    # cka falls with the real interference (0 for a+b and a+c, ~0.4 for b+c), overlap rises with it
    diagnostics = pd.DataFrame({"pair": ["a+b", "b+c", "a+c"], "cka": [0.9, 0.1, 0.5], "overlap": [0.1, 0.9, 0.2],
                                "cka_same_inputs": 1.0, "cross_block": 0.5})
    return correct, accuracy, diagnostics


def _verdict(table: pd.DataFrame, claim: str, model: str, subject: str) -> str:
    row = table[(table["claim"] == claim) & (table["model"] == model) & (table["subject"] == subject)]
    assert len(row) == 1, (claim, model, subject)
    return row["verdict"].iloc[0]


def test_claims_have_the_verdicts_the_scores_force():
    correct, _, diagnostics = _synthetic()
    table = claims_table(Scores(correct), PAIRS, diagnostics, SETTINGS, "similar")
    holds, fails, undecided = core_claims.HOLDS, core_claims.FAILS, core_claims.UNDECIDED
    # similar (a+b) interferes 0 for both models; b+c interferes for the real model only, a+c for the linearized
    assert _verdict(table, "similar_interferes_less", "real", "different vs similar") == holds
    assert _verdict(table, "similar_interferes_less", "linearized", "different vs similar") == undecided
    assert _verdict(table, "similar_interferes_less", "linearized", "different-ac vs similar") == holds
    assert _verdict(table, "linearized_interferes_less", "both", "different") == holds
    assert _verdict(table, "linearized_interferes_less", "both", "different-ac") == fails
    assert _verdict(table, "linearized_interferes_less", "both", "similar") == undecided  # exactly 0: [0, 0]
    for model in ("real", "linearized"):
        for t in "abc":
            assert _verdict(table, "negation_forgets", model, t) == holds
        assert _verdict(table, "negation_spares_control", model, "a on b") == holds  # identical scores
        assert _verdict(table, "negation_spares_control", model, "c on a") == fails  # −50 points
    assert _verdict(table, "interference_grows_with_alignment", "real", "pairs") == fails
    assert _verdict(table, "interference_grows_with_overlap", "real", "pairs") == holds
    # every verdict is the one its interval gives
    for _, row in table.iterrows():
        interval = core_claims.Interval(row["estimate"], row["estimate_low"], row["estimate_high"], 0.95, 1, 3 * N)
        expected = (core_claims.superiority(interval) if row["kind"] == "superiority"
                    else core_claims.equivalence(interval, row["margin"]))
        assert row["verdict"] == expected and row["estimate_low"] <= row["estimate"] <= row["estimate_high"]
    assert (table["examples"] == 3 * N).all() and (table["seeds"] == 1).all()


def test_claims_estimates_are_the_plain_differences():
    correct, _, diagnostics = _synthetic()
    table = claims_table(Scores(correct), PAIRS, diagnostics, SETTINGS, None)
    assert "similar_interferes_less" not in set(table["claim"])
    acc = correct.groupby(["model", "operation", "vector", "eval_task"])["correct"].mean()
    row = table[(table["claim"] == "negation_forgets") & (table["model"] == "real") & (table["subject"] == "b")]
    assert row["estimate"].iloc[0] == pytest.approx(acc[("real", "zero_shot", "", "b")])
    real_bc = np.mean([acc[("real", "single", t, t)] - acc[("real", "added", "b+c", t)] for t in "bc"])
    row = table[(table["claim"] == "linearized_interferes_less") & (table["subject"] == "different")]
    assert row["estimate"].iloc[0] == pytest.approx(real_bc)
    with pytest.raises(ConfigError, match="taskvec.similar_pair='nope'"):
        claims_table(Scores(correct), PAIRS, diagnostics, SETTINGS, "nope")


def test_paired_interval_is_narrower_than_the_unpaired_one():
    """Two models that differ on few examples: the paired interval of the difference is far tighter than
    the spread of either accuracy (the pairing is what decides)."""
    rng = np.random.default_rng(1)
    base = (rng.random(N) < 0.6).astype(int)
    other = base.copy()
    other[np.flatnonzero(base == 0)[:10]] = 1  # 10 more examples right, none lost
    correct = pd.DataFrame({"model": ["real"] * N + ["linearized"] * N, "operation": "single", "vector": "a",
                            "lambda": 1.0, "eval_task": "a", "example": np.tile(np.arange(N), 2),
                            "correct": np.concatenate([base, other])})
    scores = Scores(correct)
    diff = scores.linear([(1.0, ("linearized", "single", "a", 1.0, "a")), (-1.0, ("real", "single", "a", 1.0, "a"))],
                         SETTINGS)
    level = scores.linear([(1.0, ("real", "single", "a", 1.0, "a"))], SETTINGS)
    assert diff.estimate == pytest.approx(10 / N) and diff.low > 0
    assert diff.width < level.width / 2


def test_summary_intervals_cover_the_table_values():
    correct, accuracy, diagnostics = _synthetic()
    dis = pd.DataFrame([{"model": "real", "pair": p, "lambda": 1.0, "eval_task": t, "disentanglement_error": 0.1}
                        for p in ("a+b", "b+c", "a+c") for t in p.split("+")])
    summary = summary_table(accuracy, dis, diagnostics, PAIRS)
    table = summary_intervals(summary, Scores(correct), SETTINGS)
    for column in ("zero_shot", "single", "added", "interference", "normalised", "negated", "control_negated",
                   "negation_drop", "control_change", "pair_interference"):
        assert (table[f"{column}_low"] <= table[column] + 1e-12).all() and (table[column] <= table[f"{column}_high"]
                                                                            + 1e-12).all(), column
    np.testing.assert_allclose(table["interference"], summary["interference"])
    np.testing.assert_allclose(table["negation_drop"], table["zero_shot"] - table["negated"])
    pair = table[(table["pair"] == "b+c") & (table["model"] == "real")]
    assert pair["pair_interference"].nunique() == 1
    assert pair["pair_interference"].iloc[0] == pytest.approx(pair["interference"].mean())
    verdicts = claims_table(Scores(correct), PAIRS, diagnostics, SETTINGS, "similar")
    figure = plot_task_vectors(accuracy, table, PAIRS, verdicts)
    titles = " ".join(ax.get_title() for ax in figure.axes)
    assert "lin < real holds" in titles and "lowers a: real holds" in titles and "does not hold" in titles
    assert len(figure.axes) == 9
    plt.close(figure)


def test_scores_name_what_is_missing():
    correct, _, _ = _synthetic()
    scores = Scores(correct)
    assert scores.size == 3 * N and scores.offset == {"a": 0, "b": N, "c": 2 * N}
    with pytest.raises(KeyError, match="negation_lambdas"):
        scores.score(("real", "negated", "a", 0.5, "a"))
    with pytest.raises(ValueError, match="scores for the 200 examples"):
        Scores(correct.iloc[1:]).score(("real", "zero_shot", "", 0.0, "a"))


def test_slope_weights():
    w = slope_weights([0.0, 1.0, 2.0])
    assert w @ np.array([1.0, 3.0, 5.0]) == pytest.approx(2.0)
    assert slope_weights([0.3, 0.3]) is None and slope_weights([0.3]) is None


def test_points_are_evaluated_on_the_sets_the_table_reads():
    pairs = [p["tasks"] for p in PAIRS[:2]]  # a+b, b+c: c never meets a
    tasks = ["a", "b", "c"]
    assert evaluated_tasks(Point("zero_shot", "", 0.0, ()), tasks, pairs) == tasks
    assert evaluated_tasks(Point("single", "a", 0.5, (("a", 0.5),)), tasks, pairs) == ["a"]
    assert evaluated_tasks(Point("single", "a", 1.0, (("a", 1.0),)), tasks, pairs) == ["a", "b"]
    assert evaluated_tasks(Point("single", "b", 1.0, (("b", 1.0),)), tasks, pairs) == tasks
    assert evaluated_tasks(Point("added", "b+c", 1.5, ()), tasks, pairs) == ["b", "c"]
    assert evaluated_tasks(Point("negated", "c", 0.5, (("c", -0.5),)), tasks, pairs) == ["b", "c"]
    points = grid_points(tasks, pairs, [0.5, 1.0], [1.0])
    rng = np.random.default_rng(0)
    base = {t: rng.normal(size=(4, 2)) for t in tasks}
    outputs = linearized_outputs(base, {t: {s: rng.normal(size=(4, 2)) for s in tasks} for t in tasks})

    class Set:
        def __init__(self, name):
            self.name, self.labels = name, np.array([0, 1, 0, 1])

    accuracy, logits, correct = evaluate_grid(outputs, points, [Set(t) for t in tasks], pairs)
    full, _, _ = evaluate_grid(outputs, points, [Set(t) for t in tasks])
    assert len(accuracy) < len(full) and len(correct) == 4 * len(accuracy)
    # what was evaluated agrees with the full grid
    merged = accuracy.merge(full, on=["operation", "vector", "lambda", "eval_task"], suffixes=("", "_full"))
    assert len(merged) == len(accuracy)
    np.testing.assert_allclose(merged["accuracy"], merged["accuracy_full"])
    assert set(logits[("added", "a+b", 0.5)]) == {"a", "b"}


def test_evaluation_precision_and_set_parameters(tiny_bert_dir, toy_table):
    from kernelft.taskvec.arithmetic import task_set, union_model, union_words
    from kernelft.taskvec.vectors import model_logits

    task = {"labels": ["negative", "positive"], "label_words": ["terrible", "great"],
            "template": "{sentence} It was {mask} ."}
    model, tokenizer = union_model({"name": tiny_bert_dir}, [task], seed=0)
    s = task_set("a", toy_table.head(4), task, tokenizer, union_words([task]), {"name": tiny_bert_dir,
                                                                                 "max_length": 16})
    exact = model_logits(model, s.batch)
    with evaluation_precision(model, "model"):
        np.testing.assert_array_equal(model_logits(model, s.batch).numpy(), exact.numpy())
    with evaluation_precision(model, "bfloat16"):
        low = model_logits(model, s.batch)
    assert low.dtype == torch.bfloat16
    np.testing.assert_allclose(low.float().numpy(), exact.numpy(), atol=0.1 * float(exact.abs().max()) + 1e-2)
    with pytest.raises(ValueError, match="taskvec.eval_dtype='half'"):
        with evaluation_precision(model, "half"):
            pass
    names = [name for name, _ in model.named_parameters()][:3]
    theta_0 = parameters_of(model, names)
    with torch.no_grad():
        for p in list(model.parameters())[:3]:
            p.add_(1.0)
    set_parameters(model, theta_0)
    assert all(torch.equal(p, theta_0[n]) for n, p in model.named_parameters() if n in theta_0)
