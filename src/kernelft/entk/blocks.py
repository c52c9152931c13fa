"""Large kernels as separate block jobs: plan the blocks, compute one, merge them.

A Snakemake rule (one job per block) runs::

    pairs = block_pairs(n, block_size, kind)              # which (i, j) blocks are needed
    ranges = block_ranges(n, block_size)                   # [(start, stop), ...]
    K_ij = compute_block(ntk, batch, ranges[i], ranges[j]) # one job: K[rows_i, cols_j]
    save_block(path_ij, K_ij, ranges[i], ranges[j], kind)
    ...
    K = merge_blocks([path_ij, ...], kind)                 # the merge rule

For a train × eval kernel pass ``batch2`` (and ``n2``) as well. For a self-kernel of a symmetric kind
(SGD, SIGNGD_SYMMETRIC) and for ASYMMETRIC_SIGNGD only the blocks with i ≤ j are computed; the merge
mirrors them (``K[j, i] = K[i, j]ᵀ``; for the asymmetric pair the two kernels also swap). SIGNGD
(``<g_i, sign g_j>``) is not symmetric, so all blocks are needed.

Cost: each job collects the gradients of its two example ranges, so with B blocks per side the
gradient work is about (B + 1)/2 times that of one job doing everything, the product work the
same: blocks buy parallel jobs and a per-job memory bound, not fewer operations.

Block file: ``.npz`` with ``kernel`` (the block in the public layout of
:func:`~kernelft.entk.empirical_ntk_fn`), ``rows`` and ``cols`` (start, stop), ``kind``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from kernelft.entk.common import chunk_ranges, take
from kernelft.entk.kinds import KernelKind, check_finite

Range = tuple[int, int]


def block_ranges(n: int, block_size: int) -> list[Range]:
    """[(0, b), (b, 2b), ...] covering range(n); the last block may be shorter."""
    if n < 1 or block_size < 1:
        raise ValueError(f"block_ranges(n={n}, block_size={block_size}): both must be ≥ 1")
    return chunk_ranges(n, block_size)


def mirrors(kind: KernelKind | str) -> bool:
    """Whether a self-kernel block (j, i) follows from block (i, j)."""
    return KernelKind(kind) is not KernelKind.SIGNGD


def block_pairs(
    n: int, block_size: int, kind: KernelKind | str = KernelKind.SGD, n2: int | None = None
) -> list[tuple[int, int]]:
    """Indices (i, j) into ``block_ranges`` of the blocks to compute: all of them for a cross
    kernel (``n2`` given) or for SIGNGD, else the upper triangle i ≤ j."""
    rows = len(block_ranges(n, block_size))
    if n2 is not None:
        return [(i, j) for i in range(rows) for j in range(len(block_ranges(n2, block_size)))]
    return [(i, j) for i in range(rows) for j in range(rows) if j >= i or not mirrors(kind)]


def compute_block(
    ntk: Callable[..., np.ndarray],
    batch: dict[str, torch.Tensor],
    rows: Range,
    cols: Range,
    batch2: dict[str, torch.Tensor] | None = None,
) -> np.ndarray:
    """K[rows, cols] of ``ntk`` (from :func:`~kernelft.entk.empirical_ntk_fn`): rows of ``batch``
    against cols of ``batch2`` (default: ``batch`` itself; a diagonal block then uses symmetry)."""
    if batch2 is None and tuple(rows) == tuple(cols):
        return ntk(take(batch, *rows))
    return ntk(take(batch, *rows), take(batch if batch2 is None else batch2, *cols))


def save_block(path: str | Path, kernel: np.ndarray, rows: Range, cols: Range, kind: KernelKind | str) -> None:
    """Write one block as ``.npz`` (see the module docstring); a block with NaN or inf entries is refused."""
    check_finite(kernel, f"eNTK block {path} (rows {tuple(rows)}, cols {tuple(cols)})")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, kernel=kernel, rows=np.asarray(rows), cols=np.asarray(cols), kind=KernelKind(kind).value)


def _transpose(block: np.ndarray, kind: KernelKind) -> np.ndarray:
    """The block (j, i) from block (i, j) of a self-kernel."""
    if kind is KernelKind.ASYMMETRIC_SIGNGD:
        block = block[::-1]  # slot 0 ↔ slot 1
        return np.swapaxes(np.swapaxes(block, 1, 2), 3, 4) if block.ndim == 5 else np.swapaxes(block, 1, 2)
    return np.swapaxes(np.swapaxes(block, 0, 1), 2, 3) if block.ndim == 4 else block.T


def merge_blocks(
    blocks: Sequence[str | Path] | Sequence[tuple[np.ndarray, Range, Range]],
    kind: KernelKind | str | None = None,
    self_kernel: bool = True,
) -> np.ndarray:
    """Assemble the full kernel from block files (or ``(kernel, rows, cols)`` tuples).

    With ``self_kernel`` (rows and cols index the same examples) missing blocks (j, i) are filled
    from (i, j) when the kind allows it; any entry still missing raises ``ValueError`` naming it.
    """
    loaded = []
    for block in blocks:
        if isinstance(block, (str, Path)):
            with np.load(block) as data:
                found = KernelKind(str(data["kind"]))
                if kind is not None and found is not KernelKind(kind):
                    raise ValueError(f"{block}: kind {found.value!r}, expected {KernelKind(kind).value!r}")
                kind = found
                check_finite(data["kernel"], f"eNTK block {block}")
                loaded.append((data["kernel"], tuple(data["rows"]), tuple(data["cols"])))
        else:
            loaded.append((np.asarray(block[0]), tuple(block[1]), tuple(block[2])))
    if kind is None:
        raise ValueError("merge_blocks: pass kind= when merging in-memory blocks")
    # Blocks past the end of a test set shorter than planned hold no rows (workflow/scripts/entk/block.py).
    loaded = [block for block in loaded if block[1][1] > block[1][0] and block[2][1] > block[2][0]]
    kind = KernelKind(kind)
    n1 = max(r[1] for _, r, _ in loaded)
    n2 = max(c[1] for _, _, c in loaded)
    lead = 1 if kind is KernelKind.ASYMMETRIC_SIGNGD else 0
    first = loaded[0][0]
    shape = first.shape[:lead] + (n1, n2) + first.shape[lead + 2 :]
    full = np.zeros(shape, dtype=np.float64)
    filled = np.zeros((n1, n2), dtype=bool)
    index = (slice(None),) * lead
    for kernel, (r0, r1), (c0, c1) in loaded:
        full[index + (slice(r0, r1), slice(c0, c1))] = kernel
        filled[r0:r1, c0:c1] = True
    if self_kernel and mirrors(kind):
        for kernel, (r0, r1), (c0, c1) in loaded:
            if not filled[c0:c1, r0:r1].all():
                full[index + (slice(c0, c1), slice(r0, r1))] = _transpose(kernel, kind)
                filled[c0:c1, r0:r1] = True
    if not filled.all():
        rows, cols = np.nonzero(~filled)
        raise ValueError(f"merge_blocks: entries missing, e.g. K[{rows[0]}, {cols[0]}] ({(~filled).sum()} in all)")
    return full
