"""Kernel contributions ⟨∇_θ f(x_i), ∇_θ f(x'_j)⟩ of one parameter from its gradient pieces.

Every routine adds into the internal float64 kernel (S, n1, n2, O, O) through
:func:`kernelft.entk.kinds.accumulate`, holding at most ``budget`` bytes of formed gradients.

- :class:`~kernelft.entk.capture.Dense` pieces are already (n, O, p): one blocked product.
- :class:`~kernelft.entk.capture.Factored` (Linear weights): either form ∇_W f(x_i) = Σ_t g_it a_itᵀ
  for a chunk of examples with one batched matmul and multiply the formed rows, or, for SGD when
  few positions are kept (k² (d_in + O d_out) < O d_in d_out / 2, e.g. k = 1 in the last layer),
  use the token-pair form ⟨∇_W f(x_i), ∇_W f(x_j)⟩ = Σ_{t,t'} (a_it · a_jt')(g_it · g_jt')
  (cost k²(d_in + d_out) per pair instead of d_in d_out).
- :class:`~kernelft.entk.capture.Rows` (embeddings): contracted at token level, see
  :mod:`kernelft.entk.rows` (cost Σ_v n_v² H over the rows v the examples share, not n² V H).
"""

from __future__ import annotations

import torch

from kernelft.entk.capture import Dense, Factored, Piece, Rows
from kernelft.entk.common import chunk_ranges
from kernelft.entk.kinds import KernelKind, accumulate, product_dtype, upcast
from kernelft.entk.projection import CountSketch, Sketches
from kernelft.entk.rows import Entries, rows_product


def merge_chunks(chunks: list[dict[str, list[Piece]]]) -> dict[str, Piece]:
    """One piece per parameter over all examples: a tied parameter's row pieces are joined along
    positions, chunks along examples (positions padded with zero rows)."""
    merged: dict[str, Piece] = {}
    for name in chunks[0]:
        per_chunk = [_join(chunk[name]) for chunk in chunks]
        first = per_chunk[0]
        if isinstance(first, Dense):
            merged[name] = Dense(torch.cat([p.values for p in per_chunk]))
        elif isinstance(first, Factored):
            merged[name] = FactoredStack(per_chunk)  # no copy: factors are the bulk of the memory
        else:
            k = max(p.rows.shape[1] for p in per_chunk)
            merged[name] = Rows(
                torch.cat([_pad(p.rows, 1, k) for p in per_chunk]), torch.cat([_pad(p.values, 2, k) for p in per_chunk])
            )
    return merged


class FactoredStack:
    """The Linear factors of all examples, kept as the capture chunks (each with its own k)."""

    def __init__(self, chunks: list[Factored]) -> None:
        self.chunks = chunks
        self.starts = [0]
        for chunk in chunks:
            self.starts.append(self.starts[-1] + chunk.inputs.shape[0])
        self.n = self.starts[-1]
        self.k = max(chunk.inputs.shape[1] for chunk in chunks)
        self.d_in = chunks[0].inputs.shape[2]
        self.out_dim, _, self.d_out = chunks[0].grads.shape[1:]
        self.dtype = product_dtype(chunks[0].inputs.dtype)  # formed gradients: float32 for bf16/fp16 factors
        self.itemsize = torch.finfo(self.dtype).bits // 8
        self.transposed = chunks[0].transposed

    def form(self, start: int, stop: int) -> torch.Tensor:
        """∇_W f_o(x_i) = Σ_t g_iot a_itᵀ for examples start:stop, flattened as the weight is stored:
        (s, O, d_out d_in), or (s, O, d_in d_out) for Conv1D (Σ_t a_it g_iotᵀ); one batched matmul per
        capture chunk (bfloat16/float16 factors upcast to float32 first)."""
        first = self.chunks[0].inputs
        shape = (self.d_in, self.d_out) if self.transposed else (self.d_out, self.d_in)
        out = torch.empty(stop - start, self.out_dim, *shape, dtype=self.dtype, device=first.device)
        for chunk, c0 in zip(self.chunks, self.starts):
            lo, hi = max(start, c0), min(stop, c0 + chunk.inputs.shape[0])
            if lo >= hi:
                continue
            a = upcast(chunk.inputs[lo - c0 : hi - c0])
            g = upcast(chunk.grads[lo - c0 : hi - c0])
            s, out_dim, k, d_out = g.shape
            if self.transposed:
                torch.matmul(a.transpose(1, 2).unsqueeze(1), g, out=out[lo - start : hi - start])
                continue
            target = out[lo - start : hi - start].view(s, out_dim * d_out, self.d_in)
            torch.bmm(g.transpose(2, 3).reshape(s, out_dim * d_out, k), a, out=target)
        return out.view(stop - start, self.out_dim, -1)


