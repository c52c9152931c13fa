"""Outputs of a model on a whole encoded set, chunk by chunk: the one inference loop of the library.

Every evaluation (the runner's curves, the linear probe's features, task arithmetic, the tangent model)
goes through :func:`map_chunks`: chunks of ``chunk`` examples taken in order of length, each trimmed to
its longest example (little compute spent on padding), run in eval mode without gradients (the model's
mode is restored afterwards), with the outputs put back in the input order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from kernelft.text.encoding import trim_padding

Outputs = torch.Tensor | tuple[torch.Tensor, ...]


def logits_and_features(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C) and the head's input φ(x) (B, H) from one pass of a
    :class:`~kernelft.text.models.TextClassifier` or of anything with the same ``logits_and_features``
    method (the linearized model)."""
    return model.logits_and_features(input_ids, attention_mask)


@torch.no_grad()
def map_chunks(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    forward: Callable[[dict[str, torch.Tensor]], Outputs],
    chunk: int = 64,
) -> Outputs:
    """``forward(part)`` over length-sorted, padding-trimmed chunks of ``batch`` in eval mode, its
    outputs (a tensor or a tuple of tensors, first dimension the chunk's examples) concatenated in the
    order of ``batch``."""
    was_training = model.training
    model.eval()
    order = torch.argsort(batch["attention_mask"].sum(dim=1), stable=True)
    pieces = []
    try:
        for start in range(0, len(order), chunk):
            part = trim_padding({key: value[order[start : start + chunk]] for key, value in batch.items()})
            out = forward(part)
            pieces.append(out if isinstance(out, tuple) else (out,))
    finally:
        model.train(was_training)
    inverse = torch.argsort(order)
    outputs = tuple(torch.cat(column)[inverse] for column in zip(*pieces))
    return outputs if len(outputs) > 1 else outputs[0]


def predict(model: nn.Module, batch: Mapping[str, torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """Logits (N, C) of a whole encoded set."""
    return map_chunks(model, batch, lambda part: model(**part), chunk)


def predict_with_features(
    model: nn.Module, batch: Mapping[str, torch.Tensor], chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) and the head's input φ(x) (N, H) of a whole encoded set, from one encoder pass each."""
    return map_chunks(model, batch, lambda part: logits_and_features(model, **part), chunk)


def extract_features(model: nn.Module, batch: Mapping[str, torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """φ(x) (N, H) of a whole encoded set (the linear probe's inputs)."""
    return map_chunks(model, batch, lambda part: model.features(**part), chunk)
