"""One fine-tuning runner for every experiment; a sweep differs by :class:`FinetuneConfig` only.

The runner trains a :class:`~kernelft.models.TextClassifier` on a fixed training set with
minibatch SGD or Adam for a number of steps and records a learning curve: the minibatch loss at
every step and, every ``eval_every`` steps (and at step 0), loss and accuracy on the full train
and test sets.

Losses (``loss``):
- ``ce``: cross-entropy of the C logits.
- ``mse``: squared loss of the kernel output (Malladi et al. 2023; Sun & Raskutti 2026):
  binary ``½ (f(x) − y)²`` with ``f = logit_1 − logit_0`` and ``y ∈ {−1, +1}``; C classes
  ``½ ‖logits − onehot(y)‖²``. This is the loss under which linearized training is kernel
  gradient descent with the eNTK.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from kernelft.models import TextClassifier

log = logging.getLogger(__name__)

METHODS = ("ft",)
"""Implemented methods; ``ft`` updates every parameter of encoder and head."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one run (``finetune`` section of the config)."""

    method: str = "ft"
    optimizer: str = "adam"
    lr: float = 1e-5
    steps: int = 100
    batch_size: int = 16
    eval_every: int = 10
    loss: str = "ce"
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"finetune.method={self.method!r}: expected one of {METHODS}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"finetune.optimizer={self.optimizer!r}: expected 'sgd' or 'adam'")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"finetune.loss={self.loss!r}: expected 'ce' or 'mse'")


def kernel_output(logits: torch.Tensor) -> torch.Tensor:
    """The function whose eNTK is studied: ``logit_1 − logit_0`` for two classes, else the logits."""
    return logits[..., 1] - logits[..., 0] if logits.shape[-1] == 2 else logits


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over the batch (see the module docstring for the formulas)."""
    if kind == "ce":
        return nn.functional.cross_entropy(logits, labels)
    if logits.shape[-1] == 2:
        target = 2.0 * labels.to(logits.dtype) - 1.0
        return 0.5 * ((kernel_output(logits) - target) ** 2).mean()
    onehot = nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return 0.5 * ((logits - onehot) ** 2).sum(-1).mean()


@torch.no_grad()
def evaluate(model: TextClassifier, batch: dict[str, torch.Tensor], labels: torch.Tensor, loss: str, chunk: int = 64) -> dict[str, float]:
    """Loss and accuracy of ``model`` on a whole encoded set, in chunks of ``chunk`` examples."""
    was_training = model.training
    model.eval()
    logits = torch.cat(
        [model(**{k: v[i : i + chunk] for k, v in batch.items()}) for i in range(0, len(labels), chunk)]
    )
    model.train(was_training)
    return {
        "loss": float(loss_fn(logits, labels, loss)),
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
    }


def _optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def finetune(
    model: TextClassifier,
    train: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    test: dict[str, torch.Tensor],
    test_labels: torch.Tensor,
    config: FinetuneConfig,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Train ``model`` in place and return its learning curve.

    The curve has one row per step (``step`` 0..steps) with ``batch_loss`` (NaN at step 0) and,
    at evaluation steps, ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``.
    Minibatches cycle through a permutation of the training set drawn from ``config.seed``
    (reshuffled every epoch). Dropout stays off (``model.eval()``), as in the kernel analysis.
    """
    generator = torch.Generator().manual_seed(config.seed)
    n = len(train_labels)
    optimizer = _optimizer(model, config)
    rows: list[dict[str, float]] = []

    def record(step: int, batch_loss: float) -> None:
        row = {"step": step, "batch_loss": batch_loss}
        if step % config.eval_every == 0 or step == config.steps:
            for split, batch, labels in (("train", train, train_labels), ("test", test, test_labels)):
                for key, value in evaluate(model, batch, labels, config.loss).items():
                    row[f"{split}_{key}"] = value
        rows.append(row)

    model.eval()
    record(0, float("nan"))
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in tqdm(range(1, config.steps + 1), desc="fine-tuning", disable=not show_progress):
        if cursor + config.batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        index = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        logits = model(**{k: v[index] for k, v in train.items()})
        loss = loss_fn(logits, train_labels[index], config.loss)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {float(loss)} at step {step} (lower finetune.lr={config.lr}?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        record(step, loss.item())
    curve = pd.DataFrame(rows)
    log.info("final test accuracy %.4f after %d steps", curve["test_accuracy"].iloc[-1], config.steps)
    return curve


def config_dict(config: FinetuneConfig) -> dict:
    """The config as a plain dict (for metadata)."""
    return asdict(config)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generators (library code uses explicit generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
