"""Kernel solvers on precomputed eNTKs (Malladi et al., ICML 2023).

Fine-tuning in the kernel regime predicts like a kernel method with the eNTK at the pretrained
weights, ``K(x, x') = <∇f(x), ∇f(x')>`` (Malladi et al. 2023, "A Kernel-Based View of Language
Model Fine-Tuning", arXiv:2210.05643). This module fits such a method given the kernel only; it
follows the solvers of the reference code (princeton-nlp/LM-Kernel-FT, ``src/kernel_solvers.py``).

Kernel layouts (float64 numpy arrays; ``n`` train, ``m`` test examples, ``C`` outputs):

- **scalar** ``(n, n)`` train and ``(m, n)`` test-train, ``K[a, i] = K(x_a, x_i)``: one output
  per example. With two classes the output is the margin ``f = logit_1 − logit_0`` fitted to
  ±1 targets (the reference's ``--binary_classification``); with ``C > 2`` classes the kernel is
  read as ``K ⊗ I_C`` (the same kernel for every output, as for a linear head on fixed features)
  and fitted to one-hot targets.
- **block** ``(n, n, C, C)`` and ``(m, n, C, C)``, ``K[a, i, c, c'] = <∇f_c(x_a), ∇f_c'(x_i)>``:
  the full multi-output eNTK. It is flattened to ``(n·C, n·C)`` with row ``i·C + c`` (the
  reference's ``reshape_kernel_and_targets``) and fitted to flattened one-hot targets.

Solvers (``SolverKind``) and what they support:

| kind         | scalar, C = 2 | scalar, C > 2 | block | adjust for init (f0) |
|--------------|---------------|---------------|-------|----------------------|
| REGRESSION   | yes           | yes           | yes   | yes                  |
| LOGISTIC     | yes           | yes           | yes*  | no                   |
| SVM          | yes           | yes           | yes*  | no                   |
| SVR          | yes           | yes           | yes   | yes                  |
| ASYMMETRIC   | yes           | no            | no    | yes                  |

``*`` block kernels in LOGISTIC / SVM: every (example, class) row is a binary sample
"is c the label of x_i" on the flattened kernel, as the reference does after reshaping; the class
with the largest decision value wins.

Regularisation follows the reference's ``--kernel_regularization``: ``ridge · ‖K_train‖₂`` (the
largest singular value) is added to the diagonal of the train kernel before any solver.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from threadpoolctl import threadpool_limits

from kernelft.kernels.outputs import margin

log = logging.getLogger(__name__)


class SolverKind(str, Enum):
    """Which kernel method to fit; the reference's ``--kernel_solver`` name in brackets."""

    REGRESSION = "regression"
    """Kernel (ridge) regression on ±1 / one-hot targets [lstsq]; the paper's main solver."""
    LOGISTIC = "logistic"
    """Logistic regression with the kernel rows as features, C chosen by CV [logistic]."""
    SVM = "svm"
    """Support vector classifier with ``kernel="precomputed"`` [svc]."""
    SVR = "svr"
    """Support vector regression with ``kernel="precomputed"`` on the targets [svr]."""
    ASYMMETRIC = "asymmetric"
    """Asymmetric-kernel least-squares SVM (AsK-LS, He et al. 2022) for K(A-SignGD) [asym]."""


@dataclass(frozen=True)
class SolverResult:
    """Output of :func:`solve`.

    ``decision``: ``(m,)`` margins for a scalar binary problem (positive → class 1), else ``(m, C)``
    class scores. ``predictions``: ``(m,)`` class ids. ``accuracy``: on ``y_test`` when given.
    ``train_accuracy``: the same solver's accuracy on the training set (kernel rows of train).
    """

    kind: SolverKind
    decision: np.ndarray
    predictions: np.ndarray
    accuracy: float | None
    train_accuracy: float


@dataclass(frozen=True)
class _Problem:
    """A problem in row space: N train rows, M test rows, R target columns.

    scalar C = 2: rows = examples, R = 1, targets ±1. scalar C > 2: rows = examples, R = C,
    one-hot targets. block: rows = (example, class) pairs, R = 1, flattened one-hot targets.
    ``labels`` are the per-row class ids for the sklearn classifiers; ``y_*`` the example labels.
    """

    k_train: np.ndarray  # (N, N), ridge already added
    k_test: np.ndarray  # (M, N)
    k_train_test: np.ndarray | None  # (N, M), asymmetric solver only
    targets: np.ndarray  # (N, R)
    labels: np.ndarray  # (N,)
    f0_train: np.ndarray | None  # (N, R)
    f0_test: np.ndarray | None  # (M, R)
    block: bool
    n_classes: int
    y_train: np.ndarray  # (n,)
    y_test: np.ndarray | None  # (m,)


