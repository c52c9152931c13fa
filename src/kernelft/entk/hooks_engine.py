"""The hook engine: one batched forward + backward per chunk, per-example gradients from factors.

Cost model: collecting costs one batched forward + backward to module outputs per example (no
parameter gradient is formed by autograd) and per parameter group; the products then cost, per
Linear layer, the formation of per-example weight gradients (n T d_in d_out multiply-adds, what a
backward pays for weight gradients) plus n² d_in d_out (about halved for a self-kernel: only row
blocks on and above the diagonal), in float32 blocks of ≈ 2^14 columns summed in float64;
embeddings cost Σ_v n_v² H (:mod:`.rows`). The naive loop pays a batch-1 backward with a dense
45 MB embedding gradient per example and a float64 product over all P columns.
``benchmarks/entk.py`` times both and the floor (one batched forward + backward to all parameters
per example plus the upper triangle of G Gᵀ).

Memory: factors (a_i, g_i) of all examples of the sites in one *group* are kept (≈ T (d_in + d_out)
per Linear per example instead of d_in d_out; sizes measured on the first examples, a tensor that
sites share counted once); when all sites do not fit in ``FACTOR_SHARE`` of the budget they are
split into groups, each collected by its own forward/backward passes (recording the graph of its
own parameters only; autograd stops at the group's lowest module). Gradients are formed one block
of columns of one parameter at a time, for all examples (``PRODUCT_SHARE`` of the budget; examples
are chunked only when one weight row of all of them does not fit).

Several kernels (:func:`hooks_kernels`): every batch is collected once per group and every formed
block serves all requested kernels (:class:`~kernelft.entk.products.Product`), each over all the
collected parameters or over its own subset of them (the full model's and the LoRA adapters' kernels
of one model, say).
"""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from kernelft.entk.capture import Dense, Factored, Site, capture, find_sites
from kernelft.entk.common import KernelSetup, UnsupportedModel, batch_size, chunk_ranges, take
from kernelft.entk.kinds import KernelKind, finish_kernel, product_dtype, reduce_logits, targets_for, upcast
from kernelft.entk.products import Product, merge_chunks, project_piece
from kernelft.entk.projection import Sketches, new_sketches, projected_kernel

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
Request = tuple[KernelKind, str, str] | tuple[KernelKind, str, str, frozenset[str] | None]
"""(kind, name of the row batch, name of the column batch[, names of the parameters it sums over; None or
absent: every collected parameter])."""

CAPTURE_CHUNK = 16
"""Examples per forward/backward: on 2 CPU cores batch 16 costs 0.0255 s per example against
0.059 s at batch 1 (MiniLM, T = 64; shared/notes/entk-costs.md); larger batches gain little."""


FACTOR_SHARE, PRODUCT_SHARE = 0.4, 0.1
"""Shares of ``max_memory_bytes`` for stored factors and for formed gradients (blocks of ≈ 2^14
columns of all examples: 32 MB at n = 512); the rest is left for the activations of one chunk and
temporaries. MiniLM at n = 512, T = 64 stores ≈ 4.5 GB of factors: 2 groups under a 4 GB budget."""


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


def _probe(setup: KernelSetup, sites: list[Site], batch: Batch) -> tuple[Batch, dict]:
    """The first :data:`VERIFY_EXAMPLES` examples and their captured pieces (unprojected: what the check
    needs; an upper bound on what a factored projection stores)."""
    part = take(batch, 0, min(VERIFY_EXAMPLES, batch_size(batch)))
    return part, capture(setup.model, sites, part, setup.output, setup.out_dim)[0]


