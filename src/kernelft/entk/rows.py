"""Kernel of row-sparse gradients (embeddings) contracted at token level, not over the vocabulary.

The word-embedding gradient of example i is non-zero only on the rows of its own tokens (plus the
label-word rows the prompt head reads): ``∇_E f(x_i) = Σ_t e_{x_it} g_itᵀ``. After adding up each
example's repeated tokens into one vector per (example, row) entry, with D_i[v] that vector,

    ⟨∇_E f(x_i), ∇_E f(x_j)⟩ = Σ_{v shared by i and j} D_i[v] · D_j[v],

which costs Σ_v n_v² H (n_v: examples containing row v) instead of n² |U| H for a dense matrix over
the union U of rows. Rows that most examples share ([CLS], the template words, the mask, the label
words) are contracted densely (one matrix product over those rows); the others pair their
entries directly (gather, multiply, scatter-add into K).
"""

from __future__ import annotations

import torch

from kernelft.entk.capture import Rows
from kernelft.entk.common import chunk_ranges
from kernelft.entk.kinds import add_product, signed, upcast

DENSE_SHARE = 1 / 16
"""A row is contracted densely when at least this share of all example pairs share it."""

PAIRS_PER_STEP = 2**16
"""Entry pairs multiplied at once (bounds the gathered temporaries)."""


class Entries:
    """One (example, row) entry per distinct token of each example: ``example`` (E,), ``row`` (E,)
    sorted by row, and ``values`` (E, O, w), with repeated tokens added up and zero rows dropped
    (in float32 for bfloat16/float16 pieces, so the sums and every product below run in float32)."""

    def __init__(self, piece: Rows) -> None:
        n, out_dim, k, width = piece.values.shape
        rows = piece.rows.to(torch.int64)
        span = int(rows.max()) + 1 if rows.numel() else 1
        values = upcast(piece.values).permute(0, 2, 1, 3).reshape(n * k, out_dim, width)
        keys = (torch.arange(n, device=rows.device)[:, None] * span + rows).flatten()
        nonzero = values.ne(0).flatten(1).any(dim=1)
        keys, values = keys[nonzero], values[nonzero]
        unique, inverse = torch.unique(keys, return_inverse=True)
        summed = values.new_zeros(len(unique), out_dim, width).index_add_(0, inverse, values)
        example, row = unique // span, unique % span
        order = torch.argsort(row, stable=True)
        self.example, self.row, self.values = example[order], row[order], summed[order]
        self.n = n

    def counts(self, rows: torch.Tensor) -> torch.Tensor:
        """How many entries each of ``rows`` (sorted) has."""
        return torch.searchsorted(self.row, rows, right=True) - torch.searchsorted(self.row, rows)

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """The entries on ``rows`` (sorted) as a dense (n, O, |rows| w) matrix."""
        position = torch.searchsorted(rows, self.row).clamp(max=max(len(rows) - 1, 0))
        inside = rows[position] == self.row if len(rows) else torch.zeros_like(self.row, dtype=torch.bool)
        out_dim, width = self.values.shape[1:]
        dense = self.values.new_zeros(self.n, len(rows), out_dim, width)
        dense[self.example[inside], position[inside]] = self.values[inside]
        return dense.permute(0, 2, 1, 3).reshape(self.n, out_dim, -1)


def rows_product(
    out: torch.Tensor,
    a: Entries,
    b: Entries,
    sign_left: bool,
    sign_right: bool,
    threshold: float,
    budget: float,
) -> None:
    """``out += ⟨op ∇_E f(x_i), op ∇_E f(x'_j)⟩`` for the entries of two row pieces (``b`` may be ``a``);
    ``out`` float64 (n1, n2, O, O), op = sign where ``sign_left``/``sign_right``."""
    same = a is b
    union = torch.unique(torch.cat([a.row, b.row]))
    shared = a.counts(union) * b.counts(union)
    frequent = union[shared >= DENSE_SHARE * a.n * b.n]
    rare = union[shared < DENSE_SHARE * a.n * b.n]
    out_dim, width = a.values.shape[1:]
    per_row = (a.n + (0 if same else b.n)) * out_dim * width * a.values.element_size()
    op = lambda x, sign: signed(x, threshold) if sign else x  # noqa: E731
    for u0, u1 in chunk_ranges(len(frequent), max(1, int(budget // per_row))):
        block = frequent[u0:u1]
        dense_a = a.dense(block)
        dense_b = dense_a if same else b.dense(block)
        add_product(out, op(dense_a, sign_left), op(dense_b, sign_right))
    _pairs(out, a, b, rare, sign_left, sign_right, threshold)


def _pairs(
    out: torch.Tensor,
    a: Entries,
    b: Entries,
    rows: torch.Tensor,
    sign_left: bool,
    sign_right: bool,
    threshold: float,
) -> None:
    """Every pair of entries (one of a, one of b) on the same row in ``rows``: K[i, j] += D_i · D_j."""
    keep_a = torch.isin(a.row, rows)
    a_row, a_example, a_values = a.row[keep_a], a.example[keep_a], a.values[keep_a]
    start = torch.searchsorted(b.row, a_row)
    count = torch.searchsorted(b.row, a_row, right=True) - start
    total = int(count.sum())
    if total == 0:
        return
    left_index = torch.repeat_interleave(torch.arange(len(a_row), device=count.device), count)
    offsets = torch.cumsum(count, 0) - count
    right_index = start[left_index] + torch.arange(total, device=count.device) - offsets[left_index]
    va = signed(a_values, threshold) if sign_left else a_values
    vb = signed(b.values, threshold) if sign_right else b.values
    for p0, p1 in chunk_ranges(total, PAIRS_PER_STEP):
        li, ri = left_index[p0:p1], right_index[p0:p1]
        dots = torch.einsum("pow,pqw->poq", va[li], vb[ri]).to(torch.float64)
        out.index_put_((a_example[li], b.example[ri]), dots, accumulate=True)