def flatten_block_kernel(kernel: np.ndarray) -> np.ndarray:
    """``(n, m, C, C)`` with ``[i, j, c, c']`` → ``(n·C, m·C)`` with row ``i·C + c``, col ``j·C + c'``."""
    n, m, c1, c2 = kernel.shape
    return np.ascontiguousarray(kernel.transpose(0, 2, 1, 3).reshape(n * c1, m * c2))


def _swap_examples(kernel: np.ndarray) -> np.ndarray:
    """``[i, j]`` → ``[j, i]`` of a scalar (n, m) or block (n, m, C, C) kernel (block: ``[j, i, c', c]``)."""
    return kernel.T if kernel.ndim == 2 else kernel.transpose(1, 0, 3, 2)


def asymmetric_kernels(pair_train: np.ndarray, pair_train_test: np.ndarray) -> dict[str, np.ndarray]:
    """K(A-SignGD) in the three orientations :func:`solve` takes, from ``kernelft.entk``'s pairs.

    Malladi et al. (2023, Sec. 4): ``K(x, x') = <∇f(x), sign ∇f(x')>``, the change of f(x) under a
    SignGD step on x'. ``pair_train = ntk(train)`` ``(2, n, n)`` and ``pair_train_test = ntk(train,
    test)`` ``(2, n, m)`` (``asymmetric_signgd`` kind, block layouts with trailing ``(C, C)`` too),
    where ``pair[0, i, j] = <sign g(x_i), g(x'_j)>`` and ``pair[1, i, j] = <g(x_i), sign g(x'_j)>``:

    - ``kernel_train`` ``[i, j] = K(x_i, x_j) = pair_train[1]``;
    - ``kernel_test_train`` ``[a, i] = K(x'_a, x_i) = <g(x'_a), sign g(x_i)>``, ``pair_train_test[0]`` swapped;
    - ``kernel_train_test`` ``[i, a] = K(x_i, x'_a) = pair_train_test[1]``.
    """
    return {
        "kernel_train": pair_train[1],
        "kernel_test_train": _swap_examples(pair_train_test[0]),
        "kernel_train_test": pair_train_test[1],
    }


def _check_labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y))):
        raise ValueError(f"{name} must be a 1-D array of class ids 0..C-1, got shape {y.shape}, dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must hold class ids 0..C-1 (binary labels as 0/1, not ±1); found {y.min()}")
    return y


def _f0_rows(f0: np.ndarray | None, n: int, n_classes: int, scalar_binary: bool, name: str) -> np.ndarray | None:
    """Model outputs at the pretrained weights in row space ``(N, R)``."""
    if f0 is None:
        return None
    f0 = np.asarray(f0, dtype=np.float64)
    if scalar_binary:
        if f0.shape == (n, 2):  # two logits → the margin logit_1 − logit_0 the scalar kernel models
            f0 = margin(f0)
        if f0.shape not in ((n,), (n, 1)):
            raise ValueError(f"{name}: expected shape ({n},) margins or ({n}, 2) logits, got {f0.shape}")
        return f0.reshape(n, 1)
    if f0.shape != (n, n_classes):
        raise ValueError(f"{name}: expected shape ({n}, {n_classes}) logits, got {f0.shape}")
    return f0


