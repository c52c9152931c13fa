"""Calibration metrics, temperature scaling and the linear-head NTK decomposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from kernelft.lpft.calibration import (
    N_BINS,
    NTKDecomposition,
    apply_temperature,
    calibration_metrics,
    ece,
    feature_kernel_from_jacobians,
    fit_temperature,
    ft_effective_kernel,
    mce,
    nll,
    ntk_decomposition,
    pre_train_effective_kernel,
    reliability_table,
    softmax,
)

# --- ECE / MCE ----------------------------------------------------------------------------------


def test_confident_and_correct_is_perfectly_calibrated():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    assert ece(probs, labels) == 0.0
    assert mce(probs, labels) == 0.0


def test_two_bins_by_hand():
    # 4 predictions at confidence 0.9 (bin (13/15, 14/15]), 3 correct: gap 0.15.
    # 2 predictions at confidence 0.7 (bin (10/15, 11/15]), 1 correct: gap 0.2.
    probs = np.array([[0.9, 0.1]] * 4 + [[0.3, 0.7]] * 2)
    labels = np.array([0, 0, 0, 1, 1, 0])
    assert ece(probs, labels) == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.2)
    assert mce(probs, labels) == pytest.approx(0.2)
    table = reliability_table(probs, labels)
    assert len(table) == N_BINS == 15
    assert table["count"].sum() == 6
    full = table[table["count"] > 0].set_index("bin")
    assert list(full.index) == [10, 13]
    assert full.loc[13, "accuracy"] == pytest.approx(0.75)
    assert full.loc[13, "confidence"] == pytest.approx(0.9)
    assert full.loc[10, "accuracy"] == pytest.approx(0.5)
    assert table.loc[table["count"] == 0, "accuracy"].isna().all()


def test_bins_are_closed_on_the_right():
    # with 2 bins: (0, 0.5] and (0.5, 1]; a confidence of exactly 0.5 lands in the first
    probs = np.array([[0.5, 0.5], [0.25, 0.75], [0.0, 1.0]])
    table = reliability_table(probs, np.array([0, 1, 1]), n_bins=2)
    assert table["count"].tolist() == [1, 2]


def test_binary_inputs_as_vectors():
    p1 = np.array([0.9, 0.2, 0.6])
    labels = np.array([1, 0, 0])
    assert ece(p1, labels) == pytest.approx(ece(np.stack([1 - p1, p1], axis=1), labels))
    margin = np.array([2.0, -1.0])
    np.testing.assert_allclose(softmax(margin)[:, 1], 1 / (1 + np.exp(-margin)))


def test_metrics_of_logits():
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    labels = np.array([0, 1, 0, 0])
    out = calibration_metrics(logits, labels)
    assert out["accuracy"] == 0.75
    p = softmax(logits)
    assert out["nll"] == pytest.approx(-np.mean(np.log(p[np.arange(4), labels])))
    assert out["confidence"] == pytest.approx(p.max(axis=1).mean())
    assert out["ece"] == pytest.approx(ece(p, labels))
    assert 0 <= out["ece"] <= out["mce"] <= 1


# --- temperature scaling ------------------------------------------------------------------------


def tempered_sample(true_t: float, n: int = 4000, c: int = 4, seed: int = 0):
    """Logits z and labels drawn from softmax(z / T): T is the calibrating temperature."""
    rng = np.random.default_rng(seed)
    z = 3.0 * rng.normal(size=(n, c))
    p = softmax(z / true_t)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return z, labels


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_scaling_recovers_the_temperature(true_t):
    z, labels = tempered_sample(true_t)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(true_t, rel=0.1)
    # NLL at the fit is no worse than at the truth or at T = 1
    assert nll(apply_temperature(z, t), labels) <= nll(apply_temperature(z, true_t), labels) + 1e-12
    assert nll(apply_temperature(z, t), labels) <= nll(z, labels)


def test_temperature_scaling_repairs_overconfidence():
    z, labels = tempered_sample(3.0, seed=1)  # the raw logits are over-confident
    val, test = slice(0, 2000), slice(2000, None)
    t = fit_temperature(z[val], labels[val])
    before = ece(softmax(z[test]), labels[test])
    after = ece(softmax(apply_temperature(z[test], t)), labels[test])
    assert after < before / 3
    assert softmax(apply_temperature(z, t)).argmax(1).tolist() == softmax(z).argmax(1).tolist()


def test_apply_temperature_rejects_nonpositive():
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(np.zeros((2, 2)), 0.0)


# --- NTK decomposition --------------------------------------------------------------------------


def tiny_model(seed: int = 0, d: int = 3, width: int = 5, h: int = 4, c: int = 3):
    """φ = g_θ(x) a 2-layer MLP, logits V φ + b; every parameter in float64."""
    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.Tanh(), torch.nn.Linear(width, h)).double()
    head = torch.nn.Linear(h, c).double()
    return encoder, head


def full_entk(encoder, head, x1: torch.Tensor, x2: torch.Tensor) -> np.ndarray:
    """eNTK over all parameters (θ, V, b) straight from torch.func: (n, m, C, C)."""
    model = torch.nn.Sequential(encoder, head)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, x):
        return functional_call(model, p, (x,))

    j1, j2 = jacrev(f)(params, x1), jacrev(f)(params, x2)  # each: name -> (n, C, *shape)
    k = sum(torch.einsum("icp,jdp->ijcd", j1[k].flatten(2), j2[k].flatten(2)) for k in params)
    return k.numpy()


def encoder_jacobians(encoder, x: torch.Tensor) -> np.ndarray:
    """J_φ(x) for every example: (n, H, P_θ)."""
    params = {k: v.detach() for k, v in encoder.named_parameters()}
    jac = jacrev(lambda p: functional_call(encoder, p, (x,)))(params)
    return torch.cat([jac[k].flatten(2) for k in params], dim=2).numpy()


def test_parts_sum_to_the_full_entk():
    encoder, head = tiny_model()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        phi = encoder(x).numpy()
    g = feature_kernel_from_jacobians(encoder_jacobians(encoder, x))
    dec = ntk_decomposition(phi, head.weight.detach().numpy(), g)
    assert dec.pre_train_effective.shape == dec.ft_effective.shape == (5, 5, 3, 3)
    np.testing.assert_allclose(dec.full, full_entk(encoder, head, x, x), rtol=1e-12, atol=1e-12)


def test_cross_kernel_parts_sum_to_the_full_entk():
    encoder, head = tiny_model(seed=2)
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    x2 = torch.randn(2, 3, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        phi1, phi2 = encoder(x1).numpy(), encoder(x2).numpy()
    g = feature_kernel_from_jacobians(encoder_jacobians(encoder, x1), encoder_jacobians(encoder, x2))
    dec = ntk_decomposition(phi1, head.weight.detach().numpy(), g, features_other=phi2)
    np.testing.assert_allclose(dec.full, full_entk(encoder, head, x1, x2), rtol=1e-12, atol=1e-12)
    assert np.isnan(dec.summary()["trace_ft_effective"])


def test_each_part_is_the_kernel_of_its_parameters():
    # pre-train-effective = eNTK w.r.t. (V, b) only; FT-effective = eNTK w.r.t. θ only.
    encoder, head = tiny_model(seed=4)
    x = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        phi = encoder(x).numpy()
    k_head = full_entk(torch.nn.Identity(), head, torch.from_numpy(phi), torch.from_numpy(phi))
    np.testing.assert_allclose(pre_train_effective_kernel(phi, 3), k_head, atol=1e-12)
    jac = encoder_jacobians(encoder, x)
    v = head.weight.detach().numpy()
    vj = np.einsum("ch,ihp->icp", v, jac)  # Jacobian of the logits w.r.t. θ
    ft = ft_effective_kernel(v, feature_kernel_from_jacobians(jac))
    np.testing.assert_allclose(ft, np.einsum("icp,jdp->ijcd", vj, vj), atol=1e-12)
    np.testing.assert_allclose(full_entk(encoder, head, x, x) - k_head, ft, atol=1e-12)


def test_summary_and_head_norm_scaling():
    rng = np.random.default_rng(0)
    phi, v, jac = rng.normal(size=(6, 4)), rng.normal(size=(3, 4)), rng.normal(size=(6, 4, 10))
    g = feature_kernel_from_jacobians(jac)
    small, big = ntk_decomposition(phi, v, g).summary(), ntk_decomposition(phi, 3 * v, g).summary()
    trace_full = np.einsum("iicc->", ntk_decomposition(phi, v, g).full)
    assert small["trace_pre_train_effective"] + small["trace_ft_effective"] == pytest.approx(trace_full)
    assert small["trace_pre_train_effective"] == pytest.approx(3 * (np.sum(phi**2) + 6))
    # a larger head norm scales the FT-effective part by ‖V‖² and leaves the other one alone
    assert big["trace_ft_effective"] == pytest.approx(9 * small["trace_ft_effective"])
    assert big["fro_ft_effective"] == pytest.approx(9 * small["fro_ft_effective"])
    assert big["fro_pre_train_effective"] == pytest.approx(small["fro_pre_train_effective"])
    assert big["share_trace_ft_effective"] > small["share_trace_ft_effective"]
    assert 0 < small["share_fro_ft_effective"] < 1
    assert small["ratio_fro_ft_to_pre_train"] == pytest.approx(
        small["fro_ft_effective"] / small["fro_pre_train_effective"]
    )


def test_decomposition_checks_shapes():
    with pytest.raises(ValueError, match="feature_kernel"):
        ntk_decomposition(np.zeros((3, 4)), np.zeros((2, 4)), np.zeros((3, 2, 4, 4)))
    with pytest.raises(ValueError, match="head_weight"):
        ft_effective_kernel(np.zeros((2, 5)), np.zeros((3, 3, 4, 4)))
    dec = NTKDecomposition(np.eye(2)[None, None], np.zeros((1, 1, 2, 2)))
    assert dec.summary()["share_trace_ft_effective"] == 0.0
