"""The LP-FT stage's intervals and verdicts (kernelft.lpft.claims) on synthetic runs whose verdict is certain."""

import numpy as np
import pytest

from kernelft.core.claims import FAILS, HOLDS, UNDECIDED
from kernelft.lpft.calibration import ece, softmax
from kernelft.lpft.claims import Run, decide, ece_bootstrap, ece_terms, matrix, method_intervals, verdict_text

SETTINGS = {"level": 0.95, "n_boot": 400, "margin": 0.05}
N = 200


def _logits(labels: np.ndarray, right: np.ndarray, scale: float) -> np.ndarray:
    """Two-class logits that pick the label where ``right``, with margin ``scale`` (large = over-confident)."""
    predicted = np.where(right, labels, 1 - labels)
    return np.stack([np.where(predicted == 0, scale, 0.0), np.where(predicted == 1, scale, 0.0)], axis=1)


def _run(method: str, seed: int, ood_right: float, scale: float = 2.0, change: float = 1.0) -> Run:
    rng = np.random.default_rng(100 + seed)
    labels = np.arange(N) % 2
    id_right = rng.random(N) < 0.8
    ood = rng.random(N) < ood_right
    return Run(method, seed, {
        "logits": _logits(labels, id_right, scale), "labels": labels,
        "ood_logits": _logits(labels, ood, scale), "ood_labels": labels,
        "val_logits": _logits(labels, rng.random(N) < 0.8, scale), "val_labels": labels,
        "probe_feature_change": change + 0.1 * rng.random(32),
    })


def _runs(ood: dict[str, float], scale: dict[str, float] | None = None, change: dict[str, float] | None = None):
    scale, change = scale or {}, change or {}
    return [_run(m, s, ood[m], scale.get(m, 2.0), change.get(m, 1.0)) for m in ood for s in (0, 1, 2)]


def _verdicts(runs) -> dict[str, str]:
    table = decide(runs, SETTINGS, seed=0)
    return dict(zip(table["claim"], table["verdict"]))


def test_a_clear_ood_gain_and_a_clear_loss_are_decided():
    assert _verdicts(_runs({"ft": 0.3, "lpft": 0.9}))["ood_accuracy"] == HOLDS
    assert _verdicts(_runs({"ft": 0.9, "lpft": 0.3}))["ood_accuracy"] == FAILS


def test_the_same_runs_leave_a_superiority_claim_undecided_and_an_equivalence_claim_holding():
    runs = _runs({"ft": 0.6, "lpft": 0.6})
    runs = [Run(run.method, run.seed, _runs({"ft": 0.6})[run.seed].arrays) for run in runs]  # identical arrays
    verdicts = _verdicts(runs)
    assert verdicts["ood_accuracy"] == UNDECIDED and verdicts["feature_change"] == UNDECIDED
    assert verdicts["ece_after"] == HOLDS


def test_feature_change_and_calibration_claims():
    runs = _runs({"ft": 0.6, "lpft": 0.6, "lora": 0.6, "lplora": 0.6}, scale={"lpft": 30.0},
                 change={"ft": 3.0, "lpft": 0.5, "lora": 0.5, "lplora": 3.0})
    verdicts = _verdicts(runs)
    assert verdicts["feature_change"] == HOLDS  # FT − LP-FT > 0
    assert verdicts["feature_change_lora"] == FAILS  # LoRA − LP-LoRA < 0
    assert verdicts["ece_before"] == HOLDS  # over-confident logits: ECE ≈ 0.2 against ≈ 0.08
    table = decide(runs, SETTINGS, seed=0).set_index("claim")
    assert table.loc["feature_change", "statistic"] == "feature change FT − LP-FT"
    assert table.loc["feature_change", "difference"] == pytest.approx(2.5, abs=0.02)
    assert "→ holds" in verdict_text(table.loc["feature_change"].to_dict() | {"claim": "feature_change"})
    assert "pts" in verdict_text(table.loc["ece_before"].to_dict())


