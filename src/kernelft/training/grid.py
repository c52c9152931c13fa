"""A learning-rate grid selected on the dev set, the reference code's hyper-parameter search.

LM-BFF and princeton-nlp/LM-Kernel-FT run one fine-tuning per hyper-parameter setting of a grid
(``run_fewshot.sh``) on each k-shot sample, and ``tools/gather_result.py`` reports, per data seed,
the test result of the run with the best dev metric (``max`` over the runs: the first on ties).
:func:`finetune_grid` does that over learning rates with the runner: every learning rate starts from a
fresh model at θ0, each run returns its ``select``-ed checkpoint (``best_dev`` in the reference), and
the learning rate whose checkpoint has the best dev score (:func:`kernelft.training.protocol.dev_score`:
the accuracy, then the lower loss for ``mse``) wins; ties keep the earlier learning rate in the list.
The test set is evaluated and reported, never used to choose.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch

from kernelft.text.models import TextClassifier
from kernelft.training.protocol import dev_score
from kernelft.training.runner import FinetuneConfig, FinetuneResult, finetune

log = logging.getLogger(__name__)


def finetune_grid(
    make_model: Callable[[], TextClassifier],
    train: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    test: dict[str, torch.Tensor],
    test_labels: torch.Tensor,
    config: FinetuneConfig,
    learning_rates: Sequence[float],
    dev: tuple[dict[str, torch.Tensor], torch.Tensor],
    show_progress: bool = False,
    extra_eval: Mapping[str, tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None,
    evaluate: str = "every",
) -> tuple[FinetuneResult, pd.DataFrame]:
    """One :func:`~kernelft.training.runner.finetune` per learning rate (``config`` with ``lr`` replaced),
    each on ``make_model()``, a fresh classifier at θ0; returns the run whose selected checkpoint has the
    best dev score, and the grid as a DataFrame with one row per learning rate: ``lr``, ``selected_step``,
    ``dev_accuracy``, ``dev_loss``, ``test_accuracy`` (at the selected step; reported, not used) and
    ``chosen``. Only the chosen run's model is kept. ``evaluate`` as :func:`~kernelft.training.runner.finetune`'s.
    """
    rates = [float(lr) for lr in learning_rates]
    if not rates:
        raise ValueError("finetune_grid: learning_rates is empty; give at least one learning rate")
    if len(set(rates)) != len(rates) or min(rates) <= 0:
        raise ValueError(f"finetune_grid: learning_rates {rates}: expected distinct rates > 0")
    rows, best, best_score, chosen = [], None, None, 0
    for position, lr in enumerate(rates):
        run_config = dataclasses.replace(config, lr=lr)
        result = finetune(make_model(), train, train_labels, test, test_labels, run_config,
                          show_progress=show_progress, extra_eval=extra_eval, dev=dev, evaluate=evaluate)
        row = result.curve.loc[result.curve["step"] == result.selected_step].iloc[0]
        rows.append({"lr": lr, "selected_step": result.selected_step, "dev_accuracy": row["dev_accuracy"],
                     "dev_loss": row["dev_loss"], "test_accuracy": row["test_accuracy"]})
        score = dev_score(row["dev_accuracy"], row["dev_loss"], config.loss)
        if best_score is None or score > best_score:
            best, best_score, chosen = result, score, position
        del result  # a run that lost is freed before the next one starts
    grid = pd.DataFrame(rows)
    grid["chosen"] = grid.index == chosen
    scores = ", ".join(f"{lr:g}: {accuracy:.4f}" for lr, accuracy in zip(rates, grid["dev_accuracy"]))
    log.info("learning-rate grid: lr=%g chosen on dev accuracy (%s)", rates[chosen], scores)
    return best, grid
