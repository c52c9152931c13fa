"""One run of the LP-FT stage (rule lpft_run): a method and a data seed trained on the ID sample, evaluated on
the ID test set, every OOD test set and the ID validation draw; the library path of
``workflow/scripts/lpft/run.py``.

Besides the runner's curve (accuracies, head norm ‖V‖_F and feature change at every evaluation), a run records
the representation metrics Tomihari & Sato (NeurIPS 2024) report of the features φ(x) (the head's input, the
first token's last hidden state) at its selected step against the pretrained φ₀(x), on the probe set (the first
``probe_size`` ID test examples, as the runner's feature change), :func:`feature_metrics`, and each probe
example's values (:func:`feature_changes`), on which the stage's intervals are computed. φ₀ is the start of
fine-tuning for every method (the runner's features at step 0): LP leaves the encoder as it is, LoRA starts at
B = 0. The paper's exact definitions (per example or of the whole feature matrix) are not verifiable offline, and
the reference code (tom4649/lp-ft_ntk) computes neither; these are per-example means.

The large ID and OOD test sets are evaluated at the selected step only (the runner's ``evaluate: selected``):
the curve's other evaluation rows hold the train accuracy, head norm and feature change, which is all F9 draws.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from kernelft.lpft.stage import PER_EXAMPLE, evaluation_sets, ood_keys, run_config
from kernelft.text.experiment import encode_frame
from kernelft.training.inference import predict
from kernelft.training.runner import FinetuneConfig, FinetuneResult, finetune

log = logging.getLogger(__name__)


def feature_changes(features: torch.Tensor, initial: torch.Tensor) -> dict[str, np.ndarray]:
    """Change of the features of m examples, (m, H) each, from ``initial`` φ₀ to ``features`` φ, per example (in
    float64, arrays of shape (m,)):

    - ``feature_change``: ‖φ(x_i) − φ₀(x_i)‖₂;
    - ``feature_cosine``: φ(x_i)·φ₀(x_i) / (‖φ(x_i)‖ ‖φ₀(x_i)‖), 1 when the direction is kept;
    - ``feature_norm_change``: ‖φ(x_i)‖ − ‖φ₀(x_i)‖, the signed growth of the norm.
    """
    if features.shape != initial.shape or features.ndim != 2:
        raise ValueError(f"feature_metrics: expected two (m, H) matrices of one shape, got {tuple(features.shape)} "
                         f"and {tuple(initial.shape)}")
    phi, phi0 = features.double(), initial.double()
    norm, norm0 = torch.linalg.norm(phi, dim=-1), torch.linalg.norm(phi0, dim=-1)
    return {
        "feature_change": torch.linalg.norm(phi - phi0, dim=-1).numpy(),
        "feature_cosine": ((phi * phi0).sum(-1) / (norm * norm0)).numpy(),
        "feature_norm_change": (norm - norm0).numpy(),
    }


def feature_metrics(features: torch.Tensor, initial: torch.Tensor) -> dict[str, float]:
    """The means over the m examples of :func:`feature_changes`:

    - ``feature_change`` = (1/m) Σ_i ‖φ(x_i) − φ₀(x_i)‖₂ (:func:`kernelft.training.probe.feature_change`);
    - ``feature_cosine`` = (1/m) Σ_i φ(x_i)·φ₀(x_i) / (‖φ(x_i)‖ ‖φ₀(x_i)‖), 1 when the directions are kept;
    - ``feature_norm_change`` = (1/m) Σ_i (‖φ(x_i)‖ − ‖φ₀(x_i)‖), the signed growth of the norms.
    """
    return {key: float(values.mean()) for key, values in feature_changes(features, initial).items()}


@dataclass
class LPFTRun:
    """What :func:`lpft_run` returns: the curve (with ``method`` and ``seed`` columns), the arrays of the
    run's logits file, the runner's config and result."""

    curve: pd.DataFrame
    arrays: dict[str, np.ndarray]
    config: FinetuneConfig
    result: FinetuneResult


def lpft_run(
    model: torch.nn.Module,
    tokenizer: Any,
    head: Any,
    section: Mapping[str, Any],
    method: str,
    *,
    train: pd.DataFrame,
    id_test: pd.DataFrame,
    id_pool: pd.DataFrame,
    ood_tests: Sequence[pd.DataFrame],
    max_length: int,
    seed: int,
    data_seed: int,
    test_seed: int,
    show_progress: bool = True,
) -> LPFTRun:
    """Train ``model`` (built with ``seed``) by ``method`` with the `lpft` ``section``'s settings
    (:func:`~kernelft.lpft.stage.run_config`) on ``train`` and evaluate it on the sets of
    :func:`~kernelft.lpft.stage.evaluation_sets` (test draws with ``test_seed``, the validation draw with
    ``data_seed``). The OOD sets are the runner's extra evaluation sets ``ood``, ``ood2``, ...; with
    ``select: best_dev`` the validation draw is its dev set.

    ``arrays``: ``logits``/``labels`` (ID test), ``<ood>_logits``/``<ood>_labels`` per OOD set,
    ``val_logits``/``val_labels``, all at the selected step, ``selected_step``, :func:`feature_metrics` of the
    probe set there and its per-example values ``probe_<metric>`` (:func:`feature_changes`).
    """
    config = run_config(section, method, seed)
    sets = evaluation_sets(id_test, ood_tests, id_pool, train, section["test_size"], section["val_size"],
                           head.num_classes, seed=test_seed, data_seed=data_seed)
    encoded = {name: encode_frame(frame, tokenizer, head, max_length) for name, frame in sets.items()}
    (train_x, train_y), (test_x, test_y) = encode_frame(train, tokenizer, head, max_length), encoded["test"]
    keys = ood_keys(len(ood_tests))
    result = finetune(model, train_x, train_y, test_x, test_y, config, show_progress=show_progress,
                      extra_eval={key: encoded[key] for key in keys},
                      dev=encoded["val"] if config.select == "best_dev" else None, evaluate="selected")
    # φ₀: the features at step 0, the pretrained encoder for every method (LP leaves it, LoRA starts at B = 0)
    per_example = feature_changes(result.probe_features[result.selected_step], result.probe_features[0])
    val_x, val_y = encoded["val"]
    arrays = {"logits": result.final_logits, "labels": test_y.numpy()}
    for key in keys:
        arrays.update({f"{key}_logits": result.extra_logits[key], f"{key}_labels": encoded[key][1].numpy()})
    arrays.update({"val_logits": predict(result.model, val_x).double().cpu().numpy(), "val_labels": val_y.numpy(),
                   "selected_step": np.int64(result.selected_step)})
    arrays.update({key: np.float64(values.mean()) for key, values in per_example.items()})
    arrays.update({f"{PER_EXAMPLE}{key}": values for key, values in per_example.items()})
    curve = result.curve
    curve.insert(0, "method", config.method)
    curve.insert(1, "seed", data_seed)
    return LPFTRun(curve=curve, arrays=arrays, config=config, result=result)
