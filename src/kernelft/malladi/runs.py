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

This module holds what the workflow stage needs besides the eNTK engine (:mod:`kernelft.entk`), the
solvers (:mod:`kernelft.kernels.solvers`) and the runner (:mod:`kernelft.training.runner`): the kernels of one run,
their solver accuracy, kernel distances, projection errors and per-example scores; the paper-style tables
are in :mod:`kernelft.malladi.tables`.
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
from kernelft.kernels.solvers import SolverResult, solve
from kernelft.malladi.tables import final_accuracy
from kernelft.text.data import sample_train
from kernelft.text.experiment import encode_frame

log = logging.getLogger(__name__)

OPTIMIZER_SOLVERS = {"adam": "asymmetric"}
"""Solvers fixed by the kernel: K(A-SignGD) is not symmetric, so it takes the asymmetric solver; the
other optimizers' kernels use the configured ``malladi.solver``."""


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


def kernel_accuracy(
    arrays: dict[str, np.ndarray],
    solver: str = "regression",
    ridge: float = 0.0,
    adjust_for_init: bool = False,
    gamma: float = 1.0,
    lam: float = 0.5,
) -> SolverResult:
    """Fit ``solver`` on the kernels of ``arrays`` (keys ``kernel_train``, ``kernel_test``, ``train_labels``,
    ``test_labels``, ``f0_train``, ``f0_test`` and, for ``asymmetric``, ``kernel_train_test``) and
    predict the test set. ``gamma``, ``lam``: the asymmetric solver's γ and λ.

    The asymmetric solver (AsK-LS) is defined for binary tasks; for C > 2 classes ``asymmetric`` falls
    back to least squares on the same kernel, ``α = K(X, X)⁺ Y``, ``f(x) = K(x, X) α``: the limit of
    the linear dynamics ``df(x)/dt = −K(x, X)(f(X) − Y)`` that the kernel describes.
    """
    f0 = {"f0_train": arrays["f0_train"], "f0_test": arrays["f0_test"]} if adjust_for_init else {}
    labels = arrays["train_labels"]
    n_classes = int(arrays["f0_train"].shape[1])
    extra: dict = {}
    if solver == "asymmetric":
        if "kernel_train_test" not in arrays:
            raise ValueError("solver 'asymmetric' needs kernel_train_test (K(A-SignGD) arrays of pretrained_kernels)")
        if n_classes > 2:
            log.info("asymmetric solver is binary-only: least squares on the %d-class kernel instead", n_classes)
            solver = "regression"
        else:
            extra = {"kernel_train_test": arrays["kernel_train_test"], "gamma": gamma, "lam": lam}
    return solve(
        solver, arrays["kernel_train"], arrays["kernel_test"], labels, arrays["test_labels"],
        n_classes=n_classes, ridge=ridge, **f0, **extra,
    )


def relative_change(after: np.ndarray, before: np.ndarray) -> float:
    """Kernel change ``‖K_after − K_before‖_F / ‖K_before‖_F`` (Malladi et al. 2023, Sec. 6)."""
    if after.shape != before.shape:
        raise ValueError(f"kernel shapes differ: after {after.shape}, before {before.shape}")
    return relative_error(after, before)


def normalized_difference(kernel: np.ndarray, reference: np.ndarray) -> float:
    """``‖K/‖K‖_F − K_ref/‖K_ref‖_F‖_F``: the distance of two kernels up to scale, in [0, 2].

    A LoRA kernel is orders of magnitude smaller than the full one (far fewer parameters), and a
    kernel method's predictions do not change when the kernel is scaled (without ridge), so the
    scale-free distance is the one that says whether the two kernels would predict alike.
    """
    return float(np.linalg.norm(kernel / np.linalg.norm(kernel) - reference / np.linalg.norm(reference)))


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


