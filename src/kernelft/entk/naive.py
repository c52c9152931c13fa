"""The naive eNTK: a Python loop of ``torch.autograd.grad`` per example, flatten, stack, G Gᵀ.

``G[i*O + a] = ∇_θ f_a(x_i)`` flattened over the selected parameters (model dtype), then
``K = G Gᵀ`` (or its sign variants) accumulated in float64 over column blocks. It holds the whole
n × O × P matrix, so it is only for tests and for the benchmark's baseline.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kernelft.entk.kinds import SIGN_THRESHOLD, KernelKind, accumulate, reduce_logits, resolve_output, to_output_array
from kernelft.entk.params import ParamSet, ParamSpec, select_parameters


def naive_gradients(
    model: nn.Module, params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], output: str
) -> torch.Tensor:
    """Per-example gradients G (n, O, P), one forward and O backward passes per example."""
    tensors = list(params.values())
    flags = [t.requires_grad for t in tensors]
    for t in tensors:
        t.requires_grad_(True)
    try:
        with torch.enable_grad():
            return _loop(model, tensors, batch, output)
    finally:
        for t, flag in zip(tensors, flags):
            t.requires_grad_(flag)


def _loop(model: nn.Module, tensors: list[torch.Tensor], batch: dict[str, torch.Tensor], output: str) -> torch.Tensor:
    rows = []
    for i in range(batch["input_ids"].shape[0]):
        logits = model(batch["input_ids"][i : i + 1], batch["attention_mask"][i : i + 1])
        f = reduce_logits(logits, output)[0]
        per_output = []
        for a in range(f.shape[0]):
            grads = torch.autograd.grad(f[a], tensors, retain_graph=a + 1 < f.shape[0], allow_unused=True)
            per_output.append(
                torch.cat([(g if g is not None else torch.zeros_like(t)).reshape(-1) for g, t in zip(grads, tensors)])
            )
        rows.append(torch.stack(per_output))
    return torch.stack(rows)


def naive_kernel(
    model: nn.Module,
    batch1: dict[str, torch.Tensor],
    batch2: dict[str, torch.Tensor] | None = None,
    kind: KernelKind | str = KernelKind.SGD,
    params: ParamSet | ParamSpec | str = ParamSet.ALL,
    output: str = "auto",
    sign_threshold: float = SIGN_THRESHOLD,
) -> np.ndarray:
    """The naive kernel in the public layout of :func:`kernelft.entk.empirical_ntk_fn`."""
    kind = KernelKind(kind)
    num_classes = model(batch1["input_ids"][:1], batch1["attention_mask"][:1]).shape[-1]
    output = resolve_output(output, num_classes)
    chosen = select_parameters(model, params)
    g1 = naive_gradients(model, chosen, batch1, output)
    g2 = g1 if batch2 is None else naive_gradients(model, chosen, batch2, output)
    kernel = torch.zeros(
        kind.slots, g1.shape[0], g2.shape[0], g1.shape[1], g1.shape[1], dtype=torch.float64, device=g1.device
    )
    accumulate(kernel, slice(None), slice(None), g1, g2, kind, threshold=sign_threshold)
    return to_output_array(kernel, kind)
