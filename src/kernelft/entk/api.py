"""The eNTK factory: ``ntk = empirical_ntk_fn(model, ...)``, then ``K = ntk(batch1, batch2=None)``;
several kernels of the same examples from one gradient collection: :func:`empirical_kernels`.

Modelled on neural-tangents' ``empirical_ntk_fn``: build the kernel function once from the model,
the parameter set, the kernel kind and the implementation; call it on encoded batches
(``{"input_ids": (n, T), "attention_mask": (n, T)}``, as :func:`kernelft.text.encoding.encode` returns).

Paper: Malladi et al., "A Kernel-Based View of Language Model Fine-Tuning", ICML 2023
(https://arxiv.org/abs/2210.05643). Formulas and output layout: :mod:`kernelft.entk.kinds`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from enum import Enum

import numpy as np
import torch

from kernelft.entk.common import KernelSetup, UnsupportedModel
from kernelft.entk.factored import FactoredProjection, linear_weight_shapes
from kernelft.entk.functorch_engine import functorch_kernel
from kernelft.entk.hooks_engine import hooks_kernel, hooks_kernels
from kernelft.entk.kinds import SIGN_THRESHOLD, KernelKind, output_dim, resolve_output, to_output_array
from kernelft.entk.params import ParamSet, ParamSpec, parse_params, select_parameters
from kernelft.entk.projection import CountSketch

log = logging.getLogger(__name__)

GIB = 2**30


class Implementation(str, Enum):
    """How per-example gradients are obtained and contracted (all exact; see each engine module).

    - ``HOOKS``: one batched forward + backward per chunk with hooks on module outputs; per-example
      gradients of Linear, Embedding and LayerNorm parameters rebuilt from activations and output
      gradients, embeddings contracted over the rows the examples touch (:mod:`.hooks_engine`).
      Wins on real models (MiniLM: see ``benchmarks/entk.py``): its gradient work grows as n (times
      the number of parameter groups the budget forces), its product as n².
    - ``JACOBIAN``: ``vmap(jacrev(functional_call))`` per chunk (:mod:`.functorch_engine`). Works
      for any model (no assumption about its modules); the fallback, and the reference in tests.
      Under a budget smaller than the n × P Jacobian it recomputes column chunks (work ∝ n²).
    - ``AUTO``: ``HOOKS``, falling back to ``JACOBIAN`` (logged once, with the reason) on any hook
      engine limitation: a parameter used outside the modules it knows (found by checking its
      gradients against autograd's on the first examples), layers shared across depth, a
      computation shared by the batch.
    """

    AUTO = "auto"
    HOOKS = "hooks"
    JACOBIAN = "jacobian"


class Projection(str, Enum):
    """How ``projection_dim=d`` projects per-example gradients (both unbiased: E[K̃] = K).

    - ``COUNTSKETCH``: one CountSketch of all selected parameters into d numbers (:mod:`.projection`);
      every kernel kind. Costs the formed gradient (O(P) per example).
    - ``FACTORED``: LoGra's P_out ⊗ P_in per Linear weight, applied to the layer's input activations
      and output gradients separately, k = round(√d) per side, so k² ≈ d numbers per Linear weight;
      the other parameters stay exact (:mod:`.factored`). Never forms a Linear weight gradient
      in the hook engine; SGD only.
    """

    COUNTSKETCH = "countsketch"
    FACTORED = "factored"


_ENGINES: dict[Implementation, Callable[..., torch.Tensor]] = {
    Implementation.HOOKS: hooks_kernel,
    Implementation.JACOBIAN: functorch_kernel,
}


def _run(implementation: Implementation, setup: KernelSetup, batch1, batch2) -> tuple[torch.Tensor, Implementation]:
    """The kernel and the engine that computed it (``AUTO``: hooks, else the Jacobian engine)."""
    if implementation is not Implementation.AUTO:
        return _ENGINES[implementation](setup, batch1, batch2), implementation
    try:
        return hooks_kernel(setup, batch1, batch2), Implementation.HOOKS
    except UnsupportedModel as err:
        log.warning("hook engine unavailable for %s (%s); using Implementation.JACOBIAN",
                    type(setup.model).__name__, err)
        return functorch_kernel(setup, batch1, batch2), Implementation.JACOBIAN


def empirical_ntk_fn(
    model: torch.nn.Module,
    kind: KernelKind | str = KernelKind.SGD,
    implementation: Implementation | str = Implementation.AUTO,
    params: ParamSet | ParamSpec | str = ParamSet.ALL,
    output: str = "auto",
    max_memory_gb: float = 4.0,
    projection_dim: int | None = None,
    seed: int = 0,
    projection: Projection | str = Projection.COUNTSKETCH,
    show_progress: bool = True,
    sign_threshold: float = SIGN_THRESHOLD,
) -> Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor] | None], np.ndarray]:
    """Return ``ntk(batch1, batch2=None) -> K`` for a :class:`~kernelft.text.models.TextClassifier`.

    ``K[i, j] = <∇_θ f(x_i), ∇_θ f(x'_j)>`` (``kind=SGD``; SignGD variants in
    :class:`KernelKind`), with θ the parameters in ``params`` and f the reduced output:
    ``output="difference"`` (f = logit_1 − logit_0, binary tasks, the paper's choice),
    ``"logits"`` (all C logits) or ``"auto"`` (difference when C = 2, else logits).

    Shapes: (n1, n2) float64 when f is a scalar, (n1, n2, C, C) otherwise; ``ASYMMETRIC_SIGNGD``
    adds a leading axis of 2. ``batch2=None`` means batch1 against itself (symmetric kinds compute
    only the upper triangle). Memory stays near ``max_memory_gb`` beyond the model and the
    activations of one chunk, for any n. Gradients are in the model's dtype, products in float32
    blocks (float64 for a float64 model; bfloat16 and float16 blocks are upcast) summed in float64;
    a float64 model gives a float64-exact kernel.

    ``projection_dim=d`` returns instead the kernel of randomly projected gradients
    ``<Π g(x_i), Π g(x'_j)>`` with Π a CountSketch seeded by ``seed`` (:mod:`.projection`): unbiased,
    relative error ≈ d^{-1/2}, the same Π for every call, chunk and block job. With
    ``projection="factored"`` each Linear weight gradient is projected instead as
    ``P_out ∇_W f P_inᵀ`` (k × k, k = round(√d); LoGra, Choe et al. 2024,
    https://arxiv.org/abs/2405.13954) and the other parameters contribute exactly (:mod:`.factored`;
    SGD only). Sign kernels treat gradient entries with |g| ≤ ``sign_threshold`` as 0 (see
    :data:`kernelft.entk.kinds.SIGN_THRESHOLD`).
    """
    kind = KernelKind(kind)
    implementation = Implementation(implementation)
    spec = parse_params(params)
    chosen = select_parameters(model, spec)
    if projection not in set(Projection):
        raise ValueError(f"projection={projection!r}: expected one of {[p.value for p in Projection]}")
    projection = Projection(projection)
    sketch = factored = None
    if projection is Projection.FACTORED:
        if projection_dim is None:
            raise ValueError("projection='factored' needs projection_dim=d (k = round(√d) per side of each Linear)")
        if kind is not KernelKind.SGD:
            raise ValueError(
                f"projection='factored' with kind={kind.value!r}: sign kernels are not supported (sign of a projected "
                "gradient is not the projection of its sign); use projection='countsketch' or kind='sgd'"
            )
        factored = FactoredProjection(projection_dim, seed, linear_weight_shapes(model, chosen))
    elif projection_dim is not None:
        sketch = CountSketch(projection_dim, seed)
    budget = max_memory_gb * GIB
    device = next(iter(chosen.values())).device
    if device.type == "cuda":  # the budget must also fit beside the model and activations on the GPU
        budget = min(budget, 0.5 * torch.cuda.mem_get_info(device)[0])
    numel = sum(p.numel() for p in chosen.values())
    log.info("eNTK: kind=%s params=%s (%d) implementation=%s", kind.value, spec, numel, implementation.value)

    engine, verified = implementation, False

    def ntk(batch1: dict[str, torch.Tensor], batch2: dict[str, torch.Tensor] | None = None) -> np.ndarray:
        nonlocal engine, verified
        batch1 = {key: value.to(device) for key, value in batch1.items()}
        batch2 = None if batch2 is None else {key: value.to(device) for key, value in batch2.items()}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                num_classes = model(batch1["input_ids"][:1], batch1["attention_mask"][:1]).shape[-1]
            resolved = resolve_output(output, num_classes)
            setup = KernelSetup(
                model,
                chosen,
                resolved,
                output_dim(resolved, num_classes),
                kind,
                budget,
                show_progress,
                sign_threshold,
                sketch,
                factored,
                verify=not verified,
            )
            kernel, engine = _run(engine, setup, batch1, batch2)
            # After one fallback, later calls (blocks, chunks) go straight to the engine used; after one
            # successful check of the hook engine's gradients, later calls skip it.
            verified = engine is Implementation.HOOKS
            ntk.stats = dict(setup.stats, implementation=engine.value)
        finally:
            model.train(was_training)
        return to_output_array(kernel, kind)

    return ntk


KernelRequest = tuple[KernelKind | str, str, str] | tuple[KernelKind | str, str, str, ParamSet | ParamSpec | str]
"""(kind, name of the row batch, name of the column batch[, parameter set]) of one kernel :func:`empirical_kernels`
returns; without a parameter set, the call's ``params``."""


def empirical_kernels(
    model: torch.nn.Module,
    batches: dict[str, dict[str, torch.Tensor]],
    requests: Sequence[KernelRequest],
    implementation: Implementation | str = Implementation.AUTO,
    params: ParamSet | ParamSpec | str = ParamSet.ALL,
    output: str = "auto",
    max_memory_gb: float = 4.0,
    show_progress: bool = True,
    sign_threshold: float = SIGN_THRESHOLD,
    logits: dict[str, np.ndarray] | None = None,
) -> dict[tuple, np.ndarray]:
    """Several exact kernels of one model from ONE collection of each example's gradients.

    ``batches`` names encoded batches (``{"train": ..., "test": ...}``); each request
    ``(kind, rows, cols)`` asks for ``K[i, j] = <op g(x_i), op' g(x'_j)>`` with x from
    ``batches[rows]`` and x' from ``batches[cols]``, exactly what
    ``empirical_ntk_fn(model, kind=kind, ...)(batches[rows], batches[cols])`` returns (the same
    layout: (n_rows, n_cols) for a scalar f, (n_rows, n_cols, C, C) for C > 2 classes, a leading 2
    for ``asymmetric_signgd``; rows = cols computes a self-kernel, symmetric kinds on and above the
    diagonal only). The result maps ``(KernelKind, rows, cols)`` to each kernel; plain strings look
    it up too (``out["sgd", "train", "train"]``).

    A request ``(kind, rows, cols, params)`` sums over its own parameter set instead of ``params``
    (its key is ``(KernelKind, rows, cols, str(spec))``, e.g. ``out["sgd", "train", "train", "lora"]``):
    the gradients of the union of the sets are collected once. The kernels of LoRA fine-tuning and of
    full fine-tuning of a model with LoRA adapters (B = 0, so the outputs are the pretrained model's)::

        empirical_kernels(model, batches, [("sgd", "train", "train", "no_lora"), ("sgd", "train", "train", "lora")])

    The hook engine collects each batch's gradient pieces once (per parameter group) and forms
    each block of per-example gradients once for every request that needs it, signing it at most
    once. Malladi et al.'s (2023) kernels of a run, K(SGD) and K(A-SignGD) = <∇f(x), sign ∇f(x')>::

        empirical_kernels(model, {"train": train, "test": test}, [
            ("sgd", "train", "train"), ("sgd", "test", "train"),
            ("signgd", "train", "train"), ("signgd", "train", "test"), ("signgd", "test", "train")])

    A model the hook engine cannot handle (``AUTO``) or ``implementation="jacobian"`` computes the
    requests one by one with the Jacobian engine (collecting again for each). ``logits``, when given
    a dict, receives each named batch's logits (n, C) in float64, the model in eval mode: the hook
    engine's from its own forward passes, the Jacobian engine's from one more. Other arguments as
    :func:`empirical_ntk_fn` (no projection: the kernels are exact).
    """
    implementation = Implementation(implementation)
    keys = [(KernelKind(kind), rows, cols, *(str(parse_params(p)) for p in own)) for kind, rows, cols, *own in requests]
    missing = sorted({name for _, rows, cols, *_ in keys for name in (rows, cols)} - set(batches))
    if missing:
        raise ValueError(f"empirical_kernels: requests name batches {missing}, given {sorted(batches)}")
    if not keys:
        return {}
    default = str(parse_params(params))
    specs = [key[3] if len(key) > 3 else default for key in keys]
    sets = {spec: select_parameters(model, spec) for spec in dict.fromkeys(specs)}
    union = set().union(*sets.values())
    chosen = {name: p for name, p in model.named_parameters() if name in union}  # model order, tied ones once
    requests = [(kind, rows, cols, None if len(sets[spec]) == len(chosen) else frozenset(sets[spec]))
                for (kind, rows, cols, *_), spec in zip(keys, specs)]
    device = next(iter(chosen.values())).device
    budget = max_memory_gb * GIB
    if device.type == "cuda":
        budget = min(budget, 0.5 * torch.cuda.mem_get_info(device)[0])
    batches = {name: {key: value.to(device) for key, value in batch.items()} for name, batch in batches.items()}
    was_training = model.training
    model.eval()
    try:
        first = next(iter(batches.values()))
        with torch.no_grad():
            num_classes = model(first["input_ids"][:1], first["attention_mask"][:1]).shape[-1]
        resolved = resolve_output(output, num_classes)
        setup = KernelSetup(model, chosen, resolved, output_dim(resolved, num_classes), keys[0][0], budget,
                            show_progress, sign_threshold)
        kernels, outputs = None, {}
        if implementation is not Implementation.JACOBIAN:
            try:
                kernels = hooks_kernels(setup, batches, requests, outputs)
            except UnsupportedModel as err:
                if implementation is Implementation.HOOKS:
                    raise
                log.warning("hook engine unavailable for %s (%s); using Implementation.JACOBIAN per kernel",
                            type(model).__name__, err)
                outputs = {}
        if kernels is None:
            kernels = [
                functorch_kernel(dataclasses.replace(setup, kind=kind, params=sets[spec], stats={}), batches[rows],
                                 None if rows == cols else batches[cols])
                for (kind, rows, cols, _), spec in zip(requests, specs)
            ]
        if logits is not None:
            for name in dict.fromkeys(name for _, rows, cols, _ in requests for name in (rows, cols)):
                if name not in outputs:
                    with torch.no_grad():
                        outputs[name] = model(batches[name]["input_ids"], batches[name]["attention_mask"])
                logits[name] = outputs[name].double().cpu().numpy()
    finally:
        model.train(was_training)
    return {key: to_output_array(kernel, key[0]) for key, kernel in zip(keys, kernels)}
