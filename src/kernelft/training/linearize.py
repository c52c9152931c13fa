"""The linearized model: a network's first-order Taylor expansion in its parameters at θ0.

    f_lin(x; θ) = f(x; θ0) + J(x) (θ − θ0),        J(x) = ∂f(x; θ)/∂θ at θ = θ0.

Training f_lin with gradient descent on the squared loss is kernel gradient descent with the
empirical NTK K(x, x') = J(x) J(x')ᵀ at the pretrained weights (Lee et al., NeurIPS 2019), the
"kernel behaviour" against which Malladi et al. (ICML 2023, Sec. 4 and 6) compare real fine-tuning;
the same model is the tangent-space fine-tuning of task arithmetic (Ortiz-Jiménez et al., NeurIPS
2023). The trainable parameters are the displacement Δθ = θ − θ0 (zero at the start), for a chosen
subset of θ; every other parameter stays at its pretrained value.

Computation: one ``torch.func.jvp`` of ``functional_call(model, θ0, x)`` along the tangent Δθ gives
``f(x; θ0)`` (the primal) and ``J(x) Δθ`` (the tangent) in a single forward pass; the gradient of a
loss with respect to Δθ flows back through the tangent by ordinary autograd (reverse over forward).
J is never materialised.

Cost and memory: the jvp forward carries a tangent beside every activation (about 2–3 plain
forwards, about twice the activation memory), and the backward through it costs about twice a
plain backward. Parameter memory is that of fine-tuning: θ0 (the frozen model), Δθ and the
optimizer state of Δθ. Measured on all-MiniLM-L6-v2 (all 22.6M parameters, batch 16 × 64 tokens,
AdamW, 2 CPU threads on a machine shared with other jobs, so ±30 %): a training step costs ≈ 1.4×
a fine-tuning step, a no-grad evaluation forward 2.5–7× a plain one, and peak RSS is 1.7 GB against
1.25 GB for fine-tuning (0.9 GB for LoRA). Weight decay (AdamW) shrinks Δθ, i.e. pulls θ towards
θ0, not towards 0.

The features φ_lin(x) = φ(x; θ0) + J_φ(x) Δθ are linearized in the same way, so the
``feature_change`` of a linearized run is the mean of ‖J_φ(x) Δθ‖.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, jvp

from kernelft.training.inference import logits_and_features


class _Call(nn.Module):
    """``forward = fn(model, *args)``, so that ``functional_call`` can swap the parameters of ``model``
    under any function of it, not only its ``forward`` (names get the prefix ``model.``)."""

    def __init__(self, model: nn.Module, fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: torch.Tensor):
        return self.fn(self.model, *args)


class LinearizedModel(nn.Module):
    """``f_lin(x; θ0 + Δθ) = f(x; θ0) + J(x) Δθ`` for the parameters ``names`` of ``model``.

    Same call signature as :class:`~kernelft.text.models.TextClassifier`: ``forward(input_ids,
    attention_mask) -> logits (B, C)`` and ``features(...) -> (B, H)``. The trainable tensors are
    :attr:`delta` (Δθ, one per name, zero at construction); :meth:`trainable_parameters` lists them.
    ``model`` must stay at θ0: its parameters are read as the expansion point at every call, and
    gradients never reach them (they are detached).
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        named = dict(model.named_parameters())
        unknown = [name for name in names if name not in named]
        if unknown or not names:
            raise ValueError(f"linearized model: {unknown or list(names)} are not parameter names of the model")
        self.model = model
        self.names = tuple(names)
        self.delta = nn.ParameterList([nn.Parameter(torch.zeros_like(named[name])) for name in self.names])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Δθ, in the order of :attr:`names`."""
        return list(self.delta)

    def displacement(self) -> dict[str, torch.Tensor]:
        """Δθ = θ − θ0 by parameter name (the task vector of a linearized run), detached."""
        return {name: d.detach() for name, d in zip(self.names, self.delta)}

    def parameter(self, name: str) -> torch.Tensor:
        """The current value θ0 + Δθ of parameter ``name`` (θ0 if it is not trained), detached."""
        base = dict(self.model.named_parameters())[name].detach()
        if name in self.names:
            return base + self.delta[self.names.index(name)].detach()
        return base

    def _expand(self, fn: Callable, *args: torch.Tensor):
        """``(fn(θ0), ∂fn/∂θ · Δθ)`` for ``fn(model, *args)``, by one jvp."""
        wrapper = _Call(self.model, fn)
        named = dict(self.model.named_parameters())
        primals = {f"model.{name}": named[name].detach() for name in self.names}
        tangents = {f"model.{name}": d for name, d in zip(self.names, self.delta)}
        return jvp(lambda p: functional_call(wrapper, p, args), (primals,), (tangents,))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        value, tangent = self._expand(lambda m, i, a: m(i, a), input_ids, attention_mask)
        return value + tangent

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """φ_lin(x) = φ(x; θ0) + J_φ(x) Δθ, shape (B, H)."""
        value, tangent = self._expand(lambda m, i, a: m.features(i, a), input_ids, attention_mask)
        return value + tangent

    def logits_and_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both linearized outputs from one jvp: logits (B, C) and φ (B, H)."""
        (logits, phi), (d_logits, d_phi) = self._expand(logits_and_features, input_ids, attention_mask)
        return logits + d_logits, phi + d_phi
