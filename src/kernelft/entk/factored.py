"""Factored random projection of Linear weight gradients (LoGra: Choe et al. 2024, "What is Your Data
Worth to GPT? LLM-Scale Data Valuation with Influence Functions", https://arxiv.org/abs/2405.13954).

For a Linear layer y = W a (W ∈ R^{d_out×d_in}) the per-example gradient is ∇_W f(x_i) = Σ_t g_it a_itᵀ
(:class:`~kernelft.entk.capture.Factored`). LoGra projects it with the Kronecker product P_out ⊗ P_in,
which acts on the two factors separately, so ∇_W f(x_i) is never formed:

    Π ∇_W f(x_i) = P_out ∇_W f(x_i) P_inᵀ = Σ_t (P_out g_it)(P_in a_it)ᵀ        (k_out × k_in)

    K̃[i, j] = Σ_{Linear weights W} ⟨Π ∇_W f(x_i), Π ∇_W f(x'_j)⟩_F + (exact kernel of every other parameter)

P_in ∈ R^{k_in×d_in} and P_out ∈ R^{k_out×d_out} are independent with iid N(0, 1/k) entries, so
E[PᵀP] = I and E[⟨Π G_i, Π G_j⟩] = tr(E[P_inᵀ P_in] G_iᵀ E[P_outᵀ P_out] G_j) = ⟨G_i, G_j⟩: unbiased.
GPT-2's ``Conv1D`` (W stored d_in × d_out) is projected the same way. Biases, norms, embeddings,
vocabulary-sized (row-sparse) Linear weights and anything else keep their exact contribution.

Sizes: ``projection_dim=d`` gives k = round(√d) per side and per layer, so each Linear weight keeps
k² ≈ d numbers per example and output (d = 1000 → k = 32, 1024 numbers); a side whose dimension is
at most k is not projected (P = I: exact on that side, nothing to gain from a projection).
CountSketch (:mod:`.projection`) instead keeps d numbers for all parameters together.

Error: for one position (k_t = 1), ⟨Π G_i, Π G_j⟩ = ⟨P_out g_i, P_out g_j⟩ ⟨P_in a_i, P_in a_j⟩, two
k-dimensional JL estimates, so a layer's relative error falls as k^{-1/2} = d^{-1/4} (CountSketch:
d^{-1/2} for all parameters together), and activations sharing a direction make it a common scale
error of the layer rather than noise that averages over entries. On MiniLM (``benchmarks/projection.py``,
n = 32, all parameters, 5 seeds) the mean ‖K̃ − K‖/‖K‖ was 0.064, 0.045, 0.018, 0.016 at
d = 64, 256, 1024, 4096 (CountSketch, seed 0: 0.115, 0.050, 0.024, 0.017).

The hook engine projects the factors as it captures them (:func:`~kernelft.entk.capture.capture`),
so it stores T (k_in + O k_out) numbers per example and Linear weight instead of T (d_in + O d_out),
and the projected factors then go through the exact product of Linear factors. Cost per Linear
weight and n examples (k_t kept positions): n k_t (d_in k_in + O d_out k_out) to project the factors,
n O k_t k_out k_in to form Π∇_W, n² O² k_out k_in for the product — against n O k_t d_out d_in to
form the exact gradient and n² O² d_out d_in to multiply it.

Seeds: P_in and P_out are drawn in float64 on the CPU from a generator seeded by (seed, parameter
name, side), so the hook and Jacobian engines, every chunk and every block job project alike
(the Jacobian engine applies P_out G P_inᵀ to the formed gradient G reshaped to (d_out, d_in)).

Sign kernels are refused: sign(Π g) is not Π sign(g), and Π sign(∇_W f) needs the formed gradient
(sign does not factor), which is what this projection avoids; use ``projection="countsketch"``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from kernelft.entk.capture import ROW_SPARSE_OUTPUTS
from kernelft.entk.kinds import product_dtype


def linear_weight_shapes(model: nn.Module, params: dict[str, torch.Tensor]) -> dict[str, tuple[int, int, bool]]:
    """(d_out, d_in, stored transposed) of the selected ``nn.Linear`` and ``Conv1D`` weights the
    factored projection applies to: not tied to an embedding and with fewer than
    ``ROW_SPARSE_OUTPUTS`` outputs (the hook engine keeps those as rows)."""
    by_id = {id(p): name for name, p in params.items()}
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    shapes = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, (nn.Linear, Conv1D)) or id(weight) not in by_id or id(weight) in embeddings:
            continue
        transposed = isinstance(module, Conv1D)
        d_out, d_in = (weight.shape[1], weight.shape[0]) if transposed else tuple(weight.shape)
        if d_out < ROW_SPARSE_OUTPUTS:
            shapes[by_id[id(weight)]] = (d_out, d_in, transposed)
    return shapes


class FactoredProjection:
    """P_out, P_in for every Linear weight of ``shapes`` ({name: (d_out, d_in, transposed)}), ``dim``
    and ``seed``."""

    def __init__(self, dim: int, seed: int, shapes: dict[str, tuple[int, int, bool]]) -> None:
        if dim < 1:
            raise ValueError(f"projection_dim={dim}: must be ≥ 1")
        self.dim, self.seed, self.shapes = dim, seed, shapes
        self.k = max(1, round(math.sqrt(dim)))
        self._matrices: dict[tuple[str, int], torch.Tensor | None] = {}

    def sizes(self, name: str) -> tuple[int, int]:
        """(k_out, k_in) of parameter ``name``."""
        d_out, d_in, _ = self.shapes[name]
        return min(self.k, d_out), min(self.k, d_in)

    def numel(self) -> int:
        """Projected numbers per example and output, over all projected weights."""
        return sum(math.prod(self.sizes(name)) for name in self.shapes)

    def matrix(self, name: str, side: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """P_out (``side`` 0, k_out × d_out) or P_in (``side`` 1, k_in × d_in) of ``name``, N(0, 1/k)
        entries; None when the side is not projected (k ≥ its dimension)."""
        if (name, side) not in self._matrices:
            d = self.shapes[name][side]
            if self.k >= d:
                self._matrices[name, side] = None
            else:
                key = np.random.default_rng([self.seed, zlib.crc32(name.encode()), side]).integers(2**62)
                generator = torch.Generator().manual_seed(int(key))
                p = torch.randn(self.k, d, generator=generator, dtype=torch.float64) / math.sqrt(self.k)
                self._matrices[name, side] = p
        p = self._matrices[name, side]
        return None if p is None else p.to(dtype=dtype, device=device)

    def _apply(self, x: torch.Tensor, name: str, side: int) -> torch.Tensor:
        """x (..., d) → x Pᵀ (..., k), in float64 for float64 x, else in float32."""
        x = x.to(product_dtype(x.dtype))
        p = self.matrix(name, side, x.dtype, x.device)
        return x if p is None else x @ p.T

    def project_inputs_and_grads(
        self, inputs: torch.Tensor, grads: torch.Tensor, name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(P_in a_it, P_out g_it): inputs (b, k_t, d_in) → (b, k_t, k_in), grads (b, O, k_t, d_out) →
        (b, O, k_t, k_out), in float64 for float64 factors, else float32."""
        return self._apply(inputs, name, 1), self._apply(grads, name, 0)

    def project_formed(self, columns: torch.Tensor, name: str) -> torch.Tensor:
        """P_out G P_inᵀ of formed gradients, columns (b, O, d_out d_in) (Conv1D: d_in d_out) →
        (b, O, k_out k_in)."""
        d_out, d_in, transposed = self.shapes[name]
        if transposed:
            g = columns.reshape(*columns.shape[:2], d_in, d_out).transpose(2, 3)
        else:
            g = columns.reshape(*columns.shape[:2], d_out, d_in)
        g = self._apply(g, name, 1)  # G P_inᵀ: (b, O, d_out, k_in)
        g = self._apply(g.transpose(2, 3), name, 0)  # (G P_inᵀ)ᵀ P_outᵀ: (b, O, k_in, k_out)
        return g.transpose(2, 3).reshape(*columns.shape[:2], -1)


class ProjectedJacobian:
    """Wraps a :class:`~kernelft.entk.functorch_engine.JacobianFn`: the columns of every projected
    Linear weight of a group are replaced by P_out G P_inᵀ (the other columns pass unchanged)."""

    def __init__(self, jacobian, projection: FactoredProjection, params: dict[str, torch.Tensor]) -> None:
        self.jacobian, self.projection = jacobian, projection
        self.numel = {name: p.numel() for name, p in params.items()}

    def __call__(self, group: list[str], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        jac = self.jacobian(group, batch)
        if not any(name in self.projection.shapes for name in group):
            return jac
        dtype = product_dtype(jac.dtype)
        pieces, offset = [], 0
        for name in group:
            columns = jac[..., offset : offset + self.numel[name]]
            offset += self.numel[name]
            projected = name in self.projection.shapes
            pieces.append(self.projection.project_formed(columns, name) if projected else columns.to(dtype))
        return torch.cat(pieces, dim=2)
