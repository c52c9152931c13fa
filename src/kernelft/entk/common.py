"""What every engine receives (:class:`KernelSetup`) and small helpers for chunking batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from kernelft.entk.kinds import SIGN_THRESHOLD, KernelKind
from kernelft.entk.projection import CountSketch

if TYPE_CHECKING:
    from kernelft.entk.factored import FactoredProjection


@dataclass(frozen=True)
class KernelSetup:
    """A resolved kernel request.

    ``params``: the differentiated parameters by name; ``output``: "difference" or "logits";
    ``out_dim``: O (1 or C); ``max_memory_bytes``: the budget for gradients and kernel blocks.
    """

    model: nn.Module
    params: dict[str, torch.Tensor]
    output: str
    out_dim: int
    kind: KernelKind
    max_memory_bytes: float
    show_progress: bool = True
    sign_threshold: float = SIGN_THRESHOLD
    sketch: CountSketch | None = None
    """Random projection Π (``projection_dim``); None for the exact kernel."""
    factored: FactoredProjection | None = None
    """Factored projection of Linear weights (``projection="factored"``, :mod:`.factored`); None otherwise."""
    verify: bool = True
    """Whether the hook engine checks its gradients against autograd's (once per kernel function)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Filled by the engine: seconds spent collecting gradients and in products, groups, ..."""

    @property
    def itemsize(self) -> int:
        return next(iter(self.params.values())).element_size()

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.params.values())).dtype


class UnsupportedModel(RuntimeError):
    """The hook engine cannot compute this model's kernel exactly (a selected parameter used outside
    the modules it knows, a layer run twice, a computation shared by the batch); use the Jacobian engine."""


def chunk_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """[(0, size), (size, 2 size), ...] covering range(n)."""
    return [(start, min(start + size, n)) for start in range(0, n, max(1, size))]


def take(batch: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    """Rows start:stop of every tensor in an encoded batch."""
    return {key: value[start:stop] for key, value in batch.items()}


def batch_size(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["input_ids"].shape[0])
