"""Random projection of per-example gradients (a seeded CountSketch; the matrix never exists).

``K̃[i, j] = <Π g(x_i), Π g(x_j)>`` with Π ∈ R^{d×P} a CountSketch (Charikar, Chen & Farach-Colton
2002; as a JL transform: Clarkson & Woodruff 2013): coordinate p of parameter ``name`` goes to
bucket h(p) ∈ [0, d) with sign s(p) = ±1, so ``(Π g)_b = Σ_{p: h(p)=b} s(p) g_p``.
E[K̃] = K and Var K̃[i, j] ≤ (‖g_i‖² ‖g_j‖² + K[i, j]²) / d, so the relative error falls as d^{-1/2}.
Malladi et al. (2023) use random projections of gradients to cut the memory of the kernel;
Figure F4 plots the relative error against d.

h and s are hash functions of (seed, parameter name, flat index p) — multiply-shift hashing in
int64 — so any engine, chunk or block job projects a coordinate the same way, cost O(P) per
example (vs O(n P) per example for the exact product) and O(1) memory beyond the (n, O, d) sketch.
Sign kernels project sign(g) with the same Π: ``<Π g_i, Π sign g_j>``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from kernelft.entk.kinds import KernelKind, accumulate, signed

PROJECT_COLUMNS = 2**16
"""Columns projected at once (bounds the float64 temporaries)."""


def _odd(x: int) -> int:
    return x | 1


class CountSketch:
    """Π for projection dimension ``dim`` and ``seed``: ``project(values, name, index)``."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        if dim < 1:
            raise ValueError(f"projection_dim={dim}: must be ≥ 1")
        self.dim = dim
        self.seed = seed
        self._keys: dict[str, tuple[int, int, int, int]] = {}

    def _key(self, name: str) -> tuple[int, int, int, int]:
        if name not in self._keys:
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            a, b, c, e = (int(x) for x in rng.integers(-(2**62), 2**62, size=4))
            self._keys[name] = (_odd(a), b, _odd(c), e)
        return self._keys[name]

    def hashes(self, name: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Buckets (p,) int64 in [0, dim) and signs (p,) ±1 for flat indices ``index`` of ``name``."""
        a, b, c, e = self._key(name)
        index = index.to(torch.int64)
        # int64 products wrap modulo 2^64 (multiply-shift hashing); the high bits are well mixed.
        bucket = ((index * a + b) >> 33) % self.dim
        sign = (((index * c + e) >> 40) & 1) * 2 - 1
        return bucket, sign

    def project(self, values: torch.Tensor, name: str, index: torch.Tensor) -> torch.Tensor:
        """Π applied to the columns ``index`` of ``name``: values (n, O, p) → (n, O, dim) float64."""
        out = torch.zeros(*values.shape[:-1], self.dim, dtype=torch.float64, device=values.device)
        for start in range(0, values.shape[-1], PROJECT_COLUMNS):
            stop = start + PROJECT_COLUMNS
            bucket, sign = self.hashes(name, index[start:stop])
            out.index_add_(-1, bucket, values[..., start:stop].to(torch.float64) * sign.to(torch.float64))
        return out


@dataclass
class Sketches:
    """Projected gradients of one batch: ``plain`` Π g and/or ``signed`` Π sign g, each (n, O, d)."""

    plain: torch.Tensor | None = None
    signs: torch.Tensor | None = None
    want_plain: bool = True
    want_signs: bool = False
    threshold: float = 0.0

    def add(
        self, sketch: CountSketch, values: torch.Tensor, name: str, index: torch.Tensor, rows: slice = slice(None)
    ) -> None:
        """Project the columns ``index`` of ``name`` for the examples ``rows``; values (r, O, p)."""
        for attribute, wanted, transform in (
            ("plain", self.want_plain, lambda v: v),
            ("signs", self.want_signs, lambda v: signed(v, self.threshold)),
        ):
            if wanted:
                projected = sketch.project(transform(values), name, index)
                getattr(self, attribute)[rows] += projected


def wanted(kind: KernelKind, left: bool) -> tuple[bool, bool]:
    """(plain, signed) sketches a kernel kind needs on its left (row) or right (column) side."""
    sides = [kind.operands(slot)[0 if left else 1] for slot in range(kind.slots)]
    return (not all(sides)), any(sides)


def new_sketches(
    kind: KernelKind, sides: tuple[bool, ...], n: int, out_dim: int, dim: int, threshold: float
) -> Sketches:
    """Empty sketches of n examples for the sides (True: left, False: right) they will serve."""
    plain = any(wanted(kind, side)[0] for side in sides)
    signs = any(wanted(kind, side)[1] for side in sides)
    zeros = lambda: torch.zeros(n, out_dim, dim, dtype=torch.float64)  # noqa: E731
    return Sketches(zeros() if plain else None, zeros() if signs else None, plain, signs, threshold)


def projected_kernel(kernel: torch.Tensor, kind: KernelKind, left: Sketches, right: Sketches) -> None:
    """``kernel[s] += <Π a, Π b>`` with a, b = g or sign g as slot s of ``kind`` asks."""
    for slot in range(kind.slots):
        sign_left, sign_right = kind.operands(slot)
        a = left.signs if sign_left else left.plain
        b = right.signs if sign_right else right.plain
        one = torch.zeros_like(kernel[slot : slot + 1])
        accumulate(one, slice(None), slice(None), a, b, KernelKind.SGD)
        kernel[slot] += one[0]
