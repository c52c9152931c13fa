"""Kernel contributions ⟨∇_θ f(x_i), ∇_θ f(x'_j)⟩ of one parameter from its gradient pieces.

:class:`Product` adds one parameter's share to the requested kernels that sum over it
(:class:`~kernelft.entk.kinds.Target`: a slot, a row batch, a column batch, which sides are signed, which
parameters) from the pieces of each batch, so that
several kernels of the same examples (K(SGD) and K(A-SignGD), train × train and test × train) share
one gradient collection and one formation of each gradient block. It holds at most ``budget``
bytes of formed gradients.

- :class:`~kernelft.entk.capture.Dense` pieces are already (n, O, p): one blocked product.
- :class:`~kernelft.entk.capture.Factored` (Linear weights): ∇_W f(x_i) = Σ_t g_it a_itᵀ is formed
  for *all* examples of each batch over a block of as many rows of W as ``budget`` holds (one
  batched matmul per capture chunk: n T d_in d_out multiply-adds in all) and that block is multiplied
  into every target (float32 over 2^14 columns, summed in float64), a symmetric self-kernel only on and above
  the diagonal (:data:`~kernelft.entk.kinds.UPPER_BLOCK`). Only when one row of W for all examples
  does not fit ``budget`` are examples split into chunks (formation then repeats per chunk pair).
  For unsigned targets when few positions are kept (k² (d_in + O d_out) < O d_in d_out / 2, e.g.
  k = 1 in the last layer) the token-pair form ⟨∇_W f(x_i), ∇_W f(x_j)⟩ = Σ_{t,t'} (a_it · a_jt')(g_it · g_jt')
  is used instead (cost k²(d_in + d_out) per pair instead of d_in d_out).
- :class:`~kernelft.entk.capture.Rows` (embeddings): contracted at token level, see
  :mod:`kernelft.entk.rows` (cost Σ_v n_v² H over the rows v the examples share, not n² V H).
"""

from __future__ import annotations

import torch

