"""Kernel vs fine-tuning (Malladi et al., ICML 2023, https://arxiv.org/abs/2210.05643; figures F1–F4).

Malladi et al. ask whether few-shot fine-tuning of a pretrained LM behaves like kernel regression
with the empirical NTK at the pretrained weights θ0, ``K(x, x') = <∇f(x; θ0), ∇f(x'; θ0)>``:

- F1: test accuracy of a kernel solver on ``K(train, train)`` and ``K(test, train)`` against the
  accuracy of real fine-tuning on the same k-shot data (prompt-based FT lands near y = x). Each
  optimizer has its kernel (:data:`kernelft.malladi.tables.KERNEL_NAMES`): SGD-FT is compared with K(SGD) solved by
  least squares, Adam-FT with K(A-SignGD) ``<∇f(x), sign ∇f(x')>`` (Adam's early steps are SignGD
  steps; Malladi et al. Sec. 4) solved by the asymmetric solver.
- F2: the kernel–FT gap with a prompt head (label-word logits at a mask token) against a fresh
  linear head (the paper: prompt-based FT is far more often kernel-like).
- F3: how far FT leaves the kernel regime: the kernel change
  ``‖K_after − K_before‖_F / ‖K_before‖_F`` on the training set, and the accuracy of the
  linearized model ``f(θ0) + J(θ0)(θ − θ0)`` trained like FT against that of real FT.
- F4: the kernel of LoRA parameters (Hu et al. 2021; Malladi et al. Sec. 7) against the full
  kernel, and the relative error of a CountSketch random projection of the gradients against the
  projection dimension d (it falls as d^{-1/2}).

This module holds what the model jobs of the stage need besides the eNTK engine (:mod:`kernelft.entk`) and
the runner (:mod:`kernelft.training.runner`): the data and kernels of one run and the projection errors. A
run's solver accuracy, kernel distances and per-example scores (the summary's side, no torch) are in
:mod:`kernelft.malladi.records`; the paper-style tables in :mod:`kernelft.malladi.tables`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kernelft.entk import KernelKind, check_finite, empirical_kernels, empirical_ntk_fn, relative_error
from kernelft.text.data import sample_train
from kernelft.text.experiment import encode_frame

log = logging.getLogger(__name__)


def finetune_steps(section: dict, n: int) -> int:
    """Optimizer steps of a run on n examples: ``steps`` when set (the same for every k, as LM-BFF's
    1000), else ``ceil(epochs · n / batch_size)`` (the same passes over the data for every k)."""
    if section.get("steps"):
        return int(section["steps"])
    return max(1, math.ceil(section["epochs"] * n / section["batch_size"]))


def balanced_subset(test: pd.DataFrame, size: int, num_classes: int, seed: int) -> pd.DataFrame:
    """A label-balanced subset of ``size`` rows of the fixed test set (all of it when smaller).

    The kernel's cost grows with the test examples (one gradient each), so the stage evaluates
    kernel and FT on the same smaller subset.
    """
    if size >= len(test):
        return test.reset_index(drop=True)
    return sample_train(test, size - size % num_classes, seed, num_classes)


def run_data(
    train_path: str, test_path: str, tokenizer, head, max_length: int, test_size: int, seed: int
) -> tuple[tuple[dict, torch.Tensor], tuple[dict, torch.Tensor]]:
    """The encoded (batch, labels) of one run's k-shot training table and of the balanced test subset
    (:func:`balanced_subset` with ``test_size`` and the global ``seed``), as the kernel and FT jobs see them."""
    test_frame = balanced_subset(pd.read_parquet(test_path), test_size, head.num_classes, seed)
    return (encode_frame(pd.read_parquet(train_path), tokenizer, head, max_length),
            encode_frame(test_frame, tokenizer, head, max_length))


def pretrained_kernels(
    model: torch.nn.Module,
    train: dict[str, torch.Tensor],
    test: dict[str, torch.Tensor],
    params: str = "all",
    kinds: Sequence[KernelKind | str] = (KernelKind.SGD,),
    max_memory_gb: float = 4.0,
    lora_params: str | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The eNTKs of ``model`` at its current weights, by kind (``"sgd"``, ``"asymmetric_signgd"``): each
    ``kernel_train`` (n, n) and ``kernel_test`` (m, n).

    ``sgd``: K(SGD) ``<∇f(x), ∇f(x')>``. ``asymmetric_signgd``: K(A-SignGD) ``<∇f(x), sign ∇f(x')>``
    (Malladi et al. 2023, Sec. 4), plus ``kernel_train_test`` (n, m) = K(train, test), the orientation the
    asymmetric solver needs besides K(test, train). ``lora_params`` (``lora`` or ``lora_head``, for a model
    with LoRA adapters; ``params`` then ``no_lora``) adds ``"lora"``: K(SGD) over those parameters. Every
    kernel comes from one collection of the per-example gradients of train and test
    (:func:`kernelft.entk.empirical_kernels`).
    Layout as :func:`kernelft.entk.empirical_ntk_fn` (binary: f = logit_1 − logit_0, (n, n); C > 2
    classes: (n, n, C, C)). ``params`` is a parameter set (``all``, ``lora``, ...). Each kind's arrays also
    hold ``f0_train`` (n, C), ``f0_test`` (m, C) (the logits, for "adjust for init") and ``seconds`` (of
    the whole call).
    """
    kinds = [KernelKind(kind) for kind in kinds]
    unknown = [kind.value for kind in kinds if kind not in (KernelKind.SGD, KernelKind.ASYMMETRIC_SIGNGD)]
    if unknown:
        raise ValueError(f"kinds={unknown}: the stage's kernels are 'sgd' and 'asymmetric_signgd'")
    start = time.perf_counter()
    layouts = {
        "sgd": {"kernel_train": ("sgd", "train", "train"), "kernel_test": ("sgd", "test", "train")},
        "asymmetric_signgd": {"kernel_train": ("signgd", "train", "train"), "kernel_test": ("signgd", "test", "train"),
                              "kernel_train_test": ("signgd", "train", "test")},
    }
    chosen = {kind.value: (layouts[kind.value], params) for kind in kinds}
    if lora_params is not None:
        chosen["lora"] = (layouts["sgd"], lora_params)
    requests = {key: {name: (*request, spec) for name, request in layout.items()}
                for key, (layout, spec) in chosen.items()}
    logits: dict[str, np.ndarray] = {}
    kernels = empirical_kernels(model, {"train": train, "test": test},
                                [request for named in requests.values() for request in named.values()],
                                max_memory_gb=max_memory_gb, show_progress=False, logits=logits)
    out = {kind: {name: kernels[request] for name, request in named.items()} for kind, named in requests.items()}
    f0 = {"f0_train": logits["train"], "f0_test": logits["test"]}  # from the collection's own forward
    seconds = np.float64(time.perf_counter() - start)
    for kind, kernels in out.items():
        for name, kernel in kernels.items():
            check_finite(kernel, f"eNTK {name} ({kind}, params={lora_params if kind == 'lora' else params})")
        kernels.update(f0, seconds=seconds)
    return out


