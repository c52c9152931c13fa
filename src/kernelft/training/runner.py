"""One fine-tuning runner for every experiment; a sweep differs by :class:`FinetuneConfig` only.

The runner trains a :class:`~kernelft.text.models.TextClassifier` on a fixed training set with
minibatch SGD or Adam for a number of steps and records a learning curve: the minibatch loss at
every step and, every ``eval_every`` steps (and at step 0 and the last step), loss and accuracy on
the full train and test sets (and on optional extra sets, e.g. out-of-distribution ones), the head
norm and the feature change.

Methods (``method``), the rows of Tomihari & Sato (NeurIPS 2024) plus Malladi et al. (ICML 2023):

- ``ft``: gradient training of the parameter set ``params`` (default: every parameter).
- ``lp``: linear probe, logistic regression on frozen features φ(x) written into the linear head
  (:func:`kernelft.training.probe.fit_linear_probe`); no gradient steps, the curve is the single row step 0.
- ``lpft``: LP head, then ``ft`` from it (Kumar et al., ICLR 2022; Tomihari & Sato 2024).
- ``lora``: peft LoRA adapters ``W + (alpha/rank) B A`` on the backbone's ``lora_targets`` (B = 0 at
  the start, Hu et al. 2021); the adapters and a linear head train, the base weights (and a prompt
  head's pretrained MLM head) stay frozen.
- ``lplora``: LP head, then ``lora``.
- ``linearized``: the first-order Taylor expansion at the pretrained weights θ0,
  ``f_lin(θ) = f(θ0) + J(θ0)(θ − θ0)`` (:class:`kernelft.training.linearize.LinearizedModel`), trained with
  the same optimizer over ``params``; its cost and memory are documented there.

LP, LP-FT and LP-LoRA need a linear head (a prompt head reads label-word scores, it has no linear
layer to probe); the other methods take either head.

Step 0 is the start of gradient training: after LP for ``lp*`` methods, with the LoRA adapters at
B = 0, or with Δθ = 0 for the linearized model, so its logits equal the model's.

Tracked metrics (Tomihari & Sato 2024): ``head_norm`` = ‖W‖_F of the linear head (NaN for a prompt
head) and ``feature_change`` = (1/m) Σ_i ‖φ(x_i) − φ₀(x_i)‖₂ over the probe set, the first
``probe_size`` test examples, φ₀ the features at step 0 (see :mod:`kernelft.training.probe`).

Losses (``loss``):
- ``ce``: cross-entropy of the C logits.
- ``mse``: squared loss of the kernel output (Malladi et al. 2023; Sun & Raskutti 2026):
  binary ``½ (f(x) − y)²`` with ``f = logit_1 − logit_0`` and ``y ∈ {−1, +1}``; C classes
  ``½ ‖logits − onehot(y)‖²``. This is the loss under which linearized training is kernel
  gradient descent with the eNTK.
The linear probe always fits the logistic (cross-entropy) loss, as in the reference code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from kernelft.core.config import ConfigError, check_method_head, section_defaults
from kernelft.entk.params import add_lora, parse_params, select_parameters
from kernelft.kernels.outputs import kernel_output
from kernelft.text.encoding import trim_padding
from kernelft.text.models import LinearHead, TextClassifier
from kernelft.training import LINEAR_PROBE_METHODS, LORA_METHODS, METHODS
from kernelft.training.inference import predict, predict_with_features
from kernelft.training.linearize import LinearizedModel
from kernelft.training.probe import LinearProbeFit, feature_change, fit_linear_probe, head_norm

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
"""Names of the two evaluation sets every run has (extra sets may not reuse them)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _parse_params(text: str, key: str) -> None:
    if text == "head":
        return
    try:
        parse_params(text)
    except ValueError as err:
        raise ConfigError(f"{key}={text!r}: expected 'all', 'head', 'no_embeddings' or 'last_layers:<L>' "
                          f"({err})") from None


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one run; build it with :meth:`from_section`, which fills every key a config
    section leaves out with the `finetune` section's schema default (defaults live only in the schema).

    ``params`` is the trained parameter set for ``ft``, ``lpft`` and ``linearized``: ``all``,
    ``head`` (the head only: for a linear head this is gradient-trained linear probing, a model
    linear in its parameters), ``no_embeddings`` or ``last_layers:<L>`` (as the eNTK's parameter
    sets, :mod:`kernelft.entk.params`). LoRA methods ignore it: they train the adapters plus a
    linear head. ``lp_cv``/``lp_C``/``lp_max_iter`` set the linear probe's logistic regression,
    ``probe_size`` the number of test examples for ``feature_change``. ``eval_steps`` adds
    evaluation steps to every ``eval_every``-th one (e.g. a stopping time such as the RWY rule's T̂).
    ``section`` is the config section the values came from: error messages name its keys.
    """

    method: str
    optimizer: str
    lr: float
    steps: int
    batch_size: int
    eval_every: int
    loss: str
    weight_decay: float
    params: str
    lora_rank: int
    lora_alpha: float
    lora_targets: tuple[str, ...]
    lp_cv: bool
    lp_C: float
    lp_max_iter: int
    probe_size: int
    seed: int = 0
    eval_steps: tuple[int, ...] = ()
    section: str = field(default="finetune", compare=False, repr=False)

    def __post_init__(self) -> None:
        def key(name: str) -> str:
            return f"{self.section}.{name}"

        if self.method not in METHODS:
            raise ConfigError(f"{key('method')}={self.method!r}: expected one of {METHODS}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"{key('optimizer')}={self.optimizer!r}: expected 'sgd' or 'adam'")
        if self.loss not in ("ce", "mse"):
            raise ConfigError(f"{key('loss')}={self.loss!r}: expected 'ce' or 'mse'")
        for name in ("steps", "batch_size", "eval_every", "lora_rank", "lp_max_iter", "probe_size"):
            minimum = 0 if name == "steps" else 1
            if getattr(self, name) < minimum:
                raise ConfigError(f"{key(name)}={getattr(self, name)!r}: expected an integer ≥ {minimum}")
        _parse_params(self.params, key("params"))

    @classmethod
    def from_section(cls, section: Mapping[str, Any], name: str = "finetune", **overrides: Any) -> FinetuneConfig:
        """A config from config section ``name`` (its keys that are not fields, such as ``tasks``, are
        ignored; lists become tuples) over the `finetune` schema defaults, with ``overrides`` on top."""
        names = {f.name for f in fields(cls)} - {"section"}
        values = {**section_defaults("finetune"), **section, **overrides}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        return cls(**values, section=name)


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    ``curve``: the learning curve (see :func:`finetune`). ``final_logits``: test logits (N, C) at
    the last step (for calibration, :mod:`kernelft.lpft.calibration`); ``extra_logits``: the same for each
    extra evaluation set; ``test_logits``: test logits (N, C) by evaluation step. ``model``: the
    trained function (the classifier itself, or the :class:`~kernelft.training.linearize.LinearizedModel`
    around it). ``linear_probe``: the LP fit of ``lp*``
    methods. ``trainable``: names of the trained parameters (Δθ's names for the linearized model).
    """

    curve: pd.DataFrame
    final_logits: np.ndarray
    model: nn.Module
    extra_logits: dict[str, np.ndarray] = field(default_factory=dict)
    linear_probe: LinearProbeFit | None = None
    trainable: tuple[str, ...] = ()
    test_logits: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def num_trainable(self) -> int:
        """Number of trained scalars."""
        named = dict(getattr(self.model, "model", self.model).named_parameters())
        return sum(named[name].numel() for name in self.trainable)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over the batch (see the module docstring for the formulas)."""
    if kind == "ce":
        return nn.functional.cross_entropy(logits, labels)
    if logits.shape[-1] == 2:
        target = 2.0 * labels.to(logits.dtype) - 1.0
        return 0.5 * ((kernel_output(logits) - target) ** 2).mean()
    onehot = nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return 0.5 * ((logits - onehot) ** 2).sum(-1).mean()


def metrics(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> dict[str, float]:
    """Mean loss and accuracy of logits against labels."""
    return {
        "loss": float(loss_fn(logits, labels, loss)),
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
    }


def trainable_names(model: TextClassifier, config: FinetuneConfig) -> list[str]:
    """Names of the parameters a method trains (after LoRA injection for LoRA methods).

    LoRA methods: every ``lora_*`` adapter plus a linear head. ``lp``: none. Otherwise the set
    ``config.params``: ``head`` = names under ``head.``; the rest as
    :func:`kernelft.entk.params.select_parameters`.
    """
    named = dict(model.named_parameters())
    if config.method == "lp":
        return []
    if config.method in LORA_METHODS:
        names = [n for n in named if "lora_" in n]
        if isinstance(model.head, LinearHead):
            names += model.head_parameter_names()
        if not any("lora_" in n for n in names):
            raise ConfigError(f"{config.section}.lora_targets={list(config.lora_targets)}: "
                              "no LoRA adapter was injected")
        return names
    if config.params == "head":
        names = model.head_parameter_names()
        if not names:
            raise ValueError("finetune.params='head': this model's head has no parameters of its own "
                             "(a prompt head without an LM head reads the word embeddings); use model.head: linear")
        return names
    return list(select_parameters(model, config.params))


def _optimizer(params: list[nn.Parameter], config: FinetuneConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    # The fused kernel: one pass per tensor instead of ~10 (MiniLM on one CPU core: 15 ms per step
    # against 114 ms for the default single-tensor loop, ~17 % of a batch-16 FT step).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


def _prepare(model: TextClassifier, train: dict[str, torch.Tensor], train_labels: torch.Tensor, config: FinetuneConfig):
    """Method setup: LP head, LoRA adapters, trainable flags, the trained module and its parameters."""
    fit = None
    if config.method in LINEAR_PROBE_METHODS:
        fit = fit_linear_probe(model, train, train_labels, cv=config.lp_cv, C=config.lp_C,
                               max_iter=config.lp_max_iter, seed=config.seed)
    if config.method in LORA_METHODS:
        try:
            add_lora(model, rank=config.lora_rank, alpha=config.lora_alpha, target_modules=config.lora_targets,
                     seed=config.seed)
        except ValueError as err:
            raise ConfigError(f"{config.section}.lora_targets={list(config.lora_targets)}: {err}") from err
    names = trainable_names(model, config)
    chosen = set(names) if config.method != "linearized" else set()
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
    if config.method == "linearized":
        trained: nn.Module = LinearizedModel(model, names)
        params = trained.trainable_parameters()
    else:
        trained = model
        named = dict(model.named_parameters())
        params = [named[n] for n in names]
    return trained, params, names, fit


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def finetune(
    model: TextClassifier,
    train: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    test: dict[str, torch.Tensor],
    test_labels: torch.Tensor,
    config: FinetuneConfig,
    show_progress: bool = True,
    extra_eval: Mapping[str, tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None,
) -> FinetuneResult:
    """Train ``model`` in place with ``config.method`` and return its curve and final test logits.

    The curve has one row per step (``step`` 0..steps; only step 0 for ``lp``) with
    ``batch_loss`` (NaN at step 0) and, at evaluation steps, ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy``, ``head_norm``, ``feature_change`` and ``<name>_loss``,
    ``<name>_accuracy`` for each set of ``extra_eval`` (name → (encoded batch, labels)), e.g.
    ``{"ood": (batch, labels)}``.

    Minibatches cycle through a permutation of the training set drawn from ``config.seed``
    (reshuffled every epoch); the LoRA initialisation and the LP fit use the same seed. Dropout
    stays off (``model.eval()``), as in the kernel analysis. LoRA methods inject adapters into
    ``model.backbone`` (they stay there); a linearized run leaves ``model`` at θ0 and returns the
    trained :class:`~kernelft.training.linearize.LinearizedModel` as ``result.model``. The trainable flags
    of the model's original parameters are restored at the end.
    """
    head = "linear" if isinstance(model.head, LinearHead) else "prompt"
    check_method_head(config.method, head, key=f"{config.section}.method")
    extra = dict(extra_eval or {})
    clash = [name for name in extra if name in SPLITS]
    if clash:
        raise ValueError(f"extra_eval names {clash} clash with the splits {SPLITS}; rename them (e.g. 'ood')")
    # Everything on the model's device (CPU or GPU, see kernelft.text.experiment.resolve_device).
    device = next(model.parameters()).device
    train, test = _to_device(train, device), _to_device(test, device)
    train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    extra = {name: (_to_device(batch, device), labels.to(device)) for name, (batch, labels) in extra.items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        trained, params, names, fit = _prepare(model, train, train_labels, config)
        curve, final, by_step = _train(trained, params, train, train_labels, test, test_labels, extra, config,
                                       show_progress)
    finally:
        for name, p in model.named_parameters():
            if name in flags:
                p.requires_grad_(flags[name])
    log.info("%s: final test accuracy %.4f after %d steps (%d trained parameters)", config.method,
             curve["test_accuracy"].iloc[-1], int(curve["step"].iloc[-1]), sum(p.numel() for p in params))
    return FinetuneResult(curve=curve, final_logits=final.pop("test"), model=trained, extra_logits=final,
                          linear_probe=fit, trainable=tuple(names), test_logits=by_step)


def _train(
    model: nn.Module,
    params: list[nn.Parameter],
    train: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    test: dict[str, torch.Tensor],
    test_labels: torch.Tensor,
    extra: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]],
    config: FinetuneConfig,
    show_progress: bool,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[int, np.ndarray]]:
    """The loop shared by every method: minibatch steps and evaluation rows; returns the curve, the
    last evaluation's logits by set name (``test`` and the extra sets) and the test logits by step."""
    steps = 0 if config.method == "lp" else config.steps
    probe = min(config.probe_size, len(test_labels))
    sets = {"train": (train, train_labels), "test": (test, test_labels), **extra}
    rows: list[dict[str, float]] = []
    initial_features: list[torch.Tensor] = []
    final: dict[str, np.ndarray] = {}
    test_by_step: dict[int, np.ndarray] = {}
    extra_steps = set(config.eval_steps)

    def record(step: int, batch_loss: float) -> None:
        row = {"step": step, "batch_loss": batch_loss}
        if step % config.eval_every == 0 or step == steps or step in extra_steps:
            for split, (batch, labels) in sets.items():
                if split == "test":
                    logits, features = predict_with_features(model, batch)
                else:
                    logits, features = predict(model, batch), None
                for key, value in metrics(logits, labels, config.loss).items():
                    row[f"{split}_{key}"] = value
                if split == "test":
                    test_by_step[step] = logits.double().cpu().numpy()
                    if not initial_features:  # φ₀ on the probe set, at step 0
                        initial_features.append(features[:probe])
                    row["feature_change"] = feature_change(features[:probe], initial_features[0])
                if step == steps and split != "train":
                    final[split] = logits.double().cpu().numpy()
            row["head_norm"] = head_norm(model)
        rows.append(row)

    model.eval()
    record(0, float("nan"))
    optimizer = _optimizer(params, config) if steps else None
    generator = torch.Generator().manual_seed(config.seed)
    n = len(train_labels)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in tqdm(range(1, steps + 1), desc=f"fine-tuning ({config.method})", disable=not show_progress):
        if cursor + config.batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        index = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        logits = model(**trim_padding({k: v[index] for k, v in train.items()}))
        loss = loss_fn(logits, train_labels[index], config.loss)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at step {step} (lower finetune.lr={config.lr}?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        record(step, loss.item())
    return pd.DataFrame(rows), final, test_by_step


def config_dict(config: FinetuneConfig) -> dict:
    """The config as a plain dict (for metadata)."""
    return {key: value for key, value in asdict(config).items() if key != "section"}
