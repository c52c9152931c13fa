"""The hook engine: one batched forward + backward per chunk, per-example gradients from factors.

Cost model: collecting costs one batched forward + backward to module outputs per example (no
parameter gradient is formed by autograd); the products then cost, per Linear layer, the formation
of per-example weight gradients (n T d_in d_out multiply-adds, what a backward pays for weight
gradients) plus n² d_in d_out (halved when the self-kernel product runs on one tensor), in float32
blocks summed in float64; embeddings cost Σ_v n_v² H (:mod:`.rows`). The naive loop pays a batch-1
backward with a dense 45 MB embedding gradient per example and a float64 product over all P
columns. ``benchmarks/entk.py`` times both and the floor (one batched forward + backward to all
parameters per example plus G Gᵀ).

Memory: factors (a_i, g_i) of all examples of the sites in one *group* are kept (≈ T (d_in + d_out)
per Linear per example instead of d_in d_out); when all sites do not fit in ``FACTOR_SHARE`` of the
budget they are split into groups, each collected by its own forward/backward passes (autograd
then stops at the group's lowest module). Per-example weight gradients are formed for one parameter
at a time, in chunks of examples that fit ``PRODUCT_SHARE`` of the budget.
"""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from kernelft.entk.capture import Dense, Factored, Site, capture, find_sites
from kernelft.entk.common import KernelSetup, UnsupportedModel, batch_size, chunk_ranges, take
from kernelft.entk.kinds import KernelKind, complete_asymmetric_self, product_dtype, reduce_logits, upcast
from kernelft.entk.products import Product, merge_chunks, project_piece
from kernelft.entk.projection import Sketches, new_sketches, projected_kernel

log = logging.getLogger(__name__)

CAPTURE_CHUNK = 16
"""Examples per forward/backward: on 2 CPU cores batch 16 costs 0.0255 s per example against
0.059 s at batch 1 (MiniLM, T = 64; shared/notes/entk-costs.md); larger batches gain little."""


FACTOR_SHARE, PRODUCT_SHARE = 0.4, 0.3
"""Shares of ``max_memory_bytes`` for stored factors and for formed gradients; the rest is left
for the activations of one chunk and temporaries."""


def _new_sketches(setup: KernelSetup, n1: int, n2: int, self_kernel: bool) -> tuple[Sketches, ...] | None:
    if setup.sketch is None:
        return None
    make = lambda n, sides: new_sketches(  # noqa: E731
        setup.kind, sides, n, setup.out_dim, setup.sketch.dim, setup.sign_threshold
    )
    if self_kernel:
        return (make(n1, (True, False)),)
    return make(n1, (True,)), make(n2, (False,))


VERIFY_EXAMPLES = 2
"""Examples of the first batch whose summed gradient the engine checks against autograd's."""


def _summed(pieces: list, tensor: torch.Tensor) -> torch.Tensor:
    """Σ_i Σ_o ∇ f_o(x_i) of one parameter rebuilt from its pieces, shaped like ``tensor``, in float64
    for a float64 model and float32 otherwise (far below the check's tolerance either way)."""
    dtype = product_dtype(tensor.dtype)
    total = torch.zeros(tensor.numel(), dtype=dtype, device=tensor.device)
    for piece in pieces:
        if isinstance(piece, Dense):
            total += piece.values.sum(dim=(0, 1)).to(dtype).reshape(-1)
        elif isinstance(piece, Factored):
            spec = "bte,botd->ed" if piece.transposed else "bte,botd->de"
            total += torch.einsum(spec, piece.inputs.to(dtype), piece.grads.to(dtype)).reshape(-1)
        else:
            width = piece.values.shape[-1]
            rows = total.view(-1, width)
            rows.index_add_(0, piece.rows.reshape(-1), piece.values.sum(dim=1).to(dtype).reshape(-1, width))
    return total.view(tensor.shape)


def _verify(setup: KernelSetup, sites: list[Site], batch: dict[str, torch.Tensor]) -> None:
    """Check the pieces of the first :data:`VERIFY_EXAMPLES` examples against autograd.

    For every selected parameter, ``Σ_i Σ_o ∇ f_o(x_i)`` rebuilt from the captured pieces must match
    ``torch.autograd.grad`` of ``Σ_i Σ_o f_o(x_i)``: this catches any use of a parameter that the
    sites miss (a weight read as a tensor, a module the engine does not know), at the cost of one
    small extra forward and backward. A mismatch raises :class:`UnsupportedModel` naming the parameters.
    """
    part = take(batch, 0, min(VERIFY_EXAMPLES, batch_size(batch)))
    pieces = capture(setup.model, sites, part, setup.output, setup.out_dim)
    names = list(setup.params)
    tensors = [setup.params[name] for name in names]
    with torch.enable_grad():
        f = reduce_logits(setup.model(part["input_ids"], part["attention_mask"]), setup.output)
        grads = torch.autograd.grad(f.sum(), tensors, allow_unused=True, materialize_grads=True)
    eps = torch.finfo(setup.dtype).eps
    tolerance = min(0.5, 10 * eps**0.5)
    errors = [float(torch.linalg.vector_norm(_summed(pieces.get(name, []), t) - upcast(g)))
              for name, t, g in zip(names, tensors, grads)]
    norms = [float(torch.linalg.vector_norm(upcast(g))) for g in grads]
    floor = eps**0.5 * max(norms, default=0.0)  # gradients that are 0 in theory come out as rounding noise
    bad = [name for name, error, norm in zip(names, errors, norms) if error > tolerance * max(norm, floor)]
    if bad:
        raise UnsupportedModel(f"per-example gradients of {bad[:3]} (and {max(len(bad) - 3, 0)} more) miss uses "
                               "of these parameters outside Linear/Conv1D/Embedding/LayerNorm/RMSNorm modules")
    skipped = [name for name in names if name not in pieces]
    if skipped:
        log.info("hook engine: %d selected parameter(s) have zero gradient and are skipped", len(skipped))