from kernelft.entk.capture import Dense, Factored, Piece, Rows
from kernelft.entk.common import chunk_ranges
from kernelft.entk.kinds import UPPER_BLOCK, Target, add_product, product_dtype, signed, upcast
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

    def form_rows(self, w0: int, w1: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Columns of ∇_W f_o(x_i) for output rows w0:w1 of W (input rows for Conv1D) and examples
        start:stop, as (s, O, (w1 − w0) d_in): ``g_io[:, w0:w1]ᵀ a_i``, one batched matmul per capture
        chunk and output. The column order is not the weight's, but the same for every example,
        which is all a kernel needs. Wide blocks matter: on 2 CPU cores these small matmuls run at
        12.6 GFLOP/s for 512 rows of W against 7.9 for 42 rows (a 2^14-column block; loaded machine)."""
        stop = self.n if stop is None else stop
        first = self.chunks[0].inputs
        out = torch.empty(stop - start, self.out_dim, w1 - w0, self.d_in, dtype=self.dtype, device=first.device)
        for chunk, c0 in zip(self.chunks, self.starts):
            lo, hi = max(start, c0), min(stop, c0 + chunk.inputs.shape[0])
            if lo >= hi:
                continue
            a = upcast(chunk.inputs[lo - c0 : hi - c0])  # (s, k, d_in)
            g = upcast(chunk.grads[lo - c0 : hi - c0, :, :, w0:w1])  # (s, O, k, w)
            for o in range(self.out_dim):
                torch.bmm(g[:, o].transpose(1, 2), a, out=out[lo - start : hi - start, o])
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
    """Adds one parameter's contribution to the targets it is called with (see the module docstring)."""

    def __init__(self, threshold: float, budget: float) -> None:
        self.threshold, self.budget = threshold, budget

    def __call__(self, targets: list[Target], pieces: dict[str, Piece]) -> None:
        """``pieces``: this parameter's piece of each batch the ``targets`` name."""
        first = next(iter(pieces.values()))
        if isinstance(first, Dense):
            self._dense(targets, {name: piece.values for name, piece in pieces.items()})
        elif isinstance(first, FactoredStack):
            self._factored(targets, pieces)
        else:
            entries = {name: Entries(piece) for name, piece in pieces.items()}
            for t in targets:
                left, right = entries[t.rows], entries[t.cols]
                rows_product(t.out, left, right, t.sign_left, t.sign_right, self.threshold, self.budget)

    def _operands(self, targets: list[Target], blocks: dict[str, torch.Tensor]):
        """(left, right or None) of each target from the batches' blocks, each block signed at most once."""
        signs: dict[str, torch.Tensor] = {}

        def op(name: str, sign: bool) -> torch.Tensor:
            if not sign:
                return blocks[name]
            if name not in signs:
                signs[name] = signed(blocks[name], self.threshold)
            return signs[name]

        for t in targets:
            left = op(t.rows, t.sign_left)
            same = t.rows == t.cols and t.sign_left == t.sign_right
            yield t, left, None if same else op(t.cols, t.sign_right)

    def _dense(self, targets: list[Target], blocks: dict[str, torch.Tensor]) -> None:
        for t, left, right in self._operands(targets, blocks):
            add_product(t.out, left, right, upper=t.upper)

    def _factored(self, targets: list[Target], stacks: dict[str, FactoredStack]) -> None:
        first = next(iter(stacks.values()))
        k, d_in, d_out, out_dim = max(s.k for s in stacks.values()), first.d_in, first.d_out, first.out_dim
        few_positions = 2 * k * k * (d_in + out_dim * d_out) < out_dim * d_in * d_out
        formed = []
        for t in targets:
            if few_positions and not (t.sign_left or t.sign_right):
                self._token_pairs(t, stacks[t.rows], stacks[t.cols])
            else:
                formed.append(t)
        if not formed:
            return
        names = {t.rows for t in formed} | {t.cols for t in formed}
        signs = {t.rows for t in formed if t.sign_left} | {t.cols for t in formed if t.sign_right}
        row_bytes = out_dim * d_in * first.itemsize  # one row of W, one example
        per_row = sum(stacks[name].n * (1 + (name in signs)) for name in names) * row_bytes
        width = min(d_out, int(self.budget // per_row))  # as many rows of W as fit: see form_rows
        if width < 1:
            self._factored_chunks(formed, stacks, signs, row_bytes)
            return
        for w0 in range(0, d_out, width):
            w1 = min(w0 + width, d_out)
            self._dense(formed, {name: stacks[name].form_rows(w0, w1) for name in names})

    def _factored_chunks(self, targets: list[Target], stacks: dict[str, FactoredStack], signs: set, row_bytes: int):
        """Examples in chunks (a multiple of UPPER_BLOCK) of which one row of W fits ``budget`` per pair."""
        size = int(self.budget // (2 * (1 + bool(signs)) * row_bytes)) // UPPER_BLOCK * UPPER_BLOCK
        size = max(size, UPPER_BLOCK)
        d_out = next(iter(stacks.values())).d_out
        for t in targets:
            left, right = stacks[t.rows], stacks[t.cols]
            for r0, r1 in chunk_ranges(left.n, size):
                for c0, c1 in chunk_ranges(right.n, size):
                    if t.upper and c1 <= r0:
                        continue  # below the diagonal: mirrored at the end
                    diagonal = t.upper and r0 == c0
                    for w in range(d_out):
                        a = left.form_rows(w, w + 1, r0, r1)
                        a = signed(a, self.threshold) if t.sign_left else a
                        if diagonal:
                            add_product(t.out, a, None, slice(r0, r1), slice(r0, r1), upper=True)
                            continue
                        b = right.form_rows(w, w + 1, c0, c1)
                        b = signed(b, self.threshold) if t.sign_right else b
                        add_product(t.out, a, b, slice(r0, r1), slice(c0, c1))

    def _token_pairs(self, t: Target, left: FactoredStack, right: FactoredStack) -> None:
        """K[i, j, o, p] += Σ_{t,t'} (a_it · a_jt')(g_iot · g_jpt'), per pair of capture chunks."""
        for a, r0 in zip(left.chunks, left.starts):
            for b, c0 in zip(right.chunks, right.starts):
                if t.upper and (c0 + b.inputs.shape[0] - 1) // UPPER_BLOCK < r0 // UPPER_BLOCK:
                    continue  # every entry lies in a block below the diagonal: mirrored at the end
                aa = torch.einsum("itd,jsd->ijts", upcast(a.inputs), upcast(b.inputs)).to(torch.float64)
                gg = torch.einsum("iotd,jpsd->ijopts", upcast(a.grads), upcast(b.grads)).to(torch.float64)
                rows, cols = slice(r0, r0 + a.inputs.shape[0]), slice(c0, c0 + b.inputs.shape[0])
                t.out[rows, cols] += torch.einsum("ijopts,ijts->ijop", gg, aa)


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
