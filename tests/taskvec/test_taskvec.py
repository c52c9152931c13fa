"""Task vectors and their kernel diagnostics (kernelft.taskvec.vectors): exact answers on linear models."""

import numpy as np
import pytest
import torch
from torch import nn

from kernelft.taskvec.vectors import (
    centred_kernel_alignment,
    combine,
    contrast_kernel,
    cross_task_alignment,
    disentanglement_error,
    displaced,
    model_logits,
    normalised_accuracy,
    pair_diagnostics,
    parameters_of,
    tangent_logits,
    tangent_logits_many,
    task_vector,
    top_eigenspace_overlap,
    vector_cosine,
    vector_norm,
)
from kernelft.training.linearize import LinearizedModel


class Toy(nn.Module):
    """``f(x) = W2 σ(W1 x)`` (σ = identity gives a model linear in x but bilinear in θ) or, with
    ``linear=True``, ``f(x) = W x + b``: linear in its parameters, so its tangent space is exact."""

    def __init__(self, linear: bool, d: int = 5, hidden: int = 7, classes: int = 2) -> None:
        super().__init__()
        self.linear = linear
        self.first = nn.Linear(d, classes if linear else hidden)
        self.second = None if linear else nn.Linear(hidden, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.first(input_ids)
        return out if self.linear else self.second(torch.tanh(out))


def _batch(n: int, seed: int, d: int = 5) -> dict[str, torch.Tensor]:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return {"input_ids": x, "attention_mask": torch.ones(n, d, dtype=torch.long)}


def _train(model: nn.Module, batch: dict, labels: torch.Tensor, steps: int = 30, lr: float = 0.5) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(**batch), labels).backward()
        optimizer.step()


def _two_task_vectors(linear: bool):
    torch.manual_seed(0)
    model = Toy(linear).double()
    names = [name for name, _ in model.named_parameters()]
    theta_0 = parameters_of(model, names)
    vectors = []
    for seed, column in ((1, 0), (2, 3)):  # task A: sign of x_0; task B: sign of x_3
        batch = _batch(32, seed)
        _train(model, batch, (batch["input_ids"][:, column] > 0).long())
        vectors.append(task_vector(parameters_of(model, names), theta_0))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(theta_0[name])
    return model, theta_0, vectors


def _outputs(model, theta_0, delta, batch):
    with displaced(model, theta_0, delta):
        return model_logits(model, batch).numpy()


@pytest.mark.parametrize("linear", [True, False], ids=["linear-model", "tanh-network"])
def test_task_vectors_add_exactly_on_a_linear_model_only(linear):
    model, theta_0, (tau_a, tau_b) = _two_task_vectors(linear)
    test = _batch(40, 9)
    f_0 = _outputs(model, theta_0, {}, test)
    f_a, f_b = _outputs(model, theta_0, tau_a, test), _outputs(model, theta_0, tau_b, test)
    f_ab = _outputs(model, theta_0, combine([tau_a, tau_b], [1.0, 1.0]), test)
    error = disentanglement_error(f_0, f_a, f_b, f_ab)
    if linear:
        np.testing.assert_allclose(f_ab - f_0, (f_a - f_0) + (f_b - f_0), atol=1e-12)
        assert error < 1e-12
    else:
        assert error > 1e-3
    # displaced() restores θ_0
    np.testing.assert_array_equal(model_logits(model, test).numpy(), f_0)


def test_tangent_outputs_are_the_linearized_model_and_add_exactly():
    model, theta_0, (tau_a, tau_b) = _two_task_vectors(linear=False)
    test = _batch(16, 5)
    f_0, j_a = tangent_logits(model, tau_a, test)
    _, j_b = tangent_logits(model, tau_b, test)
    _, j_ab = tangent_logits(model, combine([tau_a, tau_b], [0.5, 2.0]), test)
    np.testing.assert_allclose(j_ab.numpy(), 0.5 * j_a.numpy() + 2.0 * j_b.numpy(), atol=1e-12)
    lin = LinearizedModel(model, list(tau_a)).double()
    with torch.no_grad():
        for delta, name in zip(lin.delta, lin.names):
            delta.copy_(tau_a[name])
        np.testing.assert_allclose(lin(**test).numpy(), (f_0 + j_a).numpy(), atol=1e-12)
    np.testing.assert_allclose(f_0.numpy(), model_logits(model, test).numpy(), atol=1e-14)
    # On a linear model the tangent model is the model: f(θ_0 + τ) = f(θ_0) + J τ.
    linear_model, linear_theta, (tau, _) = _two_task_vectors(linear=True)
    base, change = tangent_logits(linear_model, tau, test)
    np.testing.assert_allclose((base + change).numpy(), _outputs(linear_model, linear_theta, tau, test), atol=1e-12)



def test_one_jvp_for_many_vectors_is_the_separate_jvps():
    model, _, (tau_a, tau_b) = _two_task_vectors(linear=False)
    test = _batch(21, 6)  # chunks of 16 and 5
    f_0, changes = tangent_logits_many(model, [tau_a, tau_b, combine([tau_a, tau_b], [1.0, 1.0])], test)
    assert changes.shape == (21, 3, 2)
    for k, tau in enumerate((tau_a, tau_b)):
        value, change = tangent_logits(model, tau, test)
        np.testing.assert_allclose(f_0.numpy(), value.numpy(), atol=1e-14)
        np.testing.assert_allclose(changes[:, k].numpy(), change.numpy(), atol=1e-12)
    np.testing.assert_allclose(changes[:, 2].numpy(), (changes[:, 0] + changes[:, 1]).numpy(), atol=1e-12)
    with pytest.raises(KeyError, match="different parameter names"):
        tangent_logits_many(model, [tau_a, {"first.weight": tau_a["first.weight"]}], test)

