"""The factored (LoGra) projection of Linear weight gradients: engines agree, unbiased, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_batch, tiny_classifier

from kernelft.entk import (
    Implementation,
    KernelKind,
    ParamSet,
    Projection,
    add_lora,
    empirical_ntk_fn,
    relative_error,
)
from kernelft.entk.factored import FactoredProjection, linear_weight_shapes

ENGINES = [Implementation.HOOKS, Implementation.JACOBIAN]
MODELS = [("bert", "prompt", 2), ("bert", "linear", 3), ("roberta", "linear", 2)]


def build(arch, head, classes, params):
    model = tiny_classifier(arch, head, classes)
    if params is ParamSet.LORA:
        add_lora(model, rank=2, target_modules=("query", "value", "dense"))
        with torch.no_grad():  # B = 0 at init; give it values so ∇_A counts too
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return model


def factored(model, dim=16, seed=0, **kwargs):
    return empirical_ntk_fn(model, projection="factored", projection_dim=dim, seed=seed, show_progress=False, **kwargs)


@pytest.mark.parametrize("params", [ParamSet.ALL, ParamSet.NO_EMBEDDINGS, ParamSet.LORA], ids=str)
@pytest.mark.parametrize("setup", MODELS, ids=lambda s: f"{s[0]}-{s[1]}{s[2]}")
def test_hook_and_jacobian_engines_project_alike(setup, params):
    model = build(*setup, params)
    batch1, batch2 = tiny_batch(5), tiny_batch(3, length=6, seed=1)
    for b2 in (None, batch2):
        hooks, jacobian = (factored(model, params=params, implementation=impl)(batch1, b2) for impl in ENGINES)
        assert relative_error(hooks, jacobian) < 1e-10


def test_projection_is_unbiased():
    """Over 256 seeds the mean of K̃ is within 4 standard errors of K in every entry."""
    model = tiny_classifier("bert", "linear", 2)
    batch = tiny_batch(5)
    exact = empirical_ntk_fn(model, params="no_embeddings", show_progress=False)(batch)
    draws = np.stack([factored(model, 16, seed, params="no_embeddings")(batch) for seed in range(256)])
    assert relative_error(draws[0], exact) > 0.1  # k = 4 of 32 or 48: a rough single estimate
    standard_error = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.abs(draws.mean(axis=0) - exact).max() < 4 * standard_error.max()
    assert relative_error(draws.mean(axis=0), exact) < relative_error(draws[0], exact) / 4


def test_factors_formed_gradient_and_kronecker_agree():
    """Σ_t (P_out g_t)(P_in a_t)ᵀ = P_out (Σ_t g_t a_tᵀ) P_inᵀ, and P is seeded by (seed, name)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 20, generator=generator, dtype=torch.float64)
    g = torch.randn(3, 2, 5, 12, generator=generator, dtype=torch.float64)
    projection = FactoredProjection(9, seed=4, shapes={"w": (12, 20, False), "v": (12, 20, False)})
    formed = torch.einsum("botd,bte->bode", g, a)  # (b, O, d_out, d_in)
    p_out, p_in = (projection.matrix("w", side, torch.float64, torch.device("cpu")) for side in (0, 1))
    assert p_out.shape == (3, 12) and p_in.shape == (3, 20)
    kronecker = (p_out @ formed @ p_in.T).reshape(3, 2, -1)
    a_in, g_out = projection.project_inputs_and_grads(a, g, "w")
    from_factors = torch.einsum("botk,btj->bokj", g_out, a_in).reshape(3, 2, -1)  # Σ_t (P_out g_t)(P_in a_t)ᵀ
    torch.testing.assert_close(from_factors, kronecker, rtol=1e-12, atol=0)
    torch.testing.assert_close(projection.project_formed(formed.reshape(3, 2, -1), "w"), kronecker, rtol=1e-12, atol=0)
    again = FactoredProjection(9, seed=4, shapes={"w": (12, 20, False)})
    again = again.matrix("w", 0, torch.float64, torch.device("cpu"))
    assert torch.equal(again, p_out)
    assert not torch.equal(projection.matrix("v", 0, torch.float64, torch.device("cpu")), p_out)
    assert FactoredProjection(1000, 0, {}).k == 32 and FactoredProjection(4096, 0, {}).k == 64  # k = round(√d)


def test_sides_no_larger_than_k_are_exact():
    """k ≥ every Linear dimension (d = 4096, k = 64 > 48): P = I and the kernel is exact."""
    model = tiny_classifier("bert", "prompt", 3)
    batch = tiny_batch(5)
    exact = empirical_ntk_fn(model, show_progress=False)(batch)
    for implementation in ENGINES:
        assert relative_error(factored(model, 4096, implementation=implementation)(batch), exact) < 1e-10


def test_same_projection_for_every_call_block_and_budget():
    model = tiny_classifier("bert", "linear", 2)
    batch = tiny_batch(7)
    full = factored(model)(batch)
    np.testing.assert_allclose(factored(model)(batch, {k: v[:3] for k, v in batch.items()}), full[:, :3], rtol=1e-12)
    for implementation, budget in [
        (Implementation.HOOKS, 2e-4),
        (Implementation.HOOKS, 1e-9),
        (Implementation.JACOBIAN, 2e-4),
    ]:
        small = factored(model, implementation=implementation, max_memory_gb=budget)(batch)  # groups, chunks
        assert relative_error(small, full) < 1e-10
    assert relative_error(factored(model, seed=1)(batch), full) > 1e-3


def test_only_linear_weights_are_projected():
    model = tiny_classifier("bert", "prompt", 2, mlm=True)
    params = dict(model.named_parameters())
    shapes = linear_weight_shapes(model, params)
    by_suffix = {name.split("bert.")[-1]: shape for name, shape in shapes.items()}
    assert by_suffix["encoder.layer.0.attention.self.query.weight"] == (32, 32, False)
    assert by_suffix["encoder.layer.0.intermediate.dense.weight"] == (48, 32, False)
    assert not any(name.endswith("bias") or "embeddings" in name or "LayerNorm" in name for name in shapes)
    tied = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    assert all(params[name] is not t for name in shapes for t in tied)  # a tied MLM decoder stays exact (rows)


def test_errors_name_the_fix():
    model = tiny_classifier("bert", "linear", 2)
    with pytest.raises(ValueError, match="projection_dim"):
        empirical_ntk_fn(model, projection=Projection.FACTORED)
    with pytest.raises(ValueError, match="countsketch"):
        empirical_ntk_fn(model, kind=KernelKind.SIGNGD, projection="factored", projection_dim=16)
    with pytest.raises(ValueError, match="factored"):
        empirical_ntk_fn(model, projection="kronecker", projection_dim=16)


@pytest.mark.parametrize("implementation", ENGINES, ids=lambda i: i.value)
def test_bfloat16_model_projects_in_float32(implementation):
    low = tiny_classifier("bert", "linear", 3).to(torch.bfloat16)
    reference = tiny_classifier("bert", "linear", 3).to(torch.bfloat16).to(torch.float64)
    batch = tiny_batch(5)
    got = factored(low, implementation=implementation)(batch)
    assert np.isfinite(got).all() and relative_error(got, factored(reference)(batch)) < 3e-2
