"""Kernel solvers on tiny problems with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from kernelft.kernels.solvers import SOLVERS, SolverKind, asymmetric_kernels, flatten_block_kernel, solve


def separable(n: int = 24, m: int = 16, d: int = 3, seed: int = 0):
    """Two Gaussian blobs far apart on the first axis, with a linear kernel."""
    rng = np.random.default_rng(seed)
    y_tr, y_te = np.arange(n) % 2, np.arange(m) % 2
    x_tr = rng.normal(size=(n, d)) * 0.3
    x_te = rng.normal(size=(m, d)) * 0.3
    x_tr[:, 0] += 3 * (2 * y_tr - 1)
    x_te[:, 0] += 3 * (2 * y_te - 1)
    return x_tr @ x_tr.T, x_te @ x_tr.T, y_tr, y_te


def features_block(phi_tr: np.ndarray, phi_te: np.ndarray, c: int):
    """Block kernel of a linear head on fixed features: (φᵀφ′) I_C, shape (n, m, C, C)."""
    eye = np.eye(c)
    return np.einsum("ih,jh,cd->ijcd", phi_tr, phi_tr, eye), np.einsum("ah,jh,cd->ajcd", phi_te, phi_tr, eye)


def test_every_kind_has_a_solver():
    assert set(SOLVERS) == set(SolverKind)


@pytest.mark.parametrize("kind", [SolverKind.REGRESSION, SolverKind.LOGISTIC, SolverKind.SVM, SolverKind.SVR])
def test_linear_kernel_separable_data_is_solved(kind):
    k_tr, k_te, y_tr, y_te = separable()
    result = solve(kind, k_tr, k_te, y_tr, y_te, ridge=1e-6, cv=2)  # 2 folds keep LOGISTIC fast
    assert result.accuracy == 1.0
    assert result.decision.shape == (16,)
    assert np.array_equal(result.predictions, (result.decision > 0).astype(int))


def test_asymmetric_solves_separable_data():
    k_tr, k_te, y_tr, y_te = separable()
    result = solve("asymmetric", k_tr, k_te, y_tr, y_te, kernel_train_test=k_te.T)
    assert result.accuracy == 1.0


def test_diagonal_kernel_regression_by_hand():
    # K = diag(d), ridge 0: α_i = y_i / d_i; a test point with K(x, X) = e_j·k predicts k·y_j/d_j.
    d = np.array([1.0, 2.0, 4.0])
    y = np.array([1, 0, 1])  # targets ±1: (1, −1, 1)
    k_te = np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    result = solve("regression", np.diag(d), k_te, y)
    np.testing.assert_allclose(result.decision, [3.0, -0.5, 1.0 - 0.5 + 0.5])
    # ridge: λ = ridge·‖K‖₂ = 0.25·4 = 1, α_i = y_i / (d_i + 1)
    result = solve("regression", np.diag(d), k_te, y, ridge=0.25)
    np.testing.assert_allclose(result.decision, [3 / 2, -1 / 3, 1 / 2 - 1 / 3 + 2 / 5])


def test_ridge_to_zero_interpolates_the_training_targets():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(10, 30))
    k = g @ g.T  # full rank
    y = rng.integers(0, 2, size=10)
    # testing on the training points: the predictions are the ±1 targets
    exact = solve("regression", k, k, y, y, ridge=0.0)
    np.testing.assert_allclose(exact.decision, 2 * y - 1, atol=1e-8)
    tiny = solve("regression", k, k, y, y, ridge=1e-12)
    np.testing.assert_allclose(tiny.decision, exact.decision, atol=1e-6)
    assert exact.accuracy == exact.train_accuracy == 1.0


def test_adjust_for_init_with_f0_equal_to_truth_fits_zero_residual():
    k_tr, k_te, y_tr, y_te = separable()
    f0_tr, f0_te = 2.0 * y_tr - 1, 2.0 * y_te - 1
    result = solve("regression", k_tr, k_te, y_tr, y_te, f0_train=f0_tr, f0_test=f0_te)
    np.testing.assert_allclose(result.decision, f0_te, atol=1e-10)
    # two logits are turned into the margin logit_1 − logit_0
    logits_tr = np.stack([np.zeros_like(f0_tr), f0_tr], axis=1)
    logits_te = np.stack([np.zeros_like(f0_te), f0_te], axis=1)
    same = solve("regression", k_tr, k_te, y_tr, y_te, f0_train=logits_tr, f0_test=logits_te)
    np.testing.assert_allclose(same.decision, f0_te, atol=1e-10)
    svr = solve("svr", k_tr, k_te, y_tr, y_te, f0_train=f0_tr, f0_test=f0_te)
    np.testing.assert_allclose(svr.decision, f0_te, atol=1e-10)


def test_adjust_for_init_adds_f0_back():
    # with a diagonal kernel, f(x) = f0(x) + K(x, X)(Y − f0(X)) / d
    d, y = np.array([1.0, 2.0]), np.array([1, 0])
    f0_tr, f0_te = np.array([0.5, 0.5]), np.array([0.1])
    result = solve("regression", np.diag(d), np.array([[1.0, 2.0]]), y, f0_train=f0_tr, f0_test=f0_te)
    np.testing.assert_allclose(result.decision, [0.1 + 0.5 + (-1.5)])
    scaled = solve("regression", np.diag(d), np.array([[1.0, 2.0]]), y, f0_train=f0_tr, f0_test=f0_te, f0_scaling=2.0)
    np.testing.assert_allclose(scaled.decision, [0.05 + 0.75 + (-1.25)])


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_asymmetric_equals_kernel_ridge_on_a_symmetric_kernel(lam):
    # AsK-LS with symmetric K and ±1 targets is kernel ridge regression with ridge 1/γ.
    k_tr, k_te, y_tr, y_te = separable(n=12, m=8, seed=3)
    gamma = 0.5
    asym = solve("asymmetric", k_tr, k_te, y_tr, y_te, kernel_train_test=k_te.T, gamma=gamma, lam=lam)
    t = 2.0 * y_tr - 1
    expected = k_te @ np.linalg.solve(k_tr + np.eye(12) / gamma, t)
    np.testing.assert_allclose(asym.decision, expected, rtol=1e-9, atol=1e-9)
    # the same as the regression solver with an absolute ridge of 1/γ
    scale = np.linalg.norm(k_tr, 2)
    reg = solve("regression", k_tr, k_te, y_tr, y_te, ridge=1 / (gamma * scale))
    np.testing.assert_allclose(asym.decision, reg.decision, rtol=1e-8, atol=1e-8)


def test_asymmetric_mixes_the_two_orientations():
    # λ = 1 reads K(x_i, x) only; λ = 0 reads K(x, x_i) only.
    rng = np.random.default_rng(4)
    k_tr = rng.normal(size=(6, 6)) + 6 * np.eye(6)
    k_te, k_tr_te = rng.normal(size=(3, 6)), rng.normal(size=(6, 3))
    y = np.array([0, 1, 0, 1, 1, 0])
    one = solve("asymmetric", k_tr, k_te, y, kernel_train_test=k_tr_te, lam=1.0).decision
    zero = solve("asymmetric", k_tr, k_te, y, kernel_train_test=k_tr_te, lam=0.0).decision
    half = solve("asymmetric", k_tr, k_te, y, kernel_train_test=k_tr_te, lam=0.5).decision
    np.testing.assert_allclose(half, (one + zero) / 2)
    changed = solve("asymmetric", k_tr, k_te, y, kernel_train_test=k_tr_te + 1.0, lam=0.0).decision
    np.testing.assert_allclose(changed, zero)


def test_asymmetric_kernels_from_entk_pairs():
    # K(x, x') = <g(x), sign g(x')>; entk pairs: [<sign g_i, g_j>, <g_i, sign g_j>] (batch1 = train)
    rng = np.random.default_rng(7)
    g_tr, g_te = rng.normal(size=(6, 20)), rng.normal(size=(3, 20))
    g_tr[:, 0] += 3 * np.array([1, -1, 1, -1, 1, -1])
    g_te[:, 0] += 3 * np.array([1, -1, 1])
    pair_tr = np.stack([np.sign(g_tr) @ g_tr.T, g_tr @ np.sign(g_tr).T])
    pair_tr_te = np.stack([np.sign(g_tr) @ g_te.T, g_tr @ np.sign(g_te).T])
    kwargs = asymmetric_kernels(pair_tr, pair_tr_te)
    asym = lambda x, z: x @ np.sign(z).T  # noqa: E731  K(x, x') for rows of x and x'
    np.testing.assert_allclose(kwargs["kernel_train"], asym(g_tr, g_tr))
    np.testing.assert_allclose(kwargs["kernel_test_train"], asym(g_te, g_tr))
    np.testing.assert_allclose(kwargs["kernel_train_test"], asym(g_tr, g_te))
    y_tr, y_te = np.array([1, 0, 1, 0, 1, 0]), np.array([1, 0, 1])
    assert solve("asymmetric", y_train=y_tr, y_test=y_te, **kwargs).accuracy == 1.0


def test_asymmetric_kernels_of_block_pairs():
    # two outputs per example: g (n, O, p); K[i, j, o, q] = <g_o(x_i), sign g_q(x'_j)>
    rng = np.random.default_rng(3)
    g_tr, g_te = rng.normal(size=(4, 2, 9)), rng.normal(size=(3, 2, 9))
    pair = lambda a, b: np.stack([np.einsum("iop,jqp->ijoq", np.sign(a), b),  # noqa: E731
                                  np.einsum("iop,jqp->ijoq", a, np.sign(b))])
    kwargs = asymmetric_kernels(pair(g_tr, g_tr), pair(g_tr, g_te))
    np.testing.assert_allclose(kwargs["kernel_test_train"], np.einsum("aop,iqp->aioq", g_te, np.sign(g_tr)))
    np.testing.assert_allclose(kwargs["kernel_train_test"], np.einsum("iop,aqp->iaoq", g_tr, np.sign(g_te)))


def test_asymmetric_requires_both_orientations():
    k_tr, k_te, y_tr, _ = separable()
    with pytest.raises(ValueError, match="kernel_train_test"):
        solve("asymmetric", k_tr, k_te, y_tr)


def multiclass_features(c: int = 3, per_class: int = 6, m_per: int = 4, seed: int = 5):
    rng = np.random.default_rng(seed)
    y_tr, y_te = np.repeat(np.arange(c), per_class), np.repeat(np.arange(c), m_per)
    centres = 4 * np.eye(c, 5)
    phi_tr = centres[y_tr] + 0.3 * rng.normal(size=(len(y_tr), 5))
    phi_te = centres[y_te] + 0.3 * rng.normal(size=(len(y_te), 5))
    return phi_tr, phi_te, y_tr, y_te


def test_block_kernel_with_identity_blocks_equals_scalar_kernel_per_class():
    phi_tr, phi_te, y_tr, y_te = multiclass_features()
    kb_tr, kb_te = features_block(phi_tr, phi_te, 3)
    block = solve("regression", kb_tr, kb_te, y_tr, y_te)
    scalar = solve("regression", phi_tr @ phi_tr.T, phi_te @ phi_tr.T, y_tr, y_te)
    assert block.decision.shape == scalar.decision.shape == (12, 3)
    np.testing.assert_allclose(block.decision, scalar.decision, atol=1e-8)
    assert block.accuracy == 1.0


def test_block_kernel_regression_by_hand():
    # n = 1, C = 2, K(x1, x1) = [[2, 1], [1, 2]], one-hot target (0, 1):
    # α = K⁻¹ (0, 1) = (−1, 2)/3, test block [[1, 0], [0, 1]] predicts α itself.
    k_tr = np.array([[[[2.0, 1.0], [1.0, 2.0]]]])
    k_te = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    result = solve("regression", k_tr, k_te, np.array([1]))
    np.testing.assert_allclose(result.decision, [[-1 / 3, 2 / 3]])
    assert result.predictions.tolist() == [1]


def test_block_kernel_adjust_for_init():
    phi_tr, phi_te, y_tr, y_te = multiclass_features()
    kb_tr, kb_te = features_block(phi_tr, phi_te, 3)
    rng = np.random.default_rng(6)
    f0_tr, f0_te = np.eye(3)[y_tr], rng.normal(size=(12, 3))
    result = solve("regression", kb_tr, kb_te, y_tr, y_te, f0_train=f0_tr, f0_test=f0_te)
    np.testing.assert_allclose(result.decision, f0_te, atol=1e-10)


@pytest.mark.parametrize("kind", ["logistic", "svm", "svr"])
@pytest.mark.parametrize("block", [False, True])
def test_multiclass_solvers(kind, block):
    phi_tr, phi_te, y_tr, y_te = multiclass_features()
    if block:
        k_tr, k_te = features_block(phi_tr, phi_te, 3)
    else:
        k_tr, k_te = phi_tr @ phi_tr.T, phi_te @ phi_tr.T
    result = solve(kind, k_tr, k_te, y_tr, y_te, cv=2)
    assert result.decision.shape == (12, 3)
    assert result.accuracy == 1.0


def test_flatten_block_kernel_layout():
    k = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2).astype(float)
    flat = flatten_block_kernel(k)
    assert flat.shape == (4, 6)
    for i in range(2):
        for j in range(3):
            for c in range(2):
                for d in range(2):
                    assert flat[i * 2 + c, j * 2 + d] == k[i, j, c, d]


def test_f0_is_refused_where_unsupported():
    k_tr, k_te, y_tr, y_te = separable()
    for kind in ("logistic", "svm"):
        with pytest.raises(ValueError, match="adjust for init"):
            solve(kind, k_tr, k_te, y_tr, y_te, f0_train=np.zeros(24), f0_test=np.zeros(16))


def test_shape_errors_name_the_argument():
    k_tr, k_te, y_tr, _ = separable()
    with pytest.raises(ValueError, match="kernel_test_train"):
        solve("regression", k_tr, k_te[:, :5], y_tr)
    with pytest.raises(ValueError, match="y_train"):
        solve("regression", k_tr, k_te, 2 * y_tr - 1)
    with pytest.raises(ValueError, match="f0_test"):
        solve("regression", k_tr, k_te, y_tr, f0_train=np.zeros(24), f0_test=np.zeros(3))
    with pytest.raises(ValueError):
        solve("no-such-solver", k_tr, k_te, y_tr)
