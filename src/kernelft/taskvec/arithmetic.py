"""Task arithmetic on the text classifier: one model for several prompt tasks, the λ grid, the eNTK blocks.

Choice of head (Sun & Raskutti 2026; Ilharco et al., ICLR 2023): every task uses the prompt head,
whose read-out is the label words' rows of the (tied) word embeddings at the mask position. The
task vectors hold the encoder deltas only (``taskvec.params``, default ``no_embeddings``: word,
position and token-type embeddings stay at θ_0), so the read-out stays fixed at its pretrained value
and all tasks share one parameter space: ``θ_0 + Σ λ_t τ_t`` is one network that serves every task
through the task's own template and label words. No per-task linear head has to be added (a fresh
linear head per task would make ``θ_0 + τ_A + τ_B`` ill-defined). The one model is a
:class:`~kernelft.text.models.TextClassifier` whose prompt head reads the union of all tasks' label words
(:func:`union_model`); task t's logits are the columns of its own words.

The eNTK of that model (:func:`contrast_model`) has one output per distinct task contrast
``f_t(x) = logit_{w1,t}(x) − logit_{w0,t}(x)``; :func:`task_kernel` picks from it the scalar kernel of
``f_{t(i)}`` at ``x_i`` against ``f_{t(j)}`` at ``x_j``, whose blocks feed :mod:`kernelft.taskvec.vectors`'s
diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from kernelft.taskvec.vectors import (
    TaskVector,
    binary_output,
    combine,
    disentanglement_error,
    displaced,
    model_logits,
    tangent_logits_many,
)
from kernelft.text.data import sample_train
from kernelft.text.experiment import build_model, encode_frame, head_spec
from kernelft.text.models import TextClassifier


@dataclass(frozen=True)
class TaskSet:
    """One task's encoded evaluation set: ``batch`` (its own template), labels (N,) and the columns of
    the union head that are its label words."""

    name: str
    batch: dict[str, torch.Tensor]
    labels: np.ndarray
    columns: tuple[int, ...]


@dataclass(frozen=True)
class Point:
    """A model of the grid: ``θ_0 + Σ_t coefficients[t] τ_t``."""

    operation: str
    vector: str
    lam: float
    coefficients: tuple[tuple[str, float], ...]


def evaluation_frame(test: pd.DataFrame, n_test: int, seed: int, num_classes: int) -> pd.DataFrame:
    """``n_test`` label-balanced examples of a task's fixed test set (drawn with ``seed``)."""
    return sample_train(test, n_test, seed, num_classes)


def task_set(
    name: str, frame: pd.DataFrame, task_config: Mapping, tokenizer, words: Sequence[str], model_config: Mapping
) -> TaskSet:
    """A task table encoded with the task's own template (for ``model.name``, up to
    ``model.max_length`` tokens), with its columns of the union head."""
    head = head_spec(dict(model_config, head="prompt"), task_config)
    batch, labels = encode_frame(frame, tokenizer, head, model_config["max_length"])
    return TaskSet(name, batch, labels.numpy(), task_columns(task_config, words))