def _prepare(
    kernel_train: np.ndarray,
    kernel_test_train: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray | None,
    f0_train: np.ndarray | None,
    f0_test: np.ndarray | None,
    kernel_train_test: np.ndarray | None,
    n_classes: int | None,
    ridge: float,
    f0_scaling: float,
) -> _Problem:
    k_train = np.asarray(kernel_train, dtype=np.float64)
    k_test = np.asarray(kernel_test_train, dtype=np.float64)
    y = _check_labels(y_train, "y_train")
    y_te = None if y_test is None else _check_labels(y_test, "y_test")
    n, m = y.shape[0], k_test.shape[0]
    if y_te is not None and y_te.shape[0] != m:
        raise ValueError(f"y_test has {y_te.shape[0]} labels but kernel_test_train has {m} rows")
    block = k_train.ndim == 4
    if block:
        if k_train.shape[:2] != (n, n) or k_train.shape[2] != k_train.shape[3]:
            raise ValueError(f"kernel_train: expected (n, n, C, C) with n = {n}, got {k_train.shape}")
        c = k_train.shape[2]
        if k_test.ndim != 4 or k_test.shape[1:] != (n, c, c):
            raise ValueError(f"kernel_test_train: expected (m, {n}, {c}, {c}), got {k_test.shape}")
    else:
        if k_train.shape != (n, n):
            raise ValueError(f"kernel_train: expected ({n}, {n}) or (n, n, C, C), got {k_train.shape}")
        if k_test.ndim != 2 or k_test.shape[1] != n:
            raise ValueError(f"kernel_test_train: expected (m, {n}), got {k_test.shape}")
        c = max(2, 1 + max(int(labels.max(initial=0)) for labels in (y, y_te) if labels is not None))
    if n_classes is not None:
        if block and n_classes != c:
            raise ValueError(f"n_classes={n_classes} but the block kernel has C = {c}")
        c = max(c, n_classes)
    if y.max(initial=0) >= c:
        raise ValueError(f"y_train holds class {y.max()} but there are only C = {c} classes")
    scalar_binary = not block and c == 2

    onehot = np.eye(c)[y]  # (n, C)
    if scalar_binary:
        targets, labels = (2.0 * y - 1.0).reshape(n, 1), y
    elif block:
        targets, labels = onehot.reshape(n * c, 1), onehot.reshape(n * c).astype(np.int64)
    else:
        targets, labels = onehot, y
    f0_tr = _f0_rows(f0_train, n, c, scalar_binary, "f0_train")
    f0_te = _f0_rows(f0_test, m, c, scalar_binary, "f0_test")
    if (f0_tr is None) != (f0_te is None):
        raise ValueError("adjust for init needs both f0_train and f0_test (or neither)")
    if f0_tr is not None:
        f0_tr, f0_te = f0_tr / f0_scaling, f0_te / f0_scaling
        if block:
            f0_tr, f0_te = f0_tr.reshape(n * c, 1), f0_te.reshape(m * c, 1)

    k_tt = None
    if kernel_train_test is not None:
        k_tt = np.asarray(kernel_train_test, dtype=np.float64)
        if k_tt.shape != (n, m):
            raise ValueError(f"kernel_train_test: expected ({n}, {m}), got {k_tt.shape}")
    if block:
        k_train, k_test = flatten_block_kernel(k_train), flatten_block_kernel(k_test)
    if ridge > 0:
        k_train = k_train + ridge * np.linalg.norm(k_train, 2) * np.eye(k_train.shape[0])
    return _Problem(k_train, k_test, k_tt, targets, labels, f0_tr, f0_te, block, c, y, y_te)


def _residual(p: _Problem) -> np.ndarray:
    """Targets minus the pretrained outputs: ``Y − f_0(X)`` (adjust for init), else ``Y``."""
    return p.targets if p.f0_train is None else p.targets - p.f0_train


def _no_f0(p: _Problem, kind: SolverKind) -> None:
    if p.f0_train is not None:
        raise ValueError(f"solver {kind.value!r} does not support adjust for init (f0); use 'regression' or 'svr'")


