"""bfloat16 / float16 models: every eNTK product multiplies float32 blocks and sums them in float64."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tiny_models import tiny_batch, tiny_classifier
from torch.overrides import TorchFunctionMode

from kernelft.entk import Implementation, KernelKind, empirical_ntk_fn, relative_error
from kernelft.entk.capture import Dense, Factored, Rows
from kernelft.entk.kinds import contract, finish_kernel, targets_for
from kernelft.entk.products import FactoredStack, Product, project_piece
from kernelft.entk.projection import CountSketch, new_sketches
from kernelft.text.experiment import DTYPES

LOW = [torch.bfloat16, torch.float16]
ENGINES = [Implementation.HOOKS, Implementation.JACOBIAN]
MATMULS = {torch.matmul, torch.Tensor.__matmul__, torch.Tensor.matmul, torch.mm, torch.bmm, torch.einsum}


class NoLowPrecisionMatmul(TorchFunctionMode):
    """Fails on any matmul or einsum that receives a bfloat16 or float16 tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a])]
            low = [x.dtype for x in flat if isinstance(x, torch.Tensor) and x.dtype in LOW]
            assert not low, f"{func.__name__} multiplies {low}"
        return func(*args, **(kwargs or {}))


def test_config_dtypes_include_low_precision():
    assert DTYPES["bfloat16"] is torch.bfloat16 and DTYPES["float16"] is torch.float16


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("implementation", ENGINES, ids=lambda i: i.value)
@pytest.mark.parametrize("head,classes", [("prompt", 2), ("linear", 3)])
def test_low_precision_kernel_is_close_to_float64_of_the_same_weights(dtype, implementation, head, classes):
    low = tiny_classifier("bert", head, classes).to(dtype)
    reference = copy.deepcopy(low).to(torch.float64)  # the same (exactly representable) weights
    batch = tiny_batch(6)
    expected = empirical_ntk_fn(reference, implementation=implementation, show_progress=False)(batch)
    got = empirical_ntk_fn(low, implementation=implementation, show_progress=False)(batch)
    assert got.dtype == np.float64 and np.isfinite(got).all()
    assert relative_error(got, expected) < 3e-2


def _pieces(low, dtype):
    """Random gradient pieces of 5 examples, O = 2: values of dtype ``low``, stored as ``dtype``."""
    generator = torch.Generator().manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, generator=generator).to(low).to(dtype)  # noqa: E731
    chunks = [Factored(randn(3, 4, 24), randn(3, 2, 4, 20)), Factored(randn(2, 2, 24), randn(2, 2, 2, 20))]
    last_position = [Factored(randn(5, 1, 24), randn(5, 2, 1, 20))]  # k = 1: the token-pair path
    rows = torch.randint(0, 30, (5, 6), generator=generator)
    dense = Dense(randn(5, 2, 40_000))
    return FactoredStack(chunks), FactoredStack(last_position), dense, Rows(rows, randn(5, 2, 6, 8))


def _products(pieces, kind):
    kernel = torch.zeros(kind.slots, 5, 5, 2, 2, dtype=torch.float64)
    targets, product = targets_for(kind, kernel, "x", "x"), Product(1e-8, 1e9)
    for piece in pieces:
        product(targets, {"x": piece})
    finish_kernel(kernel, kind, True)
    return kernel


@pytest.mark.parametrize("kind", [KernelKind.SGD, KernelKind.SIGNGD], ids=lambda k: k.value)
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_products_upcast_low_precision_blocks(dtype, kind):
    """Pieces in bf16/fp16 give the float64 products of the same values to float32 accuracy: no
    matmul ever runs in (or rounds its output to) the low precision."""
    low = _pieces(dtype, dtype)
    exact = _products(_pieces(dtype, torch.float64), kind)
    with NoLowPrecisionMatmul():
        got = _products(low, kind)
        sketches = new_sketches(kind, (True, False), 5, 2, 64, 1e-8)
        for name, piece in zip("abcd", low):
            project_piece(sketches, CountSketch(64), name, piece, 1e9)
        left = torch.randn(4, 2 * 2**14 + 5).to(dtype)  # more than one column block
        block = contract(left, left, False, False)
    assert relative_error(got.numpy(), exact.numpy()) < 2e-5  # float32 blocks; bfloat16 products: ~1e-3
    expected = left.double() @ left.double().T
    assert block.dtype == torch.float64 and relative_error(block.numpy(), expected.numpy()) < 2e-5