def concatenate_batches(batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Encoded batches stacked into one, right-padded (id 0, mask 0) to the longest."""
    length = max(b["input_ids"].shape[1] for b in batches)
    return {key: torch.cat([nn.functional.pad(b[key], (0, length - b[key].shape[1])) for b in batches])
            for key in ("input_ids", "attention_mask")}


def union_words(task_configs: Sequence[Mapping]) -> list[str]:
    """The label words of all tasks, each once, in order of appearance."""
    return list(dict.fromkeys(word for task in task_configs for word in task["label_words"]))


def union_model(model_config: Mapping, task_configs: Sequence[Mapping], seed: int) -> tuple[TextClassifier, object]:
    """The pretrained model with a prompt head over :func:`union_words`, and its tokenizer."""
    words = union_words(task_configs)
    union = {"labels": words, "label_words": words}
    model, tokenizer, _ = build_model(dict(model_config, head="prompt"), union, seed=seed)
    return model, tokenizer


def task_columns(task_config: Mapping, words: Sequence[str]) -> tuple[int, ...]:
    """Columns of the union head that are the task's label words, in label order."""
    return tuple(list(words).index(word) for word in task_config["label_words"])


class ContrastModel(nn.Module):
    """``f(x) @ C``: the union prompt model's logits mapped to task contrasts, C (words, contrasts)."""

    def __init__(self, model: TextClassifier, contrasts: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("contrasts", contrasts, persistent=False)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.features(input_ids, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids, attention_mask)
        return logits @ self.contrasts.to(logits.dtype)


def task_contrasts(columns: Sequence[tuple[int, ...]], num_words: int) -> tuple[torch.Tensor, list[int]]:
    """Distinct binary contrasts ``e_{w1} − e_{w0}`` (words, K) and each task's contrast index."""
    distinct = list(dict.fromkeys(tuple(c) for c in columns))
    if any(len(c) != 2 for c in distinct):
        raise ValueError("task vector kernels need binary tasks (two label words each)")
    matrix = torch.zeros(num_words, len(distinct))
    for k, (w0, w1) in enumerate(distinct):
        matrix[w0, k], matrix[w1, k] = -1.0, 1.0
    return matrix, [distinct.index(tuple(c)) for c in columns]


def contrast_model(model: TextClassifier, contrasts: torch.Tensor) -> ContrastModel:
    """The same model with outputs ``f_k = logit_{w1,k} − logit_{w0,k}``, one per contrast."""
    return ContrastModel(model, contrasts).eval()


def task_kernel(kernel: np.ndarray, contrast_of_example: np.ndarray) -> np.ndarray:
    """``K[i, j] = K_full[i, j, k(i), k(j)]``: each example's own task output on both sides.

    ``kernel`` (N, N, K, K) is the eNTK of the contrast model's K outputs (or (N, N) when K = 1).
    """
    if kernel.ndim == 2:
        return kernel
    k = np.asarray(contrast_of_example)
    return kernel[np.arange(len(k))[:, None], np.arange(len(k))[None, :], k[:, None], k[None, :]]


def output_kernel(kernel: np.ndarray, contrast: int) -> np.ndarray:
    """The eNTK of one task output ``f_k`` on every example (N, N)."""
    return kernel if kernel.ndim == 2 else kernel[:, :, contrast, contrast]


# --- the grid ------------------------------------------------------------------------------------------


def grid_points(
    tasks: Sequence[str], pairs: Sequence[Sequence[str]], lambdas: Sequence[float], negation_lambdas: Sequence[float]
) -> list[Point]:
    """θ_0, then single, added (each pair, the same λ for both) and negated models over the grids."""
    points = [Point("zero_shot", "", 0.0, ())]
    points += [Point("single", t, lam, ((t, lam),)) for t in tasks for lam in lambdas]
    points += [Point("added", "+".join(pair), lam, tuple((t, lam) for t in pair)) for pair in pairs for lam in lambdas]
    points += [Point("negated", t, lam, ((t, -lam),)) for t in tasks for lam in negation_lambdas]
    return points


EVAL_DTYPES = ("model", "bfloat16")
"""Precision of the task-arithmetic evaluation (``taskvec.eval_dtype``): ``model`` runs the model in its own dtype
(``model.dtype``); ``bfloat16`` runs it under ``torch.autocast`` to bfloat16 (weights and training stay in
``model.dtype``)."""

EVAL_CHUNK = 32
"""Examples per forward in the evaluation (length-sorted chunks; on one CPU core 32 was 10 % faster than 64 and 15 %
faster than 128 for 200 examples of ~33 tokens)."""

DISENTANGLEMENT_LAMBDA = 1.0
"""The λ at which single vectors are also evaluated on the other tasks of their pairs, for the disentanglement
error (the λ of the table and the figure)."""


@contextmanager
def evaluation_precision(model: nn.Module, eval_dtype: str) -> Iterator[None]:
    """The block runs ``model`` in the precision ``eval_dtype`` (:data:`EVAL_DTYPES`)."""
    if eval_dtype not in EVAL_DTYPES:
        raise ValueError(f"taskvec.eval_dtype={eval_dtype!r}: expected one of {EVAL_DTYPES}")
    if eval_dtype == "model":
        yield
        return
    with torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16):
        yield


def partners(pairs: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """Task → the other tasks of its pairs, in order of appearance."""
    out: dict[str, list[str]] = {}
    for a, b in pairs:
        for task, other in ((a, b), (b, a)):
            if other not in out.setdefault(task, []):
                out[task].append(other)
    return out


def evaluated_tasks(point: Point, tasks: Sequence[str], pairs: Sequence[Sequence[str]]) -> list[str]:
    """The task sets a grid point is evaluated on: what the table and the figure read, nothing more.

    θ_0: every task. Single τ_t: t, and at :data:`DISENTANGLEMENT_LAMBDA` also the other tasks of t's
    pairs (for the disentanglement error). Added τ_A + τ_B: A and B. Negated τ_t: t and the other tasks of
    its pairs (the controls).
    """
    if point.operation == "zero_shot":
        return list(tasks)
    if point.operation == "added":
        return list(point.vector.split("+"))
    others = partners(pairs).get(point.vector, [])
    if point.operation == "single" and not np.isclose(point.lam, DISENTANGLEMENT_LAMBDA):
        others = []
    return [t for t in tasks if t == point.vector or t in others]


def real_outputs(
    model: TextClassifier,
    theta_0: TaskVector,
    vectors: Mapping[str, TaskVector],
    sets: Sequence[TaskSet],
    eval_dtype: str = "model",
) -> Callable[[Point, Sequence[str] | None], dict[str, np.ndarray]]:
    """``(point, names) → {task: logits (N_t, C_t)}`` of the real network at ``θ_0 + Σ λ_t τ_t`` on the sets
    ``names`` (every set when None), in inference mode and the precision ``eval_dtype``."""
    by_name = {s.name: s for s in sets}

    def outputs(point: Point, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        delta = combine([vectors[t] for t, _ in point.coefficients], [lam for _, lam in point.coefficients]) \
            if point.coefficients else {}
        result = {}
        with displaced(model, theta_0, delta), torch.inference_mode(), evaluation_precision(model, eval_dtype):
            for name in by_name if names is None else names:
                s = by_name[name]
                result[name] = model_logits(model, s.batch, EVAL_CHUNK).double().cpu().numpy()[:, list(s.columns)]
        return result

    return outputs


def linearized_outputs(
    base: Mapping[str, np.ndarray], tangents: Mapping[str, Mapping[str, np.ndarray]]
) -> Callable[[Point, Sequence[str] | None], dict[str, np.ndarray]]:
    """``(point, names) → {task: f(θ_0) + Σ λ_t J τ_t}`` on the sets ``names`` (every set when None), from
    ``base[task]`` = f(θ_0) and ``tangents[vector_task][eval_task]`` = J τ (both already restricted to the
    task's columns)."""

    def outputs(point: Point, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        result = {name: base[name].copy() for name in (base if names is None else names)}
        for t, lam in point.coefficients:
            for name in result:
                result[name] += lam * tangents[t][name]
        return result

    return outputs


def linearized_changes(
    model: nn.Module, vectors: Mapping[str, TaskVector], sets: Sequence[TaskSet], eval_dtype: str = "model"
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """``f(θ_0)`` on every set and ``J τ_t`` of every vector on every set (restricted to the set's columns), one
    jvp per chunk of a set for all vectors (:func:`kernelft.taskvec.vectors.tangent_logits_many`), in
    ``eval_dtype``."""
    names = list(vectors)
    base, tangents = {}, {t: {} for t in names}
    with evaluation_precision(model, eval_dtype):
        for s in sets:
            value, changes = tangent_logits_many(model, [vectors[t] for t in names], s.batch)
            base[s.name] = value.double().cpu().numpy()[:, list(s.columns)]
            for k, t in enumerate(names):
                tangents[t][s.name] = changes[:, k].double().cpu().numpy()[:, list(s.columns)]
    return base, tangents


def evaluate_grid(
    outputs: Callable[[Point, Sequence[str] | None], dict[str, np.ndarray]],
    points: Sequence[Point],
    sets: Sequence[TaskSet],
    pairs: Sequence[Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, dict[tuple[str, str, float], dict[str, np.ndarray]], pd.DataFrame]:
    """Every grid point on its task sets (:func:`evaluated_tasks` of ``pairs``; every set when None).

    Returns the accuracy table (operation, vector, lambda, eval_task, accuracy), the logits by
    ``(operation, vector, lambda)`` → task, and the per-example table (operation, vector, lambda, eval_task,
    example, correct): ``example`` is the row of the task's evaluation frame, ``correct`` 1 when the largest
    logit is the label, the scores the intervals of :mod:`kernelft.taskvec.claims` resample.
    """
    names = [s.name for s in sets]
    labels = {s.name: s.labels for s in sets}
    rows, logits, scores = [], {}, []
    for point in points:
        evaluated = names if pairs is None else evaluated_tasks(point, names, pairs)
        out = outputs(point, evaluated)
        logits[(point.operation, point.vector, point.lam)] = out
        for name in evaluated:
            correct = (out[name].argmax(axis=1) == labels[name]).astype(np.int8)
            key = {"operation": point.operation, "vector": point.vector, "lambda": point.lam, "eval_task": name}
            rows.append({**key, "accuracy": float(correct.mean())})
            scores.append(pd.DataFrame({**key, "example": np.arange(len(correct)), "correct": correct}))
    return pd.DataFrame(rows), logits, pd.concat(scores, ignore_index=True)


def disentanglement_table(
    logits: Mapping[tuple[str, str, float], Mapping[str, np.ndarray]],
    pairs: Sequence[Sequence[str]],
    lambdas: Sequence[float],
) -> pd.DataFrame:
    """:func:`kernelft.taskvec.vectors.disentanglement_error` of the kernel output ``logit_1 − logit_0`` per
    pair, λ and task of the pair (on that task's inputs)."""
    rows = []
    for a, b in pairs:
        for lam in lambdas:
            for task in (a, b):
                f = [binary_output(logits[key][task]) for key in (("zero_shot", "", 0.0), ("single", a, lam),
                                                                   ("single", b, lam), ("added", f"{a}+{b}", lam))]
                rows.append({"pair": f"{a}+{b}", "lambda": lam, "eval_task": task,
                             "disentanglement_error": disentanglement_error(*f)})
    return pd.DataFrame(rows)