def _stored_bytes(sites: list[Site], pieces: dict, examples: int, length: int) -> list[dict[tuple, float]]:
    """Bytes each site stores per example, by storage, measured on the probe's pieces.

    Keys are (storage address, offset, shape), so tensors that sites share (Q, K and V read one
    input) count once in a group. A tensor with a position axis of k > 1 entries is scaled to
    ``length`` positions (an upper bound: the probe's examples may be shorter than others); k = 1
    (the position the head reads, in the last layer) stays 1.
    """
    out = []
    for site in sites:
        storages: dict[tuple, float] = {}
        for name in (site.weight, site.bias):
            for piece in pieces.get(name, []) if name is not None else []:
                tensors = [piece.inputs, piece.grads] if isinstance(piece, Factored) else [piece.values]
                tensors += [piece.rows] if not isinstance(piece, (Factored, Dense)) else []
                for tensor, axis in zip(tensors, _position_axes(piece)):
                    k = tensor.shape[axis] if axis is not None else 1
                    scale = length / k if k > 1 else 1.0
                    key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
                    storages[key] = tensor.numel() * tensor.element_size() * scale / examples
        out.append(storages)
    return out


def _position_axes(piece) -> list[int | None]:
    if isinstance(piece, Factored):
        return [1, 2]
    if isinstance(piece, Dense):
        return [None]
    return [2, 1]  # Rows: values (b, O, k, w), rows (b, k)


def _verify(setup: KernelSetup, sites: list[Site], part: Batch, pieces: dict) -> None:
    """Check the pieces of the first :data:`VERIFY_EXAMPLES` examples against autograd.

    For every selected parameter, ``Σ_i Σ_o ∇ f_o(x_i)`` rebuilt from the captured pieces must match
    ``torch.autograd.grad`` of ``Σ_i Σ_o f_o(x_i)``: this catches any use of a parameter that the
    sites miss (a weight read as a tensor, a module the engine does not know), at the cost of one
    small extra forward and backward. A mismatch raises :class:`UnsupportedModel` naming the parameters.
    """
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


def _groups(sites: list[Site], stored: list[dict[tuple, float]], n: int, budget: float) -> list[list[Site]]:
    """Units of sites (in model order) whose factors for n examples fit in ``budget`` bytes, a
    storage that several sites share counted once per group."""
    groups: list[list[Site]] = [[]]
    seen: dict[tuple, float] = {}
    for unit in _units(sites):
        new = {key: size for i in unit for key, size in stored[i].items()}
        added = n * sum(size for key, size in new.items() if key not in seen)
        if groups[-1] and n * sum(seen.values()) + added > budget:
            groups.append([])
            seen = {}
        groups[-1].extend(sites[i] for i in unit)
        seen.update(new)
    return groups


def _collect(setup: KernelSetup, sites: list[Site], batch: Batch, bar: tqdm) -> tuple[dict, torch.Tensor]:
    """The merged pieces of ``sites`` for every example of ``batch``, by parameter name, and the
    batch's logits.

    Only the group's parameters require grad meanwhile, so the forward records no graph below the
    group's lowest module and the backward stops there."""
    # model order, not a set's: the kernel adds its parameters' shares in this order, and a set of names
    # iterates in an order that changes with PYTHONHASHSEED (the kernels differed run to run at 1e-16)
    names = list(dict.fromkeys(n for s in sites for n in (s.weight, s.bias) if n is not None))
    group = {id(setup.params[n]) for n in names}
    for p in setup.params.values():
        p.requires_grad_(id(p) in group)
    chunks, logits = [], []
    for start, stop in chunk_ranges(batch_size(batch), CAPTURE_CHUNK):
        pieces, chunk_logits = capture(setup.model, sites, take(batch, start, stop), setup.output, setup.out_dim,
                                       setup.factored)
        chunks.append({name: pieces[name] for name in names})
        logits.append(chunk_logits)
        bar.update(stop - start)
    return merge_chunks(chunks), torch.cat(logits)


def _with_grad_flags(setup: KernelSetup):
    """Selected parameters require grad (so their modules' outputs do), the others do not."""
    selected = {id(p) for p in setup.params.values()}
    flags = [(p, p.requires_grad) for p in setup.model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in selected)
    return flags


def hooks_kernel(setup: KernelSetup, batch1: Batch, batch2: Batch | None) -> torch.Tensor:
    """Kernel (S, n1, n2, O, O) in float64 of ``setup.kind`` (see the module docstring)."""
    if batch2 is None:
        return hooks_kernels(setup, {"rows": batch1}, [(setup.kind, "rows", "rows")])[0]
    return hooks_kernels(setup, {"rows": batch1, "cols": batch2}, [(setup.kind, "rows", "cols")])[0]


