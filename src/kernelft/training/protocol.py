"""The training protocol of the papers' reference code, as options of the runner: learning-rate schedule and
best-dev checkpoint.

Malladi et al. (ICML 2023) fine-tune with the Hugging Face ``Trainer`` of LM-BFF as patched in
princeton-nlp/LM-Kernel-FT (``src/trainer.py``, from transformers 3.x):

- the learning rate follows ``get_linear_schedule_with_warmup``: at optimizer step s = 0, 1, ..., T − 1
  (0-based) the rate is ``lr · λ(s)`` with

      λ(s) = s / max(1, W)                       for s < W (warm-up from 0),
      λ(s) = max(0, (T − s) / max(1, T − W))     otherwise (linear decay),

  W = ``warmup_steps``, T = ``steps``, so the last update uses ``lr / (T − W)`` and the rate after it,
  λ(T), is 0. The ``constant`` schedule is λ(s) = 1 after the warm-up (``get_constant_schedule_with_warmup``;
  without warm-up, no scheduler at all);
- gradients are clipped to a total norm of ``max_grad_norm`` (the Trainer's default 1.0) before each step;
- the model is in ``train()`` mode (dropout on) for the training forward and backward;
- with ``--evaluate_during_training`` the dev set is evaluated during training and the checkpoint with the
  best dev objective (the accuracy for the tasks here) is kept (``objective > best``, so ties keep the
  earlier checkpoint) and reloaded for the test evaluation; ``--save_at_last`` keeps the last one instead.

The runner's ``select: best_dev`` is that selection over its evaluation steps (every ``eval_every``
steps, the ``eval_steps`` and the last step; the reference evaluates after each epoch). Step 0, the
untrained start, is a candidate only for a run without gradient steps (``lp``), as the reference never
saves the pretrained model as its best checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

SCHEDULES = ("constant", "linear")
"""Learning-rate schedules of the runner (``lr_schedule``)."""

SELECTIONS = ("last", "best_dev")
"""Which evaluation step's model a run returns (``select``)."""


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """λ(step), the multiplier of the base learning rate at 0-based optimizer step ``step`` (formula in the
    module docstring; the same numbers as transformers' ``get_linear_schedule_with_warmup`` and
    ``get_constant_schedule_with_warmup``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule {schedule!r}: expected one of {SCHEDULES}")
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A ``LambdaLR`` with :func:`lr_factor`, stepped once after every optimizer step; None for the
    constant schedule without warm-up (the optimizer keeps its rate, bit for bit)."""
    if schedule == "constant" and warmup_steps == 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, schedule, warmup_steps, total_steps)
    )


def dev_score(accuracy: float, loss: float, kind: str) -> tuple[float, ...]:
    """The dev objective to maximise: the accuracy; for the squared loss (``mse``), whose few-shot dev
    accuracies often tie, then the lower dev loss. Equal scores keep the earlier candidate."""
    return (accuracy, -loss) if kind == "mse" else (accuracy,)


class BestDev:
    """The best-dev checkpoint of one run: the evaluation step with the highest :func:`dev_score`, its
    logits and a CPU copy of the trained parameters at that step (only those, to bound memory)."""

    def __init__(self, params: list[nn.Parameter], loss: str) -> None:
        self.params = params
        self.loss = loss
        self.step: int | None = None
        self.score: tuple[float, ...] | None = None
        self.logits: dict[str, np.ndarray] = {}
        self._state: list[torch.Tensor] = []

    def offer(self, step: int, accuracy: float, loss: float, logits: Mapping[str, np.ndarray]) -> None:
        """Keep this step if its dev score beats the best so far (strictly: ties keep the earlier step)."""
        score = dev_score(accuracy, loss, self.loss)
        if self.score is not None and not score > self.score:
            return
        self.step, self.score, self.logits = step, score, dict(logits)
        self._state = [p.detach().to("cpu", copy=True) for p in self.params]

    @torch.no_grad()
    def restore(self) -> None:
        """Write the kept parameters back into the model."""
        if self.step is None:
            raise RuntimeError("best-dev selection: no evaluation step was offered")
        for p, saved in zip(self.params, self._state):
            p.copy_(saved.to(p.device))