def test_vector_arithmetic():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])}
    b = {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor([-1.0])}
    total = combine([a, b], [1.0, -2.0])
    assert total["w"].tolist() == [1.0, 0.0] and total["b"].tolist() == [5.0]
    assert task_vector(a, b)["w"].tolist() == [1.0, 1.0]
    assert vector_norm(a) == pytest.approx(np.sqrt(14.0))
    assert vector_cosine(a, a) == pytest.approx(1.0)
    assert normalised_accuracy(0.6, 0.8) == pytest.approx(0.75)
    with pytest.raises(KeyError):
        task_vector(a, {"w": b["w"]})


def test_disentanglement_error_formula():
    f_0 = np.zeros(3)
    # f_ab − f_a − f_b + f_0 = (1, 0, 0); f_ab − f_0 = (2, 0, 0)
    assert disentanglement_error(f_0, np.array([1.0, 0, 0]), np.zeros(3), np.array([2.0, 0, 0])) == pytest.approx(0.5)
    assert np.isnan(disentanglement_error(f_0, f_0, f_0, f_0))


def _psd(n: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).normal(size=(n, 3 * n))
    return g @ g.T


def test_alignment_of_a_kernel_with_itself_is_one():
    k = _psd(12, 0)
    assert centred_kernel_alignment(k, k) == pytest.approx(1.0, abs=1e-12)
    assert centred_kernel_alignment(k, 3.0 * k) == pytest.approx(1.0, abs=1e-12)
    other = centred_kernel_alignment(k, _psd(12, 1))
    assert 0.0 < other < 0.9
    with pytest.raises(ValueError, match="same inputs"):
        centred_kernel_alignment(k, _psd(5, 1))


def _blocks(g_a: np.ndarray, g_b: np.ndarray):
    return g_a @ g_a.T, g_b @ g_b.T, g_a @ g_b.T


def test_cross_task_alignment_against_the_parameter_space_formula():
    rng = np.random.default_rng(0)
    g_a, g_b = rng.normal(size=(8, 30)), rng.normal(size=(6, 30))
    # identical gradients: 1; gradients on disjoint parameters: 0
    assert cross_task_alignment(*_blocks(g_a, g_a)) == pytest.approx(1.0)
    disjoint_b = np.concatenate([np.zeros((6, 15)), g_b[:, 15:]], axis=1)
    disjoint_a = np.concatenate([g_a[:, :15], np.zeros((8, 15))], axis=1)
    assert cross_task_alignment(*_blocks(disjoint_a, disjoint_b)) == pytest.approx(0.0, abs=1e-12)
    # ⟨M_A, M_B⟩ / (‖M_A‖ ‖M_B‖), M_t = G_tᵀ H G_t
    for centred in (True, False):
        ca = g_a - g_a.mean(0) if centred else g_a
        cb = g_b - g_b.mean(0) if centred else g_b
        m_a, m_b = ca.T @ ca, cb.T @ cb
        expected = (m_a * m_b).sum() / (np.linalg.norm(m_a) * np.linalg.norm(m_b))
        assert cross_task_alignment(*_blocks(g_a, g_b), centred=centred) == pytest.approx(expected, rel=1e-10)


def test_top_eigenspace_overlap_against_the_svd():
    rng = np.random.default_rng(1)
    g_a, g_b = rng.normal(size=(10, 40)), rng.normal(size=(9, 40))
    k = 3
    u_a = np.linalg.svd(g_a, full_matrices=False)[2][:k].T
    u_b = np.linalg.svd(g_b, full_matrices=False)[2][:k].T
    expected = np.linalg.norm(u_a.T @ u_b) ** 2 / k
    assert top_eigenspace_overlap(*_blocks(g_a, g_b), k) == pytest.approx(expected, rel=1e-8)
    assert top_eigenspace_overlap(*_blocks(g_a, g_a), k) == pytest.approx(1.0)
    disjoint_a = np.concatenate([g_a[:, :20], np.zeros((10, 20))], axis=1)
    disjoint_b = np.concatenate([np.zeros((9, 20)), g_b[:, 20:]], axis=1)
    assert top_eigenspace_overlap(*_blocks(disjoint_a, disjoint_b), k) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="top_k"):
        top_eigenspace_overlap(*_blocks(g_a[:2], g_b), k)
    numbers = pair_diagnostics(*_blocks(g_a, g_b), k)
    assert set(numbers) == {"cka", "alignment_uncentred", "overlap", "cross_block"}


def test_contrast_kernel_is_the_kernel_of_the_contrasted_output():
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(5, 3, 20))  # (examples, logits, parameters)
    full = np.einsum("icp,jdp->ijcd", grads, grads)
    contrast = rng.normal(size=(5, 3))
    direct = np.einsum("ic,icp->ip", contrast, grads)
    np.testing.assert_allclose(contrast_kernel(full, contrast, contrast), direct @ direct.T, rtol=1e-12)
