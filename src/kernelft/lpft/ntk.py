"""The eNTK at the start of fine-tuning, split as Tomihari & Sato (NeurIPS 2024) do (figure F10).

For logits ``f(x) = V φ(x) + b`` the eNTK is ``K = (φᵀφ′ + 1) I + V J_φ J_φ′ᵀ Vᵀ``: a
pre-train-effective part (gradients w.r.t. the head) and an FT-effective part (gradients w.r.t. the
encoder, or the LoRA adapters), :class:`kernelft.lpft.calibration.NTKDecomposition`. The head norm sets
their balance, which is why FT from a linear probe (LP-FT) behaves differently from FT from a random
head. The full kernel comes from :func:`kernelft.entk.empirical_ntk_fn`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
import torch

from kernelft.entk import add_lora, empirical_ntk_fn
from kernelft.lpft.calibration import NTKDecomposition, pre_train_effective_kernel
from kernelft.text.models import LinearHead, TextClassifier
from kernelft.training.inference import extract_features
from kernelft.training.probe import fit_linear_probe, head_norm
from kernelft.training.runner import FinetuneConfig

log = logging.getLogger(__name__)



def entk_decomposition(
    model: TextClassifier,
    batch: dict[str, torch.Tensor],
    params: str = "all",
    max_memory_gb: float = 4.0,
    show_progress: bool = False,
) -> NTKDecomposition:
    """The eNTK of the logits split into pre-train-effective and FT-effective parts, from the engine.

    The engine (:func:`kernelft.entk.empirical_ntk_fn`, all C logits) gives
    ``K = Σ_θ ∂f/∂θ ∂f'/∂θᵀ`` over the parameter set ``params``; the head (V, b) contributes exactly
    ``(φᵀφ′ + 1) I`` (:func:`~kernelft.lpft.calibration.pre_train_effective_kernel`), so:

    - ``params="all"`` (FT, LP-FT): the encoder's part is ``K − (φᵀφ′ + 1) I = V J_φ J_φ′ᵀ Vᵀ``.
    - ``params="lora"`` (LoRA, LP-LoRA; adapters injected): the engine's kernel holds only the
      adapters, which is already the FT-effective part; the head trains too, so the full kernel is
      the sum. At B = 0 only ∇_B is non-zero.

    Shapes: ``(n, n, C, C)`` each (train–train, so traces are defined).
    """
    if not isinstance(model.head, LinearHead):
        raise ValueError("the NTK decomposition needs a linear head (model.head: linear)")
    phi = extract_features(model, batch).double().cpu().numpy()
    num_classes = model.head.linear.out_features
    kernel = empirical_ntk_fn(model, params=params, output="logits", max_memory_gb=max_memory_gb,
                              show_progress=show_progress)(batch)
    if kernel.ndim == 2:  # a one-logit head; keep the (n, n, C, C) layout
        kernel = kernel[:, :, None, None]
    pre_train = pre_train_effective_kernel(phi, num_classes, bias=model.head.linear.bias is not None)
    ft_effective = kernel - pre_train if params == "all" else kernel
    return NTKDecomposition(pre_train, ft_effective, square=True)


def start_of_ft_decompositions(
    model: TextClassifier,
    batch: dict[str, torch.Tensor],
    labels: torch.Tensor,
    config: FinetuneConfig,
    kernel_size: int,
    methods: Sequence[str] = ("ft", "lpft", "lora", "lplora"),
    max_memory_gb: float = 4.0,
) -> pd.DataFrame:
    """One row per method: the NTK split at the point where its gradient training starts.

    FT starts from the model's (random) head, LP-FT from the linear probe fitted on the whole
    training set (``batch``, ``labels``), LoRA / LP-LoRA the same heads with adapters at B = 0.
    The kernel is taken on the first ``kernel_size`` training examples. Columns: ``method``,
    ``head_norm``, the start's ``train_accuracy`` and ``train_loss`` (cross-entropy; the paper's
    other factor, how right the start already is), and :meth:`NTKDecomposition.summary`. The model
    is changed in place (probe head, adapters).
    """
    subset = {k: v[:kernel_size] for k, v in batch.items()}
    linear = model.head.linear
    random_head = (linear.weight.detach().clone(), linear.bias.detach().clone())
    probe_head = None
    rows = []
    for method in sorted(methods, key=lambda m: m in ("lora", "lplora")):  # LoRA last: adapters stay
        if method not in ("ft", "lpft", "lora", "lplora"):
            continue
        if method in ("lora", "lplora") and not any("lora_" in name for name, _ in model.named_parameters()):
            add_lora(model, rank=config.lora_rank, alpha=config.lora_alpha, target_modules=config.lora_targets,
                     seed=config.seed)
        if method in ("lpft", "lplora"):
            if probe_head is None:
                fit_linear_probe(model, batch, labels, cv=config.lp_cv, C=config.lp_C, max_iter=config.lp_max_iter,
                                 seed=config.seed)
                probe_head = (linear.weight.detach().clone(), linear.bias.detach().clone())
            weight, bias = probe_head
        else:
            weight, bias = random_head
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
            logits = model(**subset).double()
        target = labels[:kernel_size]
        params = "lora" if method in ("lora", "lplora") else "all"
        decomposition = entk_decomposition(model, subset, params=params, max_memory_gb=max_memory_gb)
        rows.append({
            "method": method,
            "head_norm": head_norm(model),
            "train_accuracy": float((logits.argmax(-1) == target).double().mean()),
            "train_loss": float(torch.nn.functional.cross_entropy(logits, target)),
            **decomposition.summary(),
        })
        log.info("%s: head norm %.3f, FT-effective share of the trace %.4f", method, rows[-1]["head_norm"],
                 rows[-1]["share_trace_ft_effective"])
    return pd.DataFrame(rows)