def _units(sites: list[Site]) -> list[list[int]]:
    """Sites that share a parameter (a tied word embedding read by the head) stay together: their
    pieces must be summed per example before any product."""
    units: list[list[int]] = []
    owner: dict[str, int] = {}
    for index, site in enumerate(sites):
        names = [n for n in (site.weight, site.bias) if n is not None]
        shared = [owner[n] for n in names if n in owner]
        if shared:
            units[shared[0]].append(index)
            unit = shared[0]
        else:
            units.append([index])
            unit = len(units) - 1
        owner.update({n: unit for n in names})
    return units


def _groups(sites: list[Site], per_example_bytes: list[float], n: int, budget: float) -> list[list[Site]]:
    """Units of sites (in model order) whose factors for n examples fit in ``budget`` bytes."""
    groups: list[list[Site]] = [[]]
    size = 0.0
    for unit in _units(sites):
        bytes_ = n * sum(per_example_bytes[i] for i in unit)
        if groups[-1] and size + bytes_ > budget:
            groups.append([])
            size = 0.0
        groups[-1].extend(sites[i] for i in unit)
        size += bytes_
    return groups


def _collect(setup: KernelSetup, sites: list[Site], batch: dict[str, torch.Tensor], bar: tqdm) -> dict:
    names = {n for s in sites for n in (s.weight, s.bias) if n is not None}
    chunks = []
    for start, stop in chunk_ranges(batch_size(batch), CAPTURE_CHUNK):
        pieces = capture(setup.model, sites, take(batch, start, stop), setup.output, setup.out_dim, setup.factored)
        chunks.append({name: pieces[name] for name in names})
        bar.update(stop - start)
    return merge_chunks(chunks)


def _with_grad_flags(setup: KernelSetup):
    """Selected parameters require grad (so their modules' outputs do), the others do not."""
    selected = {id(p) for p in setup.params.values()}
    flags = [(p, p.requires_grad) for p in setup.model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in selected)
    return flags


def hooks_kernel(
    setup: KernelSetup, batch1: dict[str, torch.Tensor], batch2: dict[str, torch.Tensor] | None
) -> torch.Tensor:
    """Kernel (S, n1, n2, O, O) in float64 (see the module docstring)."""
    kind = setup.kind
    sites = find_sites(setup.model, setup.params)
    self_kernel = batch2 is None
    n1 = batch_size(batch1)
    n2 = n1 if batch2 is None else batch_size(batch2)
    device = next(iter(setup.params.values())).device  # accumulate where the gradients are (CPU or GPU)
    kernel = torch.zeros(kind.slots, n1, n2, setup.out_dim, setup.out_dim, dtype=torch.float64, device=device)
    slots = 1 if self_kernel and kind is KernelKind.ASYMMETRIC_SIGNGD else None
    flags = _with_grad_flags(setup)
    try:
        if setup.verify:
            _verify(setup, sites, batch1)
        length = (
            batch1["input_ids"].shape[1]
            if self_kernel
            else max(batch1["input_ids"].shape[1], batch2["input_ids"].shape[1])
        )
        projected = setup.factored.shapes if setup.factored is not None else {}
        per_example = [
            s.estimate_numel(length, setup.out_dim, setup.factored.sizes(s.weight) if s.weight in projected else None)
            * setup.itemsize
            for s in sites
        ]
        stored = n1 if self_kernel else n1 + n2
        groups = _groups(sites, per_example, stored, setup.max_memory_bytes * FACTOR_SHARE)
        log.info("hook engine: %d site(s) in %d group(s), n1=%d n2=%d", len(sites), len(groups), n1, n2)
        product = Product(kernel, kind, slots, setup.sign_threshold, setup.max_memory_bytes * PRODUCT_SHARE)
        sketches = _new_sketches(setup, n1, n2, self_kernel)
        collect_s = product_s = 0.0
        budget = setup.max_memory_bytes * PRODUCT_SHARE  # of projected gradients formed at a time
        covered = {n for site in sites for n in (site.weight, site.bias) if n is not None}
        steps = len(groups) * stored + len(covered)
        with tqdm(total=steps, desc="eNTK (hooks): examples, then parameters", disable=not setup.show_progress) as bar:
            for group in groups:
                start = time.perf_counter()
                left = _collect(setup, group, batch1, bar)
                right = left if self_kernel else _collect(setup, group, batch2, bar)
                middle = time.perf_counter()
                for name, piece in left.items():
                    bar.update(1)
                    if sketches is None:
                        product(piece, right[name])
                        continue
                    project_piece(sketches[0], setup.sketch, name, piece, budget)
                    if not self_kernel:
                        project_piece(sketches[1], setup.sketch, name, right[name], budget)
                del left, right
                collect_s += middle - start
                product_s += time.perf_counter() - middle
        if sketches is not None:
            projected_kernel(kernel, kind, sketches[0], sketches[-1])
            slots = None
        setup.stats.update(collect_s=collect_s, product_s=product_s, groups=len(groups))
        log.info("hook engine: collecting %.1f s, products %.1f s", collect_s, product_s)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    if slots == 1:
        complete_asymmetric_self(kernel)
    return kernel
