"""The plain torch.func engine: per-example Jacobians by ``vmap(jacrev(functional_call))``.

For a chunk of b examples it materialises J (b, O, P_g) for a group of parameters and contracts
row and column chunks with :func:`kernelft.entk.kinds.accumulate` (float64 accumulation). It makes
no assumption about the model's modules, so it is the reference the faster engines are tested
against, and the fallback for architectures the hook engine does not know.

Memory: chunks of examples and groups of parameters are sized so that a row chunk's and a column
chunk's Jacobians fit in the budget; when everything fits, each Jacobian is computed once. With
parameter groups or several chunks, the forward and backward passes are repeated (cost grows as
groups × chunks), which is why the hook engine wins on large n.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap
from tqdm.auto import tqdm

from kernelft.entk.common import KernelSetup, batch_size, chunk_ranges, take
from kernelft.entk.factored import ProjectedJacobian
from kernelft.entk.kinds import KernelKind, accumulate, complete_asymmetric_self, fill_lower_triangle, reduce_logits
from kernelft.entk.projection import new_sketches, projected_kernel

log = logging.getLogger(__name__)

MAX_CHUNK = 16
"""Examples per vmap call: larger chunks gain little on CPU and cost activation memory."""


def parameter_groups(params: dict[str, torch.Tensor], max_numel: int) -> list[list[str]]:
    """Greedy groups of parameter names with at most ``max_numel`` entries each (a single larger
    tensor gets a group of its own)."""
    groups: list[list[str]] = [[]]
    size = 0
    for name, tensor in params.items():
        if groups[-1] and size + tensor.numel() > max_numel:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += tensor.numel()
    return groups


class JacobianFn:
    """``J(batch) -> (b, O, P_g)``: per-example Jacobians of the reduced output for a name group."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor], output: str) -> None:
        self.model = model
        self.params = {name: p.detach() for name, p in params.items()}
        self.output = output

    def __call__(self, group: list[str], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        chosen = {name: self.params[name] for name in group}

        def f(p: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            logits = functional_call(self.model, p, (ids[None], mask[None]))
            return reduce_logits(logits, self.output)[0]

        with torch.no_grad():  # torch.func transforms ignore it; plain autograd records nothing
            jac = vmap(jacrev(f), in_dims=(None, 0, 0))(chosen, batch["input_ids"], batch["attention_mask"])
        b = batch["input_ids"].shape[0]
        return torch.cat([jac[name].reshape(b, jac[name].shape[1], -1) for name in group], dim=2)


def _pairs(n_row_chunks: int, n_col_chunks: int, upper_only: bool) -> Iterator[tuple[int, int]]:
    for i in range(n_row_chunks):
        for j in range(i if upper_only else 0, n_col_chunks):
            yield i, j


def functorch_kernel(
    setup: KernelSetup, batch1: dict[str, torch.Tensor], batch2: dict[str, torch.Tensor] | None
) -> torch.Tensor:
    """Kernel (S, n1, n2, O, O) in float64 from per-example Jacobians (see the module docstring)."""
    params, kind, out_dim, max_memory_bytes = setup.params, setup.kind, setup.out_dim, setup.max_memory_bytes
    self_kernel = batch2 is None
    batch2 = batch1 if batch2 is None else batch2
    n1, n2 = batch_size(batch1), batch_size(batch2)
    device = next(iter(params.values())).device  # accumulate where the gradients are (CPU or GPU)
    kernel = torch.zeros(kind.slots, n1, n2, out_dim, out_dim, dtype=torch.float64, device=device)
    itemsize = setup.itemsize
    # A Jacobian row costs O·P·itemsize, twice (vmap result + concatenated copy); keep two chunks.
    max_numel = max(1, int(max_memory_bytes // (4 * 2 * out_dim * itemsize)))
    groups = parameter_groups(params, max_numel)
    jacobian = JacobianFn(setup.model, params, setup.output)
    if setup.factored is not None:  # Linear weight columns → P_out G P_inᵀ (the same matrices as the hook engine)
        jacobian = ProjectedJacobian(jacobian, setup.factored, params)
    upper_only = self_kernel and kind.symmetric
    slots = 1 if self_kernel and kind is KernelKind.ASYMMETRIC_SIGNGD else None
    everything = n1 if self_kernel else n1 + n2
    size = max(n1, n2)
    for group in groups:
        per_example = 2 * out_dim * itemsize * sum(params[name].numel() for name in group)
        capacity = max(1, int(max_memory_bytes // per_example))
        if everything > capacity:
            size = min(size, MAX_CHUNK, max(1, capacity // 2))
    row_chunks, col_chunks = chunk_ranges(n1, size), chunk_ranges(n2, size)
    if setup.sketch is not None:
        _projected(setup, jacobian, groups, batch1, None if self_kernel else batch2, size, kernel)
        return kernel
    pairs = list(_pairs(len(row_chunks), len(col_chunks), upper_only))
    log.info("functorch eNTK: %d parameter group(s) × %d block(s), n1=%d n2=%d", len(groups), len(pairs), n1, n2)
    with tqdm(total=len(groups) * len(pairs), desc="eNTK blocks (functorch)", disable=not setup.show_progress) as bar:
        for group in groups:
            cached_row: tuple[int, torch.Tensor | None] = (-1, None)
            for i, j in pairs:
                (r0, r1), (c0, c1) = row_chunks[i], col_chunks[j]
                if cached_row[0] != i:
                    cached_row = (i, jacobian(group, take(batch1, r0, r1)))
                left = cached_row[1]
                right = left if self_kernel and i == j else jacobian(group, take(batch2, c0, c1))
                accumulate(kernel, slice(r0, r1), slice(c0, c1), left, right, kind, slots, setup.sign_threshold)
                bar.update(1)
    if upper_only:
        done = torch.zeros(n1, n2, dtype=torch.bool)
        for i, j in pairs:
            done[slice(*row_chunks[i]), slice(*col_chunks[j])] = True
        fill_lower_triangle(kernel, done)
    if slots == 1:
        complete_asymmetric_self(kernel)
    return kernel


def _projected(
    setup: KernelSetup, jacobian: JacobianFn, groups, batch1, batch2, size: int, kernel: torch.Tensor
) -> None:
    """Sketch every chunk's Jacobian column slices by parameter, then contract the sketches."""
    sides = [(batch1, (True, False) if batch2 is None else (True,))]
    if batch2 is not None:
        sides.append((batch2, (False,)))
    sketches = []
    for batch, wanted_sides in sides:
        n = batch_size(batch)
        sketch = new_sketches(setup.kind, wanted_sides, n, setup.out_dim, setup.sketch.dim, setup.sign_threshold)
        for group in groups:
            for r0, r1 in chunk_ranges(n, size):
                jac = jacobian(group, take(batch, r0, r1))
                offset = 0
                for name in group:
                    numel = setup.params[name].numel()
                    columns = jac[..., offset : offset + numel]
                    sketch.add(setup.sketch, columns, name, torch.arange(numel), slice(r0, r1))
                    offset += numel
        sketches.append(sketch)
    projected_kernel(kernel, setup.kind, sketches[0], sketches[-1])