def projection_errors(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    dims: Sequence[int],
    seed: int = 0,
    max_memory_gb: float = 4.0,
) -> pd.DataFrame:
    """Relative error ``‖K̃_d − K‖_F / ‖K‖_F`` of the CountSketch-projected eNTK for each d.

    ``K`` is the exact K(SGD) of ``batch`` against itself, ``K̃_d = <Π_d g(x_i), Π_d g(x_j)>``
    (:mod:`kernelft.entk.projection`, seeded by ``seed``); the error falls as d^{-1/2}. Returns one
    row per d (first the exact kernel with ``dim`` = NaN): ``dim``, ``relative_error``, ``seconds``.
    """
    rows = []
    for dim in [None, *dims]:
        start = time.perf_counter()
        ntk = empirical_ntk_fn(
            model, kind="sgd", projection_dim=dim, seed=seed, max_memory_gb=max_memory_gb, show_progress=False
        )
        kernel = ntk(batch)
        seconds = time.perf_counter() - start
        if dim is None:
            exact = kernel
            rows.append({"dim": np.nan, "relative_error": 0.0, "seconds": seconds})
        else:
            rows.append({"dim": dim, "relative_error": relative_error(kernel, exact), "seconds": seconds})
        log.info("projection d=%s: %.1f s", dim, seconds)
    return pd.DataFrame(rows)
