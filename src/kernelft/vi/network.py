"""Wide networks in the NTK parameterisation, trained by full-batch gradient descent with
validation-based early stopping: the learner of the VI simulation of Sun & Raskutti (AISTATS 2025).

The network (Jacot et al., 2018 parameterisation, as ``LazyNet`` in ZexuanSun/Early-stopping-VI,
``codes/core/lazynetwork.py``), with one hidden layer (:class:`TwoLayerNet`):

    h(x) = relu( s_in · Wᵀ x + β_b · b ),        s_in  = sqrt(1 − β_b²) / sqrt(p)
    f(x) = s_out · aᵀ h(x) + β_b · c,           s_out = sqrt(1 − β_b²) / sqrt(m)

with W (p, m) (stored input-major, so the backward pass is one fast xᵀG product), b (m), a (m), c
all drawn i.i.d. N(0, 1) and the bias scale β_b = 0.1. :class:`DeepNet` stacks L hidden layers of
width m the same way, h_l = relu(s_l W_lᵀ h_{l−1} + β_b b_l) with s_l = sqrt(1 − β_b²)/sqrt(fan-in);
the reference's VI runs use L = 2, ``widths = [p, 2048, 2048, 1]`` (e.g. ``codes/exps/cor_nn.py``,
line 33); config key ``vi.hidden_layers``, built by :func:`make_network`. With this
scaling the empirical NTK K(x, x') = ⟨∇_θ f(x), ∇_θ f(x')⟩ is O(1) and stays nearly constant
during training as the width m grows, so gradient descent on L(θ) = (1/2n) Σ_i (f(x_i) − y_i)²
with step η follows kernel gradient descent, f_{t+1} ≈ f_t − η (K/n)(f_t − y). Stopping that
iteration early is a spectral filter (Raskutti, Wainwright & Yu, JMLR 2014); here, as in the VI
runs of the reference code, the stopping time is chosen on a validation split.

Warm start (the method of the paper): the reduced model f_{−j} starts from the full model's
weights and runs the same early-stopped gradient descent on inputs where X_j is replaced by its
mean. Because f already fits everything but the part explained by X_j alone, few steps suffice.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


class TwoLayerNet(nn.Module):
    """f(x) = s_out · aᵀ relu(s_in · Wᵀ x + β_b b) + β_b c, NTK parameterisation (see the module docstring).

    Input (n, p), output (n,). ``generator`` makes the N(0, 1) initialisation reproducible.
    """

    def __init__(self, p: int, width: int, bias_scale: float = 0.1, generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= bias_scale < 1.0:
            raise ValueError(f"bias_scale must lie in [0, 1), got {bias_scale}")
        self.p, self.width, self.bias_scale = p, width, bias_scale
        self.scale_in = math.sqrt(1.0 - bias_scale**2) / math.sqrt(p)
        self.scale_out = math.sqrt(1.0 - bias_scale**2) / math.sqrt(width)
        self.weight = nn.Parameter(torch.randn(p, width, generator=generator))
        self.bias = nn.Parameter(torch.randn(width, generator=generator))
        self.head = nn.Parameter(torch.randn(width, generator=generator))
        self.head_bias = nn.Parameter(torch.randn((), generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.scale_in * (x @ self.weight) + self.bias_scale * self.bias)
        return self.scale_out * (hidden @ self.head) + self.bias_scale * self.head_bias

    @torch.no_grad()
    def forward_into(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``forward`` without autograd, writing the (n, m) hidden layer into the preallocated ``hidden``."""
        torch.addmm(self.bias, x, self.weight, beta=self.bias_scale, alpha=self.scale_in, out=hidden)
        hidden.clamp_(min=0.0)
        return (hidden @ self.head).mul_(self.scale_out).add_(self.head_bias, alpha=self.bias_scale)

    def evaluator(self, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x (n, p) -> f(x) (n,)`` without autograd, reusing one preallocated (n, m) hidden buffer."""
        hidden = torch.empty(n, self.width)
        return lambda x: self.forward_into(x, hidden)

    def gradient_descent(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> "FullBatchGD":
        """The full-batch gradient-descent stepper of this network on (x, y)."""
        return FullBatchGD(self, x, y, lr)


class DeepNet(nn.Module):
    """L ≥ 1 hidden layers of width m in the NTK parameterisation (``LazyNet`` of the reference code):

        h_0 = x,   h_l = relu(s_l · W_lᵀ h_{l−1} + β_b b_l),   f(x) = s_out · aᵀ h_L + β_b c,

    s_1 = sqrt(1 − β_b²)/sqrt(p), s_l = s_out = sqrt(1 − β_b²)/sqrt(m) for l ≥ 2; W_1 (p, m), W_l (m, m),
    all parameters N(0, 1), drawn in the order W_1, b_1, ..., W_L, b_L, a, c (for L = 1 the draws and
    the function of :class:`TwoLayerNet`). Input (n, p), output (n,).
    """

    def __init__(self, p: int, width: int, hidden_layers: int = 2, bias_scale: float = 0.1,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= bias_scale < 1.0:
            raise ValueError(f"bias_scale must lie in [0, 1), got {bias_scale}")
        if hidden_layers < 1:
            raise ValueError(f"hidden_layers must be at least 1, got {hidden_layers}")
        self.p, self.width, self.hidden_layers, self.bias_scale = p, width, hidden_layers, bias_scale
        fan_in = [p] + [width] * (hidden_layers - 1)
        self.scales = [math.sqrt(1.0 - bias_scale**2) / math.sqrt(f) for f in fan_in]
        self.scale_out = math.sqrt(1.0 - bias_scale**2) / math.sqrt(width)
        weights, biases = [], []
        for f in fan_in:
            weights.append(nn.Parameter(torch.randn(f, width, generator=generator)))
            biases.append(nn.Parameter(torch.randn(width, generator=generator)))
        self.weights, self.biases = nn.ParameterList(weights), nn.ParameterList(biases)
        self.head = nn.Parameter(torch.randn(width, generator=generator))
        self.head_bias = nn.Parameter(torch.randn((), generator=generator))

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[h_1, ..., h_L], each (n, m)."""
        states, h = [], x
        for weight, bias, scale in zip(self.weights, self.biases, self.scales):
            h = torch.relu(torch.addmm(bias, h, weight, beta=self.bias_scale, alpha=scale))
            states.append(h)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_out * (self.hidden_states(x)[-1] @ self.head) + self.bias_scale * self.head_bias

    def evaluator(self, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x (n, p) -> f(x) (n,)`` without autograd."""

        def evaluate(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self(x)

        return evaluate

    def gradient_descent(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> "DeepFullBatchGD":
        """The full-batch gradient-descent stepper of this network on (x, y)."""
        return DeepFullBatchGD(self, x, y, lr)


def make_network(p: int, width: int, hidden_layers: int = 1, bias_scale: float = 0.1,
                 generator: torch.Generator | None = None) -> TwoLayerNet | DeepNet:
    """The NTK-parameterised network with ``hidden_layers`` hidden layers of ``width`` (config keys
    ``vi.hidden_layers``, ``vi.width``): :class:`TwoLayerNet` for one (its hand-written, faster gradient
    step), :class:`DeepNet` for more."""
    if hidden_layers == 1:
        return TwoLayerNet(p, width, bias_scale=bias_scale, generator=generator)
    return DeepNet(p, width, hidden_layers=hidden_layers, bias_scale=bias_scale, generator=generator)


class EarlyStopping:
    """Stop when the validation loss has not improved by more than ``min_delta`` for ``patience`` checks.

    The rule of PyTorch Lightning's ``EarlyStopping`` (used by the reference code): a check at loss L
    counts as an improvement when L < best − min_delta; otherwise a counter goes up, and training
    stops once it reaches ``patience``. ``best_step`` is the check with the lowest loss so far.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be non-negative, got {min_delta}")
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_step = -1
        self.wait = 0

    def update(self, step: int, loss: float) -> bool:
        """Record the validation ``loss`` at ``step``; True when training should stop now."""
        if loss < self.best - self.min_delta:
            self.wait = 0
        else:
            self.wait += 1
        if loss < self.best:
            self.best, self.best_step = loss, step
        return self.wait >= self.patience


@dataclass
class TrainResult:
    """What one early-stopped run did: ``steps`` taken, the ``stopping_time`` kept, losses, wall time."""

    steps: int
    stopping_time: int
    val_loss: float
    seconds: float
    val_losses: list[float] = field(default_factory=list, repr=False)


class FullBatchGD:
    """Gradient descent θ ← θ − η ∇L(θ) on L = (1/2n) Σ_i (f(x_i) − y_i)² for a :class:`TwoLayerNet`.

    The gradient is written out by hand into buffers allocated once (with r = (f − y)/n and
    G = r aᵀ ⊙ 1[pre > 0], pre = s_in xW + β_b b):

        ∂L/∂a = s_out hᵀ r,          ∂L/∂c = β_b Σ_i r_i,
        ∂L/∂W = s_in s_out xᵀ G,     ∂L/∂b = β_b s_out Σ_i G_i.

    On a busy 2-core CPU this is about 5× faster than autograd + ``torch.optim.SGD``, whose time goes
    to allocating fresh (n, m) tensors; ``tests/vi/test_vi.py`` checks it against autograd.
    """

    def __init__(self, model: TwoLayerNet, x: torch.Tensor, y: torch.Tensor, lr: float):
        self.model, self.x, self.y, self.lr = model, x, y, lr
        n = x.shape[0]
        self.x_t = x.T.contiguous()
        self.hidden = torch.empty(n, model.width)
        self.g = torch.empty(n, model.width)
        self.r = torch.empty(n)

    @torch.no_grad()
    def step(self) -> None:
        """One full-batch gradient step, in place."""
        m, n = self.model, self.x.shape[0]
        torch.sub(m.forward_into(self.x, self.hidden), self.y, out=self.r).div_(n)
        grad_head = self.r @ self.hidden
        grad_head_bias = self.r.sum()
        torch.outer(self.r, m.head, out=self.g)
        self.g.mul_(self.hidden.sign_())  # hidden ≥ 0, so sign() is the relu derivative 1[pre > 0]
        grad_weight = self.x_t @ self.g
        grad_bias = self.g.sum(dim=0)
        m.weight.sub_(grad_weight, alpha=self.lr * m.scale_in * m.scale_out)
        m.bias.sub_(grad_bias, alpha=self.lr * m.bias_scale * m.scale_out)
        m.head.sub_(grad_head, alpha=self.lr * m.scale_out)
        m.head_bias.sub_(grad_head_bias, alpha=self.lr * m.bias_scale)


class DeepFullBatchGD:
    """Gradient descent θ ← θ − η ∇L(θ) on L = (1/2n) Σ_i (f(x_i) − y_i)² for a :class:`DeepNet`.

    Backpropagation by hand (no autograd graph): with r = (f − y)/n, G_L = s_out r aᵀ ⊙ 1[h_L > 0] and
    G_{l−1} = s_l (G_l W_lᵀ) ⊙ 1[h_{l−1} > 0],

        ∂L/∂a = s_out h_Lᵀ r,     ∂L/∂c = β_b Σ_i r_i,     ∂L/∂W_l = s_l h_{l−1}ᵀ G_l,     ∂L/∂b_l = β_b Σ_i G_l,i.

    ``tests/vi/test_vi.py`` checks it against autograd.
    """

    def __init__(self, model: DeepNet, x: torch.Tensor, y: torch.Tensor, lr: float):
        self.model, self.x, self.y, self.lr = model, x, y, lr

    @torch.no_grad()
    def step(self) -> None:
        """One full-batch gradient step, in place."""
        m, n = self.model, self.x.shape[0]
        states = m.hidden_states(self.x)
        r = (m.scale_out * (states[-1] @ m.head) + m.bias_scale * m.head_bias - self.y) / n
        grads = [(m.head, m.scale_out * (r @ states[-1])), (m.head_bias, m.bias_scale * r.sum())]
        g = m.scale_out * torch.outer(r, m.head) * (states[-1] > 0)
        for layer in reversed(range(m.hidden_layers)):
            below = self.x if layer == 0 else states[layer - 1]
            weight, scale = m.weights[layer], m.scales[layer]
            grads += [(weight, scale * (below.T @ g)), (m.biases[layer], m.bias_scale * g.sum(dim=0))]
            if layer > 0:
                g = scale * (g @ weight.T) * (below > 0)
        for param, grad in grads:
            param.sub_(grad, alpha=self.lr)


def train(
    model: TwoLayerNet | DeepNet,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    lr: float = 1.0,
    max_steps: int = 2000,
    patience: int = 10,
    min_delta: float = 1e-4,
    restore_best: bool = True,
) -> TrainResult:
    """Full-batch gradient descent on (1/2n) Σ (f(x_i) − y_i)² with validation early stopping, in place.

    The validation MSE is checked before the first step (step 0) and after every step; training
    stops by :class:`EarlyStopping` or after ``max_steps`` steps. With ``restore_best`` the model
    ends at the best checked step (the ``stopping_time``); otherwise at the last. Shapes: x (n, p), y (n,).
    """
    start = time.perf_counter()
    gd = model.gradient_descent(x_train, y_train, lr)
    stopper = EarlyStopping(patience=patience, min_delta=min_delta)
    evaluate = model.evaluator(x_val.shape[0])
    best = [p.detach().clone() for p in model.parameters()]
    val_losses: list[float] = []
    step = 0
    while True:
        val_loss = torch.mean((evaluate(x_val) - y_val) ** 2).item()
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"validation loss is {val_loss} at step {step}: lower the learning rate (lr={lr})")
        val_losses.append(val_loss)
        improved = val_loss < stopper.best
        stop = stopper.update(step, val_loss)
        if restore_best and improved:
            with torch.no_grad():
                for saved, p in zip(best, model.parameters()):
                    saved.copy_(p)
        if stop or step >= max_steps:
            break
        gd.step()
        step += 1
    if not stop:
        log.debug("reached max_steps=%d before early stopping", max_steps)
    stopping_time = stopper.best_step if restore_best else step
    if restore_best:
        with torch.no_grad():
            for saved, p in zip(best, model.parameters()):
                p.copy_(saved)
    return TrainResult(
        steps=step,
        stopping_time=stopping_time,
        val_loss=val_losses[stopping_time],
        seconds=time.perf_counter() - start,
        val_losses=val_losses,
    )


def predict(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Model output on ``x`` (n, p) as a float64 numpy array (n,)."""
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


def warm_start(full: TwoLayerNet | DeepNet) -> TwoLayerNet | DeepNet:
    """A copy of the full model to train as the reduced model f_{−j} (its weights are the starting point)."""
    return copy.deepcopy(full)