def _join(pieces: list[Piece]) -> Piece:
    if len(pieces) == 1:
        return pieces[0]
    if all(isinstance(p, Rows) for p in pieces):
        return Rows(torch.cat([p.rows for p in pieces], dim=1), torch.cat([p.values for p in pieces], dim=2))
    if all(isinstance(p, Dense) for p in pieces):
        return Dense(sum(p.values for p in pieces))
    raise TypeError(f"cannot join gradient pieces of types {[type(p).__name__ for p in pieces]}")


def _pad(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    if x.shape[dim] == size:
        return x
    shape = list(x.shape)
    shape[dim] = size - x.shape[dim]
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


class Product:
    """Adds one parameter's contribution to ``kernel`` (see the module docstring)."""

    def __init__(self, kernel: torch.Tensor, kind: KernelKind, slots: int | None, threshold: float, budget: float):
        self.kernel, self.kind, self.slots, self.threshold, self.budget = kernel, kind, slots, threshold, budget

    def __call__(self, left: Piece, right: Piece) -> None:
        if isinstance(left, Dense):
            self._dense(left.values, right.values)
        elif isinstance(left, FactoredStack):
            self._factored(left, right)
        else:
            self._rows(left, right)

    def _dense(self, left: torch.Tensor, right: torch.Tensor, rows=slice(None), cols=slice(None)) -> None:
        accumulate(self.kernel, rows, cols, left, right, self.kind, self.slots, self.threshold)

    def _factored(self, left: FactoredStack, right: FactoredStack) -> None:
        k, d_in, d_out, out_dim = max(left.k, right.k), left.d_in, left.d_out, left.out_dim
        if self.kind is KernelKind.SGD and 2 * k * k * (d_in + out_dim * d_out) < out_dim * d_in * d_out:
            self._token_pairs(left, right)
            return
        per_example = out_dim * d_out * d_in * left.itemsize
        n1, n2 = left.n, right.n
        if (n1 + (0 if left is right else n2)) * per_example <= self.budget:
            formed = left.form(0, n1)
            self._dense(formed, formed if left is right else right.form(0, n2))
            return
        size = max(1, int(self.budget // (2 * per_example)))
        for r0, r1 in chunk_ranges(n1, size):
            formed = left.form(r0, r1)
            for c0, c1 in chunk_ranges(n2, size):
                other = formed if left is right and (r0, r1) == (c0, c1) else right.form(c0, c1)
                self._dense(formed, other, slice(r0, r1), slice(c0, c1))

    def _token_pairs(self, left: FactoredStack, right: FactoredStack) -> None:
        """K[i, j, o, p] += Σ_{t,t'} (a_it · a_jt')(g_iot · g_jpt'), per pair of capture chunks."""
        for a, r0 in zip(left.chunks, left.starts):
            for b, c0 in zip(right.chunks, right.starts):
                aa = torch.einsum("itd,jsd->ijts", upcast(a.inputs), upcast(b.inputs)).to(torch.float64)
                gg = torch.einsum("iotd,jpsd->ijopts", upcast(a.grads), upcast(b.grads)).to(torch.float64)
                rows, cols = slice(r0, r0 + a.inputs.shape[0]), slice(c0, c0 + b.inputs.shape[0])
                self.kernel[0, rows, cols] += torch.einsum("ijopts,ijts->ijop", gg, aa)

    def _rows(self, left: Rows, right: Rows) -> None:
        rows_product(self.kernel, left, right, self.kind, self.slots, self.threshold, self.budget)


def project_piece(sketches: Sketches, sketch: CountSketch, name: str, piece: Piece, budget: float) -> None:
    """Add Π ∇_name f(x_i) (and/or Π sign ∇_name f(x_i)) of every example to ``sketches``,
    forming at most ``budget`` bytes of gradients at a time."""
    if isinstance(piece, Dense):
        sketches.add(sketch, piece.values, name, torch.arange(piece.values.shape[-1]))
    elif isinstance(piece, FactoredStack):
        columns = piece.d_out * piece.d_in
        size = max(1, int(budget // (piece.out_dim * columns * piece.itemsize)))
        for r0, r1 in chunk_ranges(piece.n, size):
            sketches.add(sketch, piece.form(r0, r1), name, torch.arange(columns), slice(r0, r1))
    else:
        entries = Entries(piece)
        union = torch.unique(entries.row)
        n, out_dim, _, width = piece.values.shape
        size = max(1, int(budget // (n * out_dim * width * piece.values.element_size())))
        for u0, u1 in chunk_ranges(len(union), size):
            block = union[u0:u1]
            index = (block[:, None] * width + torch.arange(width)).flatten()
            sketches.add(sketch, entries.dense(block), name, index)
