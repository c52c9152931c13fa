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

Training protocol (:mod:`kernelft.training.protocol`): by default a constant learning rate, no gradient
clipping, dropout off and the last step's model, the setting of the kernel analysis; the options
``lr_schedule``/``warmup_steps``, ``max_grad_norm``, ``dropout``, ``select: best_dev`` (with a dev set) and
``init_head: probe`` give the HF Trainer protocol of the reference code (princeton-nlp/LM-Kernel-FT), and
:func:`kernelft.training.grid.finetune_grid` its learning-rate grid selected on the dev set.
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
from kernelft.training.inference import logits_and_features, map_chunks, predict, predict_with_features
from kernelft.training.linearize import LinearizedModel
from kernelft.training.probe import LinearProbeFit, feature_change, fit_linear_probe, head_norm
from kernelft.training.protocol import SCHEDULES, SELECTIONS, BestDev, make_scheduler

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
"""Names of the two evaluation sets every run has (extra sets may not reuse them, nor ``dev`` when a dev
set is given)."""

INIT_HEADS = ("random", "probe")
"""Start of a linear head (``init_head``): as built, or the linear probe's fit."""

EVALUATE = ("every", "selected")
"""Where :func:`finetune` evaluates the train, test and extra sets (``evaluate``): at every evaluation step, or
only at the selected step (the others get the dev metrics, head norm and the feature change on the probe
examples alone)."""


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

    The protocol of the papers' reference code (HF ``Trainer`` in princeton-nlp/LM-Kernel-FT; formulas in
    :mod:`kernelft.training.protocol`), each off by default: ``lr_schedule`` ``constant`` or ``linear``
    (decay to 0 at the last step) after ``warmup_steps`` of linear warm-up; ``max_grad_norm`` clips the
    gradient's total norm before each step (null = no clipping; the Trainer's default is 1.0);
    ``dropout`` trains in ``train()`` mode (evaluation stays in eval mode); ``select: best_dev`` returns
    the evaluation step with the best dev accuracy instead of the last (run.py's default, ``--save_at_last``
    is ``last``); ``init_head: probe`` starts a linear head from the logistic-regression probe (run.py's
    ``--from_linearhead``; the ``lp*`` methods always do, so ``ft`` with it is ``lpft`` and ``lora`` is
    ``lplora``).
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
    lr_schedule: str
    warmup_steps: int
    max_grad_norm: float | None
    dropout: bool
    select: str
    init_head: str
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
        for name in ("steps", "batch_size", "eval_every", "lora_rank", "lp_max_iter", "probe_size", "warmup_steps"):
            minimum = 0 if name in ("steps", "warmup_steps") else 1
            if getattr(self, name) < minimum:
                raise ConfigError(f"{key(name)}={getattr(self, name)!r}: expected an integer ≥ {minimum}")
        _parse_params(self.params, key("params"))
        for name, allowed in (("lr_schedule", SCHEDULES), ("select", SELECTIONS), ("init_head", INIT_HEADS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{key(name)}={getattr(self, name)!r}: expected one of {allowed}")
        if self.warmup_steps > self.steps:
            raise ConfigError(f"{key('warmup_steps')}={self.warmup_steps}: expected at most the {self.steps} steps")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"{key('max_grad_norm')}={self.max_grad_norm!r}: expected null or a number > 0")
        if not isinstance(self.dropout, bool):
            raise ConfigError(f"{key('dropout')}={self.dropout!r}: expected true or false")
        if self.dropout and self.method == "linearized":
            raise ConfigError(f"{key('dropout')}=true: the linearized model is the Taylor expansion of the "
                              "deterministic (eval-mode) network; set dropout: false for method linearized")

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
    the selected step (for calibration, :mod:`kernelft.lpft.calibration`); ``extra_logits``: the same for
    each extra evaluation set; ``test_logits``: test logits (N, C) by evaluation step. ``model``: the
    trained function at the selected step (the classifier itself, or the
    :class:`~kernelft.training.linearize.LinearizedModel` around it). ``linear_probe``: the LP fit of
    ``lp*`` methods and of ``init_head: probe``. ``trainable``: names of the trained parameters (Δθ's
    names for the linearized model). ``selected_step``: the step whose model and logits these are, the
    last step for ``select: last``, the best dev step for ``select: best_dev``. ``probe_features``: φ(x) (m, H)
    of the probe examples (the first ``probe_size`` test examples) at each evaluation step, step 0 the φ₀ of the
    feature change.
    """

    curve: pd.DataFrame
    final_logits: np.ndarray
    model: nn.Module
    extra_logits: dict[str, np.ndarray] = field(default_factory=dict)
    linear_probe: LinearProbeFit | None = None
    trainable: tuple[str, ...] = ()
    test_logits: dict[int, np.ndarray] = field(default_factory=dict)
    selected_step: int | None = None
    probe_features: dict[int, torch.Tensor] = field(default_factory=dict)

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
    """Method setup: LP head (``lp*`` methods and ``init_head: probe``), LoRA adapters, trainable flags,
    the trained module and its parameters."""
    fit = None
    if config.method in LINEAR_PROBE_METHODS or config.init_head == "probe":
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
    dev: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
    evaluate: str = "every",
) -> FinetuneResult:
    """Train ``model`` in place with ``config.method`` and return its curve and selected test logits.

    The curve has one row per step (``step`` 0..steps; only step 0 for ``lp``) with
    ``batch_loss`` (NaN at step 0) and, at evaluation steps, ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy``, ``head_norm``, ``feature_change``, ``dev_loss`` and
    ``dev_accuracy`` when ``dev`` (encoded batch, labels) is given, and ``<name>_loss``,
    ``<name>_accuracy`` for each set of ``extra_eval`` (name → (encoded batch, labels)), e.g.
    ``{"ood": (batch, labels)}``. With a schedule (``lr_schedule: linear`` or ``warmup_steps`` > 0), ``lr``
    is the learning rate of the step's update; with ``max_grad_norm``, ``grad_norm`` is the minibatch gradient's
    total norm ‖g‖₂ before clipping (what the HF Trainer logs as ``norm``).

    ``select: last`` returns the model and logits of the last step; ``select: best_dev`` those of the
    evaluation step with the best dev accuracy (:class:`kernelft.training.protocol.BestDev`), restored
    into the model, and needs ``dev``. Selection never reads the test set; the curve keeps every step.

    ``evaluate: selected`` (:data:`EVALUATE`) evaluates the train, test and extra sets at the selected step only,
    for a run whose large test sets are reported there alone: the other evaluation rows hold the dev metrics
    (when ``dev`` is given), the head norm and the feature change, with the probe examples' features from a pass
    over those examples alone (their ``train_*``, ``test_*`` and ``<name>_*`` columns are NaN). Training,
    selection and the selected step's logits are those of ``evaluate: every``.

    Minibatches cycle through a permutation of the training set drawn from ``config.seed``
    (reshuffled every epoch); the LoRA initialisation, the LP fit and the dropout masks (torch's global
    generator, seeded with ``config.seed`` for the loop and restored afterwards) use the same seed.
    Dropout stays off (``model.eval()``), as in the kernel analysis, unless ``config.dropout``. LoRA
    methods inject adapters into ``model.backbone`` (they stay there); a linearized run leaves ``model`` at
    θ0 and returns the trained :class:`~kernelft.training.linearize.LinearizedModel` as ``result.model``.
    The trainable flags of the model's original parameters are restored at the end.
    """
    head = "linear" if isinstance(model.head, LinearHead) else "prompt"
    check_method_head(config.method, head, key=f"{config.section}.method")
    if config.init_head == "probe" and head != "linear":
        raise ConfigError(f"{config.section}.init_head='probe' writes the linear probe's fit into the head, which "
                          "needs model.head: linear; model.head is 'prompt'. Use init_head: random with a prompt head.")
    if evaluate not in EVALUATE:
        raise ValueError(f"finetune(evaluate={evaluate!r}): expected one of {EVALUATE}")
    if config.select == "best_dev" and dev is None:
        raise ConfigError(f"{config.section}.select='best_dev' picks the checkpoint on a dev set, but none was "
                          "given: pass finetune(..., dev=(batch, labels)) or use select: last")
    extra = dict(extra_eval or {})
    reserved = SPLITS if dev is None else (*SPLITS, "dev")
    clash = [name for name in extra if name in reserved]
    if clash:
        raise ValueError(f"extra_eval names {clash} clash with the splits {reserved}; rename them (e.g. 'ood')")
    sets = {"train": (train, train_labels), "test": (test, test_labels)}
    sets.update({"dev": dev} if dev is not None else {}, **extra)
    # Everything on the model's device (CPU or GPU, see kernelft.text.experiment.resolve_device).
    device = next(model.parameters()).device
    sets = {name: (_to_device(batch, device), labels.to(device)) for name, (batch, labels) in sets.items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        trained, params, names, fit = _prepare(model, *sets["train"], config)
        curve, final, by_step, selected, probes = _train(trained, params, sets, config, show_progress, evaluate)
    finally:
        for name, p in model.named_parameters():
            if name in flags:
                p.requires_grad_(flags[name])
    accuracy = curve.loc[curve["step"] == selected, "test_accuracy"].iloc[0]
    log.info("%s: test accuracy %.4f at step %d of %d (select: %s; %d trained parameters)", config.method,
             accuracy, selected, int(curve["step"].iloc[-1]), config.select, sum(p.numel() for p in params))
    return FinetuneResult(curve=curve, final_logits=final.pop("test"), model=trained, extra_logits=final,
                          linear_probe=fit, trainable=tuple(names), test_logits=by_step, selected_step=selected,
                          probe_features=probes)


def _train(
    model: nn.Module,
    params: list[nn.Parameter],
    sets: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]],
    config: FinetuneConfig,
    show_progress: bool,
    evaluate: str = "every",
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[int, np.ndarray], int, dict[int, torch.Tensor]]:
    """The loop shared by every method: minibatch steps and evaluation rows on ``sets`` (name → (batch,
    labels): ``train``, ``test``, optionally ``dev``, then the extra sets); returns the curve, the selected
    step's logits by set name (``test`` and the extra sets), the test logits by step, the selected step and
    the probe examples' features by step. ``evaluate`` as :func:`finetune`'s."""
    steps = 0 if config.method == "lp" else config.steps
    train, train_labels = sets["train"]
    probe = min(config.probe_size, len(sets["test"][1]))
    returned = [name for name in sets if name not in ("train", "dev")]
    best = BestDev(params, config.loss) if config.select == "best_dev" else None
    rows: list[dict[str, float]] = []
    initial_features: list[torch.Tensor] = []
    final: dict[str, np.ndarray] = {}
    test_by_step: dict[int, np.ndarray] = {}
    extra_steps = set(config.eval_steps)
    probe_by_step: dict[int, torch.Tensor] = {}
    # evaluate: selected defers these to the selected step: the last with select: last, else after the loop
    deferred = {name for name in sets if name != "dev"} if evaluate == "selected" else set()
    probe_batch = {key: value[:probe] for key, value in sets["test"][0].items()}

    def note_features(row: dict, features: torch.Tensor) -> None:
        """The feature change of the probe examples' ``features`` into ``row`` (φ₀: those of step 0)."""
        if not initial_features:  # φ₀ on the probe set, at step 0
            initial_features.append(features)
        row["feature_change"] = feature_change(features, initial_features[0])
        probe_by_step[row["step"]] = features.detach().cpu().clone()

    def evaluate_sets(row: dict, names, outputs: dict[str, np.ndarray], features: bool = True) -> None:
        """Metrics of the sets ``names`` into ``row`` (with the feature change after the test set's when
        ``features``), the logits of the returned ones into ``outputs``."""
        for split in names:
            batch, labels = sets[split]
            if split == "test":
                logits, test_features = predict_with_features(model, batch)
            else:
                logits = predict(model, batch)
            for key, value in metrics(logits, labels, config.loss).items():
                row[f"{split}_{key}"] = value
            if split == "test" and features:
                note_features(row, test_features[:probe])
            if split in returned:
                outputs[split] = logits.double().cpu().numpy()

    def record(step: int, batch_loss: float, logged: dict[str, float]) -> None:
        row = {"step": step, "batch_loss": batch_loss, **logged}
        if step % config.eval_every == 0 or step == steps or step in extra_steps:
            outputs: dict[str, np.ndarray] = {}
            now = [name for name in sets if name not in deferred or (step == steps and best is None)]
            evaluate_sets(row, now, outputs)
            if "test" not in now:  # the test set is deferred: the probe examples' features alone
                note_features(row, map_chunks(model, probe_batch, lambda part: logits_and_features(model, **part))[1])
            row["head_norm"] = head_norm(model)
            if "test" in outputs:
                test_by_step[step] = outputs["test"]
            if step == steps:
                final.update(outputs)
            if best is not None and (step > 0 or steps == 0):  # a trained checkpoint, as the reference saves
                best.offer(step, row["dev_accuracy"], row["dev_loss"], outputs)
        rows.append(row)

    optimizer = _optimizer(params, config) if steps else None
    scheduler = make_scheduler(optimizer, config.lr_schedule, config.warmup_steps, steps) if steps else None
    logged = {"lr": float("nan")} if scheduler is not None else {}
    if config.max_grad_norm is not None:
        logged["grad_norm"] = float("nan")
    model.eval()
    record(0, float("nan"), logged)
    generator = torch.Generator().manual_seed(config.seed)
    n = len(train_labels)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    device = train_labels.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # dropout masks
        for step in tqdm(range(1, steps + 1), desc=f"fine-tuning ({config.method})", disable=not show_progress):
            if cursor + config.batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            index = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            model.train(config.dropout)
            try:
                logits = model(**trim_padding({k: v[index] for k, v in train.items()}))
                loss = loss_fn(logits, train_labels[index], config.loss)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"loss is {loss.item()} at step {step} "
                                             f"(lower {config.section}.lr={config.lr}?)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            finally:
                model.eval()
            if scheduler is not None:
                logged["lr"] = optimizer.param_groups[0]["lr"]
            if config.max_grad_norm is not None:
                logged["grad_norm"] = float(nn.utils.clip_grad_norm_(params, config.max_grad_norm))
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            record(step, loss.item(), logged)
    selected = steps
    if best is not None:
        best.restore()
        selected, final = best.step, best.logits
        if deferred:  # the restored model on the deferred sets, into the selected step's row
            row = next(row for row in rows if row["step"] == selected)
            evaluate_sets(row, [name for name in sets if name in deferred], final, features=False)
            test_by_step[selected] = final["test"]
    return pd.DataFrame(rows), final, test_by_step, selected, probe_by_step


def config_dict(config: FinetuneConfig) -> dict:
    """The config as a plain dict (for metadata)."""
    return {key: value for key, value in asdict(config).items() if key != "section"}