def run_record(
    kernel: dict[str, np.ndarray],
    finetune_curve: pd.DataFrame,
    kernel_before: dict[str, np.ndarray] | None = None,
    kernel_after: dict[str, np.ndarray] | None = None,
    linearized_curve: pd.DataFrame | None = None,
    lora: dict[str, np.ndarray] | None = None,
    solver: str = "regression",
    ridge: float = 0.0,
    adjust_for_init: bool = False,
    gamma: float = 1.0,
    lam: float = 0.5,
) -> dict[str, float]:
    """The numbers of one run (task, head, k, seed, optimizer) for F1–F4.

    ``kernel``: the arrays of the pretrained eNTK the optimizer is compared with (:func:`pretrained_kernels`
    plus labels), fitted by ``solver``; ``finetune_curve``: the runner's curve of real FT on the same data;
    ``kernel_before`` / ``kernel_after``: K(SGD)(train, train) of the pretrained (default: ``kernel``) and
    the fine-tuned model, for the kernel change; ``linearized_curve``: the linearized model's curve;
    ``lora``: the LoRA-parameter K(SGD) arrays. Absent inputs give NaN. Columns: ``kernel_accuracy``,
    ``kernel_train_accuracy``, ``ft_accuracy``, ``ft_train_accuracy``, ``pretrained_accuracy`` (of the
    kernel's logits at θ0, ``f0_test``), ``gap`` = ft − kernel accuracy, ``kernel_change``, ``linearized_accuracy``,
    ``lora_kernel_accuracy``, ``lora_kernel_difference`` (:func:`normalized_difference` to
    ``kernel_before`` on train x train).
    """
    options = {"ridge": ridge, "adjust_for_init": adjust_for_init, "gamma": gamma, "lam": lam}
    fit = kernel_accuracy(kernel, solver, **options)
    before = kernel if kernel_before is None else kernel_before
    ft = final_accuracy(finetune_curve)
    record = {
        "kernel_accuracy": fit.accuracy,
        "kernel_train_accuracy": fit.train_accuracy,
        "ft_accuracy": ft,
        "ft_train_accuracy": final_accuracy(finetune_curve, "train"),
        "pretrained_accuracy": float(np.mean(kernel["f0_test"].argmax(axis=1) == kernel["test_labels"])),
        "gap": ft - fit.accuracy,
        "kernel_change": np.nan,
        "linearized_accuracy": np.nan,
        "lora_kernel_accuracy": np.nan,
        "lora_kernel_difference": np.nan,
    }
    if kernel_after is not None:
        record["kernel_change"] = relative_change(kernel_after["kernel_train"], before["kernel_train"])
    if linearized_curve is not None:
        record["linearized_accuracy"] = final_accuracy(linearized_curve)
    if lora is not None:
        record["lora_kernel_accuracy"] = kernel_accuracy(lora, solver, **options).accuracy
        record["lora_kernel_difference"] = normalized_difference(lora["kernel_train"], before["kernel_train"])
    return record


def example_correctness(
    kernel: dict[str, np.ndarray],
    finetune_predictions: dict[str, np.ndarray],
    linearized_predictions: dict[str, np.ndarray] | None = None,
    lora: dict[str, np.ndarray] | None = None,
    solver: str = "regression",
    **options: float | bool,
) -> dict[str, np.ndarray]:
    """Per test example, whether each model of one run classifies it correctly (0/1): ``kernel`` (the
    optimizer's kernel fitted by ``solver``, as :func:`run_record`), ``ft`` and ``linearized`` (the argmax of
    the selected step's test logits, the rules' ``predictions`` files) and ``lora_kernel``; absent inputs
    are left out. ``options``: :func:`kernel_accuracy`'s ridge, adjust_for_init, gamma, lam. The scores of
    the paired intervals of :mod:`kernelft.malladi.claims`."""
    labels = kernel["test_labels"]
    scores = {"kernel": kernel_accuracy(kernel, solver, **options).predictions == labels}
    for name, predictions in (("ft", finetune_predictions), ("linearized", linearized_predictions)):
        if predictions is None:
            continue
        if not np.array_equal(predictions["test_labels"], labels):
            raise ValueError(f"{name}: its test labels differ from the kernel's; the runs saw different test sets")
        scores[name] = predictions["test_logits"].argmax(axis=1) == labels
    if lora is not None:
        scores["lora_kernel"] = kernel_accuracy(lora, solver, **options).predictions == labels
    return {name: value.astype(np.int8) for name, value in scores.items()}