def _regression(p: _Problem, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """``α = (K + λI)⁺ (Y − f_0(X))``, ``f(x) = f_0(x) + K(x, X) α`` (min-norm least squares)."""
    alpha = np.linalg.lstsq(p.k_train, _residual(p), rcond=None)[0]
    return p.k_test @ alpha, p.k_train @ alpha


def _logistic_kwargs(cv: int) -> dict:
    from sklearn.linear_model import LogisticRegressionCV  # here: scikit-learn costs ~0.8 s to import

    kwargs: dict = {"Cs": 10, "cv": cv, "max_iter": 10000, "random_state": 0}
    params = inspect.signature(LogisticRegressionCV).parameters
    # scikit-learn >= 1.8 warns about changing defaults; pin today's behaviour where it asks.
    for key, value in (("l1_ratios", (0.0,)), ("scoring", "accuracy"), ("use_legacy_attributes", False)):
        if key in params and params[key].default == "warn":
            kwargs[key] = value
    return kwargs


def _logistic(p: _Problem, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on kernel rows: the features of x are ``K(x, X) ∈ R^N``.

    As the reference (``LogisticRegressionCV(max_iter=10000)``): an L2-penalised linear model in
    the span of the kernel rows, inverse penalty C picked by stratified CV on accuracy. This is
    not the RKHS-norm kernel logistic regression (penalty ``αᵀKα``); it is what the paper ran.
    Decision values: binary ``log p_1 − log p_0``; multi-class ``log p_c``.
    """
    _no_f0(p, SolverKind.LOGISTIC)
    folds = int(min(opts["cv"], np.bincount(p.labels).min()))
    if folds < 2:
        raise ValueError("logistic solver needs at least 2 training examples of every class for CV")
    # Hundreds of L-BFGS steps on a small dense matrix: threaded BLAS only adds overhead (10x when
    # the cores are busy), so one thread.
    from sklearn.linear_model import LogisticRegressionCV

    with threadpool_limits(limits=1, user_api="blas"):
        model = LogisticRegressionCV(**_logistic_kwargs(folds)).fit(p.k_train, p.labels)

    def score(k: np.ndarray) -> np.ndarray:
        logp = model.predict_log_proba(k)
        return logp[:, 1:] - logp[:, :1] if logp.shape[1] == 2 else logp

    return score(p.k_test), score(p.k_train)


def _svm(p: _Problem, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """``SVC(kernel="precomputed", C=svm_c)``; decision values from ``decision_function`` (ovr)."""
    from sklearn.svm import SVC

    _no_f0(p, SolverKind.SVM)
    model = SVC(kernel="precomputed", C=opts["svm_c"], decision_function_shape="ovr").fit(p.k_train, p.labels)
    test, train = (model.decision_function(k).reshape(k.shape[0], -1) for k in (p.k_test, p.k_train))
    return test, train


def _svr(p: _Problem, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """One ``SVR(kernel="precomputed", C=svm_c)`` per target column on ``Y − f_0(X)``."""
    from sklearn.svm import SVR

    residual = _residual(p)
    test, train = np.empty((p.k_test.shape[0], residual.shape[1])), np.empty_like(residual)
    for r in range(residual.shape[1]):
        model = SVR(kernel="precomputed", C=opts["svm_c"]).fit(p.k_train, residual[:, r])
        test[:, r], train[:, r] = model.predict(p.k_test), model.predict(p.k_train)
    return test, train


def _asymmetric(p: _Problem, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """AsK-LS without bias (He et al. 2022, "Learning with asymmetric kernels"), as in the reference.

    With ``K_ij = K(x_i, x_j)`` (for K(A-SignGD): ``<∇f(x_i), sign ∇f(x_j)>``), residual targets
    ``r = Y − f_0(X)`` and ``H = diag(r) K diag(r)``, solve

        [ I/γ   H  ] [α]   [1]
        [ Hᵀ   I/γ ] [β] = [1]

    and predict ``f(x) = f_0(x) + λ Σ_i α_i r_i K(x_i, x) + (1 − λ) Σ_i β_i r_i K(x, x_i)``.
    With a symmetric K and ±1 targets α = β and ``(K + I/γ)(α∘y) = y``: kernel ridge regression
    with ridge 1/γ, for every λ. The reference reads ``--kernel_lambda`` (tuned on dev; no default
    in its ``run.py``); ours defaults to 0.5. Like the reference, adjust for init puts the residual
    (not ±1) into H.
    """
    if p.block or p.n_classes != 2:
        raise ValueError("asymmetric solver supports binary tasks with a scalar (n, n) kernel only")
    if p.k_train_test is None:
        raise ValueError(
            "asymmetric solver needs kernel_train_test (n, m) = K(x_train_i, x_test_a) besides "
            "kernel_test_train (m, n) = K(x_test_a, x_train_i)"
        )
    r = _residual(p)[:, 0]
    n, gamma, lam = r.shape[0], opts["gamma"], opts["lam"]
    h = r[:, None] * p.k_train * r[None, :]
    system = np.block([[np.eye(n) / gamma, h], [h.T, np.eye(n) / gamma]])
    sol = np.linalg.lstsq(system, np.ones(2 * n), rcond=None)[0]
    a, b = sol[:n] * r, sol[n:] * r

    def score(k_first: np.ndarray, k_second: np.ndarray) -> np.ndarray:
        # k_first[i, x] = K(x_i, x); k_second[x, i] = K(x, x_i)
        return (lam * (k_first.T @ a) + (1 - lam) * (k_second @ b))[:, None]

    return score(p.k_train_test, p.k_test), score(p.k_train, p.k_train)


SOLVERS: dict[SolverKind, Callable[[_Problem, dict], tuple[np.ndarray, np.ndarray]]] = {
    # each returns (test, train) values in row space, (M, R) and (N, R), fitted to Y − f_0(X)
    SolverKind.REGRESSION: _regression,
    SolverKind.LOGISTIC: _logistic,
    SolverKind.SVM: _svm,
    SolverKind.SVR: _svr,
    SolverKind.ASYMMETRIC: _asymmetric,
}


def _to_classes(values: np.ndarray, p: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """Row-space values ``(M, R)`` → (decision, predicted class ids)."""
    if p.block:
        values = values.reshape(-1, p.n_classes)
    elif values.shape[1] == 1:  # scalar binary: the margin logit_1 − logit_0
        return values[:, 0], (values[:, 0] > 0).astype(np.int64)
    return values, values.argmax(axis=1)


def solve(
    kind: SolverKind | str,
    kernel_train: np.ndarray,
    kernel_test_train: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray | None = None,
    *,
    f0_train: np.ndarray | None = None,
    f0_test: np.ndarray | None = None,
    kernel_train_test: np.ndarray | None = None,
    n_classes: int | None = None,
    ridge: float = 0.0,
    f0_scaling: float = 1.0,
    gamma: float = 1.0,
    lam: float = 0.5,
    svm_c: float = 1.0,
    cv: int = 5,
) -> SolverResult:
    """Fit a kernel method on a precomputed eNTK and predict the test set (Malladi et al. 2023).

    Args:
        kind: the solver (see :class:`SolverKind` and the module table for what each supports).
        kernel_train: ``(n, n)`` scalar or ``(n, n, C, C)`` block train kernel.
        kernel_test_train: ``(m, n)`` or ``(m, n, C, C)``; ``[a, i] = K(x_test_a, x_train_i)``.
        y_train, y_test: class ids ``0..C-1``, shapes ``(n,)`` and ``(m,)``.
        f0_train, f0_test: outputs at the pretrained weights for "adjust for init" (the reference's
            ``--adjust_for_init``): the solver fits ``Y − f_0/s`` and adds ``f_0/s`` back at
            prediction, ``s = f0_scaling``. Scalar binary: ``(n,)`` margins or ``(n, 2)`` logits
            (turned into ``logit_1 − logit_0``); otherwise ``(n, C)`` logits.
        kernel_train_test: ``(n, m)``, ``[i, a] = K(x_train_i, x_test_a)``; needed by ASYMMETRIC
            only (for a symmetric kernel it is ``kernel_test_train.T``).
        n_classes: C for scalar kernels when the labels do not show every class.
        ridge: relative ridge, ``ridge · ‖K_train‖₂`` added to the diagonal (reference default 0:
            plain min-norm least squares, which interpolates an invertible kernel).
        gamma, lam: AsK-LS regularisation γ and mixing λ of the two predictors (ASYMMETRIC).
        svm_c: C of SVC / SVR. cv: folds for LOGISTIC (capped by the smallest class count).
    """
    kind = SolverKind(kind)
    p = _prepare(
        kernel_train, kernel_test_train, y_train, y_test, f0_train, f0_test,
        kernel_train_test, n_classes, ridge, f0_scaling,
    )
    opts = {"gamma": gamma, "lam": lam, "svm_c": svm_c, "cv": cv}
    test_values, train_values = SOLVERS[kind](p, opts)
    if p.f0_train is not None:  # adjust for init: the solver fitted Y − f_0(X); add f_0 back
        test_values, train_values = test_values + p.f0_test, train_values + p.f0_train
    decision, predictions = _to_classes(test_values, p)
    train_accuracy = float(np.mean(_to_classes(train_values, p)[1] == p.y_train))
    accuracy = None if p.y_test is None else float(np.mean(predictions == p.y_test))
    log.info(
        "solver=%s n=%d m=%d C=%d block=%s f0=%s: train acc %.4f, test acc %s",
        kind.value, p.y_train.shape[0], predictions.shape[0], p.n_classes, p.block, p.f0_train is not None,
        train_accuracy, "n/a" if accuracy is None else f"{accuracy:.4f}",
    )
    return SolverResult(kind, decision, predictions, accuracy, train_accuracy)
