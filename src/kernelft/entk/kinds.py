"""Kernel kinds, output reductions and the blocked float64 contraction every engine shares.

Notation (Malladi et al., "A Kernel-Based View of Language Model Fine-Tuning", ICML 2023,
https://arxiv.org/abs/2210.05643): ``f(x) ∈ R^O`` is the model output after the reduction below and
``g(x) = ∇_θ f(x) ∈ R^{O×P}`` its Jacobian with respect to the selected parameters θ (P of them).

- ``KernelKind.SGD``: ``K[i, j, a, b] = <g_a(x_i), g_b(x'_j)>`` (the eNTK; SGD fine-tuning in the
  kernel regime is kernel regression with it).
- ``KernelKind.SIGNGD``: ``K[i, j, a, b] = <g_a(x_i), sign g_b(x'_j)>`` (the A-SignGD kernel of the
  paper: Adam/SignGD fine-tuning in the kernel regime; not symmetric).
- ``KernelKind.SIGNGD_SYMMETRIC``: ``<sign g_a(x_i), sign g_b(x'_j)>`` (the reference code's
  ``kernel_formula=signgd``, a symmetric stand-in for the sign kernel).
- ``KernelKind.ASYMMETRIC_SIGNGD``: the pair the asymmetric solver needs (reference code's
  ``kernel_formula=asymmetric_signgd``), stacked on a leading axis of length 2:
  ``K[0, i, j] = <sign g(x_i), g(x'_j)>`` and ``K[1, i, j] = <g(x_i), sign g(x'_j)>``.
  With ``x = x'`` the second is the transpose of the first.

Output reduction (``output=``): ``"difference"`` uses ``f = logit_1 - logit_0`` (binary tasks, as
in the paper), ``"logits"`` keeps all C logits, ``"auto"`` picks ``"difference"`` for C = 2 and
``"logits"`` otherwise. Kernels are returned as (n1, n2) when O = 1 and (n1, n2, O, O) otherwise
(with the leading 2 for ``ASYMMETRIC_SIGNGD``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

PRODUCT_COLUMN_BLOCK = 2**14
"""Columns per float32 product block; blocks are summed in float64. A float32 product over all 22M
columns of MiniLM is off by 3.5e-6 (n = 64) to 2e-3 (n = 8); blocks of 2^14 keep it near 4e-8."""


class KernelKind(str, Enum):
    """Which inner product of per-example gradients defines the kernel (see the module docstring)."""

    SGD = "sgd"
    SIGNGD = "signgd"
    SIGNGD_SYMMETRIC = "signgd_symmetric"
    ASYMMETRIC_SIGNGD = "asymmetric_signgd"

    @property
    def slots(self) -> int:
        """Number of kernels computed at once (2 for the asymmetric pair)."""
        return 2 if self is KernelKind.ASYMMETRIC_SIGNGD else 1

    @property
    def symmetric(self) -> bool:
        """Whether K(x, x') = K(x', x)ᵀ, so that a self-kernel needs only its upper triangle."""
        return self in (KernelKind.SGD, KernelKind.SIGNGD_SYMMETRIC)

    def operands(self, slot: int) -> tuple[bool, bool]:
        """(sign the left gradient?, sign the right gradient?) for kernel ``slot``."""
        if self is KernelKind.SGD:
            return False, False
        if self is KernelKind.SIGNGD:
            return False, True
        if self is KernelKind.SIGNGD_SYMMETRIC:
            return True, True
        return (True, False) if slot == 0 else (False, True)


OUTPUTS = ("auto", "difference", "logits")


def resolve_output(output: str, num_classes: int) -> str:
    """``"auto"`` → ``"difference"`` for two classes, else ``"logits"``; validates the choice."""
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}: expected one of {OUTPUTS}")
    if output == "auto":
        return "difference" if num_classes == 2 else "logits"
    if output == "difference" and num_classes != 2:
        raise ValueError(f"output='difference' needs 2 classes, the model has {num_classes}; use output='logits'")
    return output


def reduce_logits(logits: torch.Tensor, output: str) -> torch.Tensor:
    """(..., C) logits → (..., O): ``logit_1 - logit_0`` (O = 1) or the logits themselves (O = C)."""
    if output == "difference":
        return logits[..., 1:2] - logits[..., 0:1]
    return logits


def output_dim(output: str, num_classes: int) -> int:
    return 1 if output == "difference" else num_classes


SIGN_THRESHOLD = 1e-8
"""Gradient entries with |g| ≤ this count as 0 in sign(g) (a dead zone at Adam's default ε, where
Adam's first update g / (|g| + ε) vanishes too). It also makes sign kernels reproducible: entries
that are exactly 0 in theory (e.g. every key-projection bias, which softmax ignores) come out as
±1e-20 noise whose sign differs between implementations."""


def signed(x: torch.Tensor, threshold: float = SIGN_THRESHOLD) -> torch.Tensor:
    """sign(x) with entries |x| ≤ threshold set to 0.

    ``hardshrink`` zeroes the dead zone in one pass, then ``sign_`` works in place: 5x faster than
    ``x.sign() * (x.abs() > threshold)`` (four passes and three temporaries), which took over half
    of a K(A-SignGD) of MiniLM.
    """
    if threshold <= 0:
        return x.sign()
    return torch.nn.functional.hardshrink(x, threshold).sign_()


def product_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype products of ``dtype`` blocks run in: float64 stays float64, float32, bfloat16 and
    float16 multiply in float32 (a bfloat16 block is upcast first, never a bfloat16-output matmul)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in :func:`product_dtype` (no copy for float32 and float64)."""
    return x.to(product_dtype(x.dtype))


def contract(
    left: torch.Tensor, right: torch.Tensor, sign_left: bool, sign_right: bool, threshold: float = SIGN_THRESHOLD
) -> torch.Tensor:
    """Σ_p L[a, p] R[b, p] for gradient rows L (A, p) and R (B, p), returned in float64 (A, B).

    ``sign_left``/``sign_right`` replace an operand by :func:`signed` first (SignGD kernels).

    float64 inputs are multiplied in float64. float32 inputs are multiplied in float32 over column
    blocks of :data:`PRODUCT_COLUMN_BLOCK` and the blocks summed in float64 (≈5× faster than a
    float64 product on CPU, relative error ≈ 4e-8 on MiniLM). bfloat16 and float16 blocks are
    upcast to float32 one block at a time, then multiplied and summed the same way.
    """
    if sign_left:
        left = signed(left, threshold)
    if sign_right:
        right = signed(right, threshold)
    if left.dtype == torch.float64 or left.shape[1] <= PRODUCT_COLUMN_BLOCK:
        return (upcast(left) @ upcast(right).T).to(torch.float64)
    total = torch.zeros(left.shape[0], right.shape[0], dtype=torch.float64, device=left.device)
    for start in range(0, left.shape[1], PRODUCT_COLUMN_BLOCK):
        stop = start + PRODUCT_COLUMN_BLOCK
        total += upcast(left[:, start:stop]) @ upcast(right[:, start:stop]).T
    return total


UPPER_BLOCK = 256
"""Examples per row block of a symmetric self-kernel product: block row r is multiplied only with
the columns of blocks ≥ r (n = 512: 3 of 4 block products); the rest is mirrored. Smaller blocks
lose more to the GEMM than they save on 2 cores: against the full 512 × 512 product (2^14 columns,
loaded machine) row blocks of 64 took 1.54×, of 128 1.19×, of 256 0.98× its time."""


@dataclass(frozen=True)
class Target:
    """One kernel an engine fills: ``kernel[slot][i, j] += <op_l g(x_i), op_r g(x'_j)>``, x from the
    batch named ``rows``, x' from ``cols``, op = :func:`signed` where ``sign_left``/``sign_right``.

    ``upper``: a symmetric self-kernel (rows = cols, the same op on both sides) of which only the
    entries with ``i // UPPER_BLOCK <= j // UPPER_BLOCK`` must be right; :func:`finish_kernel`
    mirrors the others. Products may add anything to the other entries.

    ``params``: the names of the parameters the kernel sums over (a subset of those collected, e.g.
    the LoRA adapters' beside the full model's); None for all of them.
    """

    kernel: torch.Tensor
    slot: int
    rows: str
    cols: str
    sign_left: bool
    sign_right: bool
    upper: bool = False
    params: frozenset[str] | None = None

    def wants(self, param: str) -> bool:
        """Whether parameter ``param`` contributes to this kernel."""
        return self.params is None or param in self.params

    @property
    def out(self) -> torch.Tensor:
        """The float64 (n1, n2, O, O) kernel this target adds into."""
        return self.kernel[self.slot]


def targets_for(
    kind: KernelKind, kernel: torch.Tensor, rows: str, cols: str, params: frozenset[str] | None = None
) -> list[Target]:
    """The slots of ``kernel`` (S, n1, n2, O, O) that products must fill for a request (kind, rows, cols),
    over the parameters ``params`` (None: all collected).

    A self-kernel (rows = cols) of a symmetric kind is an ``upper`` target; of ``ASYMMETRIC_SIGNGD``
    only slot 0 is computed (slot 1 is its transpose, see :func:`finish_kernel`).
    """
    same = rows == cols
    slots = 1 if same and kind is KernelKind.ASYMMETRIC_SIGNGD else kind.slots
    return [
        Target(kernel, slot, rows, cols, *kind.operands(slot), upper=same and kind.symmetric, params=params)
        for slot in range(slots)
    ]


def finish_kernel(kernel: torch.Tensor, kind: KernelKind, self_kernel: bool) -> None:
    """Complete what :func:`targets_for` left out of a self-kernel: the mirrored lower blocks of a
    symmetric kind, slot 1 of an asymmetric pair."""
    if not self_kernel:
        return
    if kind.symmetric:
        index = torch.arange(kernel.shape[1], device=kernel.device) // UPPER_BLOCK
        fill_lower_triangle(kernel, index[:, None] <= index[None, :])
    elif kind is KernelKind.ASYMMETRIC_SIGNGD:
        complete_asymmetric_self(kernel)


def add_product(
    out: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor | None,
    rows: slice = slice(None),
    cols: slice = slice(None),
    upper: bool = False,
) -> None:
    """``out[rows, cols] += Σ_p L[i, a, p] R[j, b, p]`` (as (i, j, a, b)) for operands already signed
    as needed; ``out`` float64 (n1, n2, O, O), ``left`` (A, O, p), ``right`` (B, O, p) or None for
    ``left`` itself. Products as :func:`contract` (float32 over column blocks, summed in float64).

    ``upper`` (``right`` None, ``rows`` = ``cols`` starting at a multiple of :data:`UPPER_BLOCK`):
    only the row blocks' products with the columns at or after them are computed (see :class:`Target`).
    """
    a, o = left.shape[:2]
    flat_left = left.reshape(a * o, -1)
    if not upper:
        other = left if right is None else right
        b = other.shape[0]
        block = contract(flat_left, flat_left if right is None else other.reshape(b * o, -1), False, False)
        out[rows, cols] += block.reshape(a, o, b, o).permute(0, 2, 1, 3)
        return
    r_start = rows.start or 0
    for r0 in range(0, a, UPPER_BLOCK):
        r1 = min(r0 + UPPER_BLOCK, a)
        block = contract(flat_left[r0 * o : r1 * o], flat_left[r0 * o :], False, False)
        out[r_start + r0 : r_start + r1, r_start + r0 : r_start + a] += block.reshape(r1 - r0, o, a - r0, o).permute(
            0, 2, 1, 3
        )


def to_output_array(kernel: torch.Tensor, kind: KernelKind) -> np.ndarray:
    """Internal (S, n1, n2, O, O) float64 → the public layout (see module docstring), as numpy."""
    if kernel.shape[-1] == 1:
        kernel = kernel[..., 0, 0]
    if kind.slots == 1:
        kernel = kernel[0]
    return kernel.contiguous().cpu().numpy()


def fill_lower_triangle(kernel: torch.Tensor, done: torch.Tensor) -> None:
    """Complete a symmetric self-kernel (S, n, n, O, O) from the entries marked True in ``done`` (n, n)."""
    mirrored = kernel.transpose(1, 2).transpose(3, 4)
    missing = ~done
    kernel[:, missing] = mirrored[:, missing]


def complete_asymmetric_self(kernel: torch.Tensor) -> None:
    """For x = x', slot 1 ``<g_i, sign g_j>`` is slot 0 ``<sign g_j, g_i>`` transposed."""
    kernel[1] = kernel[0].transpose(0, 1).transpose(2, 3)


def accumulate(
    kernel: torch.Tensor,
    rows: slice,
    cols: slice,
    left: torch.Tensor,
    right: torch.Tensor,
    kind: KernelKind,
    slots: int | None = None,
    threshold: float = SIGN_THRESHOLD,
) -> None:
    """``kernel[s, rows, cols] += <left, right>`` for per-example gradient pieces.

    ``kernel`` is the internal float64 (S, n1, n2, O, O) array; ``left`` (A, O, p) and ``right``
    (B, O, p) hold the same p coordinates of the gradients of A row and B column examples.
    ``slots`` limits the update to the first kernels (a self asymmetric pair needs only slot 0).
    """
    a, o = left.shape[:2]
    b = right.shape[0]
    flat_left, flat_right = left.reshape(a * o, -1), right.reshape(b * o, -1)
    for slot in range(kernel.shape[0] if slots is None else slots):
        sign_left, sign_right = kind.operands(slot)
        block = contract(flat_left, flat_right, sign_left, sign_right, threshold)
        kernel[slot, rows, cols] += block.reshape(a, o, b, o).permute(0, 2, 1, 3)


def check_finite(kernel: np.ndarray, what: str) -> np.ndarray:
    """``kernel`` itself, or a FloatingPointError naming ``what`` and how many entries are NaN or inf."""
    bad = ~np.isfinite(kernel)
    if bad.any():
        raise FloatingPointError(
            f"{what} has {int(bad.sum())} non-finite (NaN or inf) entries: the gradients overflowed "
            "(try model.dtype: float64) or the model weights hold NaN"
        )
    return kernel
