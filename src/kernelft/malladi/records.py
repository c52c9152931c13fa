"""One Malladi run's numbers from its finished outputs (rule malladi_summary; Malladi et al., ICML 2023,
https://arxiv.org/abs/2210.05643): the kernel solver's accuracy on the pretrained eNTK, FT's, the kernel change,
the LoRA kernel's distance, and per-example correctness for the paired intervals. Light: numpy and pandas
only, so the summary job imports no torch (the kernels come from :func:`kernelft.malladi.runs.pretrained_kernels`)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from kernelft.kernels.outputs import relative_error
from kernelft.kernels.solvers import SolverResult, solve
from kernelft.malladi.tables import final_accuracy

log = logging.getLogger(__name__)

OPTIMIZER_SOLVERS = {"adam": "asymmetric"}
"""Solvers fixed by the kernel: K(A-SignGD) is not symmetric, so it takes the asymmetric solver; the
other optimizers' kernels use the configured ``malladi.solver``."""


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
            raise ValueError("solver 'asymmetric' needs kernel_train_test "
                             "(K(A-SignGD) arrays of kernelft.malladi.runs.pretrained_kernels)")
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

    ``kernel``: the arrays of the pretrained eNTK the optimizer is compared with
    (:func:`~kernelft.malladi.runs.pretrained_kernels` plus labels), fitted by ``solver``; ``finetune_curve``:
    the runner's curve of real FT on the same data;
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