def hooks_kernels(
    setup: KernelSetup,
    batches: dict[str, Batch],
    requests: list[Request],
    logits: dict[str, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """One float64 (S, n_rows, n_cols, O, O) kernel per request (kind, rows, cols[, params]), from one
    collection of each named batch's gradient pieces of ``setup.params`` (``setup.kind`` is not used; a
    projection, ``setup.sketch``, takes a single request over all the parameters). ``logits``, when
    given, receives each batch's logits from the collection's forward."""
    if setup.sketch is not None and len(requests) != 1:
        raise ValueError(f"a CountSketch projection computes one kernel per call, got {len(requests)} requests")
    sites = find_sites(setup.model, setup.params)
    requests = [(*request, None)[:4] for request in requests]
    used = list(dict.fromkeys(name for _, rows, cols, _ in requests for name in (rows, cols)))
    sizes = {name: batch_size(batches[name]) for name in used}
    device = next(iter(setup.params.values())).device  # accumulate where the gradients are (CPU or GPU)
    kernels, targets = [], []
    for kind, rows, cols, names in requests:
        kernels.append(torch.zeros(kind.slots, sizes[rows], sizes[cols], setup.out_dim, setup.out_dim,
                                   dtype=torch.float64, device=device))
        targets += targets_for(kind, kernels[-1], rows, cols, names)
    flags = _with_grad_flags(setup)
    try:
        part, probe = _probe(setup, sites, batches[used[0]])
        if setup.verify:
            _verify(setup, sites, part, probe)
        length = max(batches[name]["input_ids"].shape[1] for name in used)
        stored = _stored_bytes(sites, probe, batch_size(part), length)
        groups = _groups(sites, stored, sum(sizes.values()), setup.max_memory_bytes * FACTOR_SHARE)
        log.info("hook engine: %d site(s) in %d group(s), examples %s", len(sites), len(groups), sizes)
        product = Product(setup.sign_threshold, setup.max_memory_bytes * PRODUCT_SHARE)
        sketches = None
        if setup.sketch is not None:
            kind, rows, cols, _ = requests[0]
            pair = _new_sketches(setup, sizes[rows], sizes[cols], rows == cols)
            sketches = {rows: pair[0], cols: pair[-1]}
        collect_s = product_s = 0.0
        budget = setup.max_memory_bytes * PRODUCT_SHARE  # of projected gradients formed at a time
        covered = {n for site in sites for n in (site.weight, site.bias) if n is not None}
        steps = len(groups) * sum(sizes.values()) + len(covered)
        with tqdm(total=steps, desc="eNTK (hooks): examples, then parameters", disable=not setup.show_progress) as bar:
            for group in groups:
                start = time.perf_counter()
                collected = {}
                for name in used:
                    collected[name], batch_logits = _collect(setup, group, batches[name], bar)
                    if logits is not None:
                        logits.setdefault(name, batch_logits)
                middle = time.perf_counter()
                for param in collected[used[0]]:
                    bar.update(1)
                    if sketches is None:
                        wanted = [t for t in targets if t.wants(param)]
                        if wanted:
                            product(wanted, {name: collected[name][param] for name in used})
                        continue
                    for name in used:
                        project_piece(sketches[name], setup.sketch, param, collected[name][param], budget)
                del collected
                collect_s += middle - start
                product_s += time.perf_counter() - middle
        if sketches is not None:
            kind, rows, cols, _ = requests[0]
            projected_kernel(kernels[0], kind, sketches[rows], sketches[cols])
        else:
            for (kind, rows, cols, _), kernel in zip(requests, kernels):
                finish_kernel(kernel, kind, rows == cols)
        setup.stats.update(collect_s=collect_s, product_s=product_s, groups=len(groups))
        log.info("hook engine: collecting %.1f s, products %.1f s", collect_s, product_s)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return kernels
