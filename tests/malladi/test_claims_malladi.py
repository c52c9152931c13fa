"""F1–F4's claims decided from paired per-example scores (kernelft.malladi.claims)."""

import numpy as np
import pandas as pd

from kernelft.core.claims import FAILS, HOLDS, UNDECIDED
from kernelft.malladi.claims import COLUMNS, claim_table, verdict_lines


def _scores(head, optimizer, model, correct, seeds=(0, 1, 2)):
    rows = []
    for seed in seeds:
        rows.append(pd.DataFrame({"task": "t", "k": 16, "head": head, "seed": seed, "optimizer": optimizer,
                                  "model": model, "example": np.arange(len(correct)), "correct": correct}))
    return rows


def test_verdicts_follow_the_paired_intervals():
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.7).astype(int)
    far = base.copy()
    far[np.flatnonzero(base)[:80]] = 0  # 80 right answers of 400 turned wrong: 20 points apart
    near = base.copy()
    near[:4] = 1 - near[:4]  # 4 flips: within a point
    frames = [
        *_scores("prompt", "sgd", "ft", base), *_scores("prompt", "sgd", "kernel", near),
        *_scores("linear", "sgd", "ft", base), *_scores("linear", "sgd", "kernel", far),
        *_scores("prompt", "sgd", "linearized", far, seeds=(0,)),
        *_scores("prompt", "sgd", "lora_kernel", near),
    ]
    table = claim_table(pd.concat(frames, ignore_index=True), margin=0.05)
    assert list(table.columns) == COLUMNS
    verdict = {(row.figure, row.head): row.verdict for row in table.itertuples()}
    assert verdict["F1", "prompt"] == HOLDS  # a point apart, within 5
    assert verdict["F1", "linear"] == FAILS  # ~17 points apart
    assert verdict["F2", "prompt vs linear"] == HOLDS
    assert verdict["F3", "prompt"] == FAILS
    assert verdict["F4", "prompt"] == HOLDS
    f3 = table[table["figure"] == "F3"].iloc[0]
    assert (f3["seeds"], f3["examples"]) == (1, 400)  # only the seeds the linearized model ran
    lines = verdict_lines(table, "F1")["sgd"]
    assert len(lines) == 2 and lines[0].startswith("k=16, linear:") and lines[0].endswith(FAILS)


def test_too_few_examples_leave_the_claim_undecided():
    ft = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    kernel = np.array([0, 1, 1, 0, 1, 1, 1, 0])
    frames = [*_scores("prompt", "adam", "ft", ft), *_scores("prompt", "adam", "kernel", kernel)]
    table = claim_table(pd.concat(frames, ignore_index=True), margin=0.05)
    assert table["verdict"].tolist() == [UNDECIDED]