def test_ece_bootstrap_estimate_is_the_seed_mean_of_each_runs_ece():
    runs = _runs({"ft": 0.6}, scale={"ft": 1.5})
    terms = ece_terms(runs, "ft", "before")
    interval = ece_bootstrap({"ft": terms}, lambda m: m["ft"], n_boot=300)
    by_hand = np.mean([ece(softmax(run.arrays["logits"]), run.arrays["labels"]) for run in runs])
    assert interval.estimate == pytest.approx(by_hand)
    assert interval.low < by_hand < interval.high and (interval.seeds, interval.examples) == (3, N)


def test_method_intervals_and_pairing_checks():
    runs = _runs({"ft": 0.6, "lpft": 0.7})
    intervals = method_intervals(runs, SETTINGS, seed=0).set_index(["method", "metric"])
    expected = matrix(runs, "lpft", "ood_accuracy").mean()
    assert intervals.loc[("lpft", "ood_accuracy"), "estimate"] == pytest.approx(expected)
    assert (intervals["low"] <= intervals["estimate"]).all() and (intervals["estimate"] <= intervals["high"]).all()
    broken = [Run(r.method, r.seed, {**r.arrays, "labels": 1 - r.arrays["labels"]}) if r.method == "ft" else r
              for r in runs]
    with pytest.raises(ValueError, match="not the same draw"):
        decide(broken, SETTINGS, seed=0)
    with pytest.raises(ValueError, match="share their seeds"):
        decide([r for r in runs if not (r.method == "ft" and r.seed == 2)], SETTINGS, seed=0)


def test_figure_tables_carry_the_intervals_and_the_verdicts():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from kernelft.lpft.claims import annotate, paper_intervals
    from kernelft.lpft.plots import plot_id_ood

    runs = _runs({"ft": 0.3, "lpft": 0.9})
    intervals, verdicts = method_intervals(runs, SETTINGS, seed=0), decide(runs, SETTINGS, seed=0)
    methods = ["ft", "lpft"]
    f11 = pd.DataFrame({"method": methods, **{f"{c}_{s}": [0.5, 0.6] for c in ("id_accuracy", "ood_accuracy")
                                               for s in ("mean", "std")}})
    tables = {"F9": pd.DataFrame({"method": methods * 2}), "F10": pd.DataFrame(), "F11": f11,
              "F12": pd.DataFrame({"method": methods})}
    tables = annotate(tables, intervals, verdicts)
    f11 = tables["F11"].set_index("method")
    assert f11.loc["lpft", "ood_accuracy_verdict"] == HOLDS and f11.loc["ft", "ood_accuracy_verdict"] is None
    assert f11.loc["ft", "ood_accuracy_ci_low"] < f11.loc["ft", "ood_accuracy_ci_high"]
    assert tables["F12"]["ece_after_verdict"].tolist()[1] in (HOLDS, FAILS, UNDECIDED)
    assert len(tables["F9"]) == 4 and "feature_change_ci_low" in tables["F9"]
    figure = plot_id_ood(tables["F11"].reset_index(), verdicts=verdicts[verdicts["figure"] == "F11"])
    assert "→ holds" in figure._suptitle.get_text() and "95 % interval" in figure._suptitle.get_text()
    table = paper_intervals(pd.DataFrame({"method": ["FT", "LP-FT"], "seeds": [3, 3]}), intervals)
    assert table.columns.tolist()[-1] == "seeds" and table["OOD acc [95 %]"].str.match(r"\d+\.\d \[").all()


def test_no_claim_without_both_methods_gives_an_empty_table_with_its_columns(tmp_path):
    import pandas as pd

    from kernelft.lpft.claims import DECISION_COLUMNS, annotate

    table = decide(_runs({"lp": 0.6, "lpft": 0.7}), SETTINGS, seed=0)  # the smoke config's methods have no FT
    assert table.empty and list(table.columns) == DECISION_COLUMNS
    table.to_csv(tmp_path / "claims.csv", index=False)
    again = pd.read_csv(tmp_path / "claims.csv")  # the figure rules read it back
    tables = {name: pd.DataFrame({"method": ["lp", "lpft"]}) for name in ("F9", "F11", "F12")}
    out = annotate(tables, method_intervals(_runs({"lp": 0.6, "lpft": 0.7}), SETTINGS, seed=0), again)
    assert "ood_accuracy_ci_low" in out["F11"] and not any(c.endswith("_verdict") for c in out["F11"])
