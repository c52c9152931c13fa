"""Block jobs (plan, compute, save, merge) and the random projection of gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_batch, tiny_classifier

from kernelft.entk import (
    Implementation,
    KernelKind,
    block_pairs,
    block_ranges,
    compute_block,
    empirical_ntk_fn,
    merge_blocks,
    relative_error,
    save_block,
)
from kernelft.entk.projection import CountSketch


def test_block_ranges_cover_n():
    assert block_ranges(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert block_pairs(7, 3) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    assert len(block_pairs(7, 3, KernelKind.SIGNGD)) == 9
    assert len(block_pairs(7, 3, n2=4)) == 6
    with pytest.raises(ValueError, match="block_size"):
        block_ranges(5, 0)


@pytest.mark.parametrize("kind", list(KernelKind), ids=lambda k: k.value)
@pytest.mark.parametrize("classes", [2, 3])
def test_merged_blocks_equal_the_full_kernel(tmp_path, kind, classes):
    model = tiny_classifier("bert", "prompt", classes)
    batch = tiny_batch(7)
    ntk = empirical_ntk_fn(model, kind=kind, show_progress=False)
    full = ntk(batch)
    ranges = block_ranges(7, 3)
    paths = []
    for i, j in block_pairs(7, 3, kind):
        path = tmp_path / f"block_{i}_{j}.npz"
        save_block(path, compute_block(ntk, batch, ranges[i], ranges[j]), ranges[i], ranges[j], kind)
        paths.append(path)
    np.testing.assert_allclose(merge_blocks(paths), full, rtol=1e-12, atol=1e-12 * np.abs(full).max())


def test_cross_blocks_and_missing_blocks():
    model = tiny_classifier("roberta", "linear", 2)
    batch1, batch2 = tiny_batch(5), tiny_batch(4, seed=2)
    ntk = empirical_ntk_fn(model, show_progress=False)
    full = ntk(batch1, batch2)
    rows, cols = block_ranges(5, 2), block_ranges(4, 3)
    blocks = [
        (compute_block(ntk, batch1, rows[i], cols[j], batch2), rows[i], cols[j]) for i, j in block_pairs(5, 2, n2=4)
    ]
    np.testing.assert_allclose(merge_blocks(blocks, KernelKind.SGD, self_kernel=False), full, rtol=1e-12)
    with pytest.raises(ValueError, match="missing"):
        merge_blocks(blocks[1:], KernelKind.SGD, self_kernel=False)


def test_count_sketch_is_seeded_and_preserves_inner_products_on_average():
    sketch = CountSketch(256, seed=3)
    index = torch.arange(5000)
    b1, s1 = sketch.hashes("w", index)
    b2, s2 = CountSketch(256, seed=3).hashes("w", index)
    assert torch.equal(b1, b2) and torch.equal(s1, s2)
    assert b1.min() >= 0 and b1.max() < 256 and set(s1.unique().tolist()) == {-1, 1}
    assert 0.4 < (s1 > 0).double().mean() < 0.6 and len(b1.unique()) == 256
    x = torch.randn(3, 1, 5000, dtype=torch.float64)
    errors = []
    for seed in range(20):
        z = CountSketch(256, seed).project(x, "w", index)
        errors.append((z[:, 0] @ z[:, 0].T - x[:, 0] @ x[:, 0].T).numpy())
    exact = (x[:, 0] @ x[:, 0].T).numpy()
    assert np.abs(np.mean(errors, axis=0)).max() < 0.1 * np.abs(exact).max()


@pytest.mark.parametrize("kind", [KernelKind.SGD, KernelKind.ASYMMETRIC_SIGNGD], ids=lambda k: k.value)
def test_projection_engines_agree_and_error_falls_with_dim(kind):
    model = tiny_classifier("bert", "prompt", 2)
    batch1, batch2 = tiny_batch(6), tiny_batch(3, seed=4)
    exact = empirical_ntk_fn(model, kind=kind, show_progress=False)(batch1)
    errors = []
    for dim in (64, 4096):
        got = {
            impl: empirical_ntk_fn(model, kind=kind, implementation=impl, projection_dim=dim, show_progress=False)(
                batch1
            )
            for impl in (Implementation.HOOKS, Implementation.JACOBIAN)
        }
        assert relative_error(got[Implementation.HOOKS], got[Implementation.JACOBIAN]) < 1e-10
        errors.append(relative_error(got[Implementation.HOOKS], exact))
    assert errors[1] < errors[0] and errors[1] < 0.2
    cross = empirical_ntk_fn(model, kind=kind, projection_dim=4096, show_progress=False)
    full = cross(batch1)
    index = (slice(None),) if kind.slots == 2 else ()
    np.testing.assert_allclose(cross(batch1, take3(batch1)), full[index + (slice(None), slice(0, 3))], rtol=1e-10)
    jacobian = empirical_ntk_fn(
        model, kind=kind, implementation=Implementation.JACOBIAN, projection_dim=4096, show_progress=False
    )
    assert relative_error(cross(batch1, batch2), jacobian(batch1, batch2)) < 1e-10


def take3(batch):
    return {key: value[:3] for key, value in batch.items()}
