"""Per-example gradient factors from one batched forward and backward (hooks on module outputs).

For a chunk of b examples, forward hooks keep each module's input and output; one backward per
output coordinate f_o (of ``Σ_i f_o(x_i)``, examples being independent) gives ∂f_o(x_i)/∂output,
*without* forming any parameter gradient. Per-example parameter gradients follow exactly from them:

- ``nn.Linear`` (y = W a + b): ``∇_W f(x_i) = Σ_t g_it a_itᵀ``, ``∇_b f(x_i) = Σ_t g_it`` — kept as
  the factors (a_i, g_i) (:class:`Factored`), restricted to the token positions whose output
  gradient is non-zero in some example (in the last layer only the position the head reads).
  GPT-2's ``Conv1D`` (y = a W + b, W stored d_in × d_out) is the same with ``∇_W = Σ_t a_it g_itᵀ``.
- ``nn.Embedding`` (y_t = E[x_t]): ``∇_E f(x_i)`` touches only the rows of x_i's own tokens:
  row x_it receives g_it (:class:`Rows`) — never a dense V × H vector.
- ``nn.LayerNorm`` (y = γ ⊙ x̂ + β): ``∇_γ = Σ_t g_t ⊙ x̂_t``, ``∇_β = Σ_t g_t`` (:class:`Dense`).
- RMSNorm (Llama, Qwen: y = γ ⊙ x / rms(x), any module whose class name ends in ``RMSNorm``): its
  scale acts elementwise, so ``∇_γ = Σ_t g_t ⊙ ∂y_t/∂γ`` with the diagonal ``∂y_t/∂γ`` from one
  ``torch.func.jvp`` along γ̇ = 1 (:class:`Dense`).
- The prompt head of a model without LM head reads ``logit_c = h · E[label_c]``: its share of ∇_E is
  the row label_c receiving ``(∂f/∂logit_c) h`` (:class:`Rows`).
- A vocabulary-sized Linear (an MLM decoder, tied to E) is kept as rows too: only label-word rows
  have a non-zero output gradient.

Shapes: b examples, O outputs, k kept positions; ``Dense.values`` (b, O, p),
``Factored.inputs`` (b, k, d_in) and ``Factored.grads`` (b, O, k, d_out),
``Rows.rows`` (b, k) and ``Rows.values`` (b, O, k, w).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp
from transformers.pytorch_utils import Conv1D

from kernelft.entk.common import UnsupportedModel
from kernelft.entk.kinds import reduce_logits
from kernelft.text.models import EmbeddingReadout, TextClassifier

if TYPE_CHECKING:
    from kernelft.entk.factored import FactoredProjection

ROW_SPARSE_OUTPUTS = 8192
"""Linear layers with at least this many outputs (vocabulary projections) are kept as rows."""


@dataclass
class Dense:
    values: torch.Tensor


@dataclass
class Factored:
    inputs: torch.Tensor
    grads: torch.Tensor
    transposed: bool = False
    """True for Conv1D: the weight is stored d_in × d_out, its gradient Σ_t a_t g_tᵀ."""


@dataclass
class Rows:
    rows: torch.Tensor
    values: torch.Tensor


Piece = Dense | Factored | Rows


@dataclass
class Site:
    """One module whose parameters are (partly) selected; ``weight``/``bias`` are selected names."""

    path: str
    module: nn.Module
    kind: str  # "linear", "conv1d", "embedding", "layernorm", "rmsnorm" or "readout"
    weight: str | None
    bias: str | None
    row_sparse: bool = False
    width: int = 0  # readout: the embedding width H

    @property
    def dims(self) -> tuple[int, int]:
        """(d_in, d_out) of a linear or Conv1D site."""
        shape = self.module.weight.shape
        return (shape[0], shape[1]) if self.kind == "conv1d" else (shape[1], shape[0])

    def estimate_numel(self, length: int, out_dim: int, projected: tuple[int, int] | None = None) -> int:
        """Upper bound on the entries this site stores per example (k ≤ length positions);
        ``projected`` = (k_out, k_in) when the factored projection shrinks its factors."""
        if self.kind == "readout":
            return out_dim * len(self.module.label_token_ids) * self.width
        if self.kind in ("layernorm", "rmsnorm"):
            return 2 * out_dim * self.module.weight.shape[0]
        if self.kind == "embedding":
            return length * (1 + out_dim * self.module.embedding_dim)
        d_in, d_out = self.dims
        if projected is not None:
            return length * (projected[1] + out_dim * projected[0]) + out_dim * d_out
        if self.row_sparse:
            return 8 * out_dim * (d_in + 2)
        return length * (d_in + out_dim * d_out) + out_dim * d_out


def _is_rmsnorm(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return type(module).__name__.endswith("RMSNorm") and isinstance(weight, torch.Tensor) and weight.ndim == 1


def find_sites(model: nn.Module, params: dict[str, torch.Tensor]) -> list[Site]:
    """Map the selected parameters to the modules that use them.

    A selected parameter that no supported module owns gets no site; the engine's check against
    autograd then finds whether its gradient is identically zero (an unused pooler) or refuses the model.
    """
    by_id = {id(p): name for name, p in params.items()}
    row_sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) in by_id}
    sites: list[Site] = []
    for path, module in model.named_modules():
        weight = by_id.get(id(getattr(module, "weight", None)))
        bias = by_id.get(id(getattr(module, "bias", None)))
        if isinstance(module, TextClassifier) and isinstance(module.head, EmbeddingReadout):
            embedding = module.word_embeddings()
            name = by_id.get(id(embedding))
            if name is not None:
                head_path = f"{path}.head" if path else "head"
                sites.append(Site(head_path, module.head, "readout", name, None, True, embedding.shape[1]))
        if weight is None and bias is None:
            continue
        if isinstance(module, nn.Linear):
            sparse = id(module.weight) in row_sparse_ids or module.out_features >= ROW_SPARSE_OUTPUTS
            sites.append(Site(path, module, "linear", weight, bias, sparse))
        elif isinstance(module, Conv1D):
            sites.append(Site(path, module, "conv1d", weight, bias))
        elif isinstance(module, nn.Embedding):
            sites.append(Site(path, module, "embedding", weight, None, True))
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine and len(module.normalized_shape) == 1:
            sites.append(Site(path, module, "layernorm", weight, bias))
        elif _is_rmsnorm(module) and bias is None:
            sites.append(Site(path, module, "rmsnorm", weight, None))
    # A dense parameter used by two modules would need its uses summed before the product: no site
    # (the check against autograd then refuses the model).
    dense_names = [n for s in sites for n in (s.weight, s.bias) if n is not None and not s.row_sparse]
    duplicated = {n for n in dense_names if dense_names.count(n) > 1}
    return [s for s in sites if not ({s.weight, s.bias} & duplicated)]


def _keep_positions(grads: torch.Tensor) -> torch.Tensor:
    """Indices (b, k) of positions with a non-zero output gradient, per example, padded with
    positions whose gradient is zero; grads (b, O, T, d)."""
    nonzero = grads.ne(0).any(dim=-1).any(dim=1)  # (b, T)
    k = max(int(nonzero.sum(dim=1).max()), 1)
    order = torch.argsort((~nonzero).to(torch.int8), dim=1, stable=True)
    return order[:, :k]


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (b, T, d) at positions index (b, k) → (b, k, d)."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[-1]))


def _gather_outputs(g: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """g (b, O, T, d) at positions index (b, k) → (b, O, k, d)."""
    return g.gather(2, index[:, None, :, None].expand(-1, g.shape[1], -1, g.shape[-1]))


def _as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(b, d) → (b, 1, d); (b, ..., d) → (b, T, d)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def capture(
    model: nn.Module,
    sites: list[Site],
    batch: dict[str, torch.Tensor],
    output: str,
    out_dim: int,
    projection: FactoredProjection | None = None,
) -> tuple[dict[str, list[Piece]], torch.Tensor]:
    """Run one forward and O backward passes on ``batch``; return the pieces of every selected
    parameter of ``sites`` by name (a tied parameter may get several pieces) and the forward's logits
    (detached).

    With ``projection`` (LoGra, :mod:`.factored`) the factors of each projected weight are kept as
    (P_in a_t, P_out g_t): the per-example weight gradient is never formed, and what is stored per
    example shrinks from T (d_in + O d_out) to T (k_in + O k_out) numbers.

    A site whose module never runs gets no pieces (a weight read as a tensor, e.g. DeBERTa-v2's
    relative position embeddings, is caught by the engine's check against autograd). Raises
    :class:`UnsupportedModel` when a site's module runs twice in one forward (layers shared across
    depth, ALBERT) or computes something shared by the whole batch (an input without the batch
    dimension, e.g. MPNet's relative attention bias), which no check on summed gradients can see.
    """
    b = batch["input_ids"].shape[0]
    saved: dict[int, tuple] = {}
    handles = []
    for index, site in enumerate(sites):
        if site.kind == "embedding":

            def widen(module, args, b=b):  # shared position ids (1, T) → per example (b, T)
                ids = args[0]
                if ids.ndim == 2 and ids.shape[0] == 1 and b > 1:
                    ids = ids.expand(b, -1)
                return (ids,) + tuple(args[1:])

            handles.append(site.module.register_forward_pre_hook(widen))

        def keep(module, args, out, index=index):
            path = sites[index].path
            if index in saved:
                raise UnsupportedModel(f"{path} runs twice in one forward (shared layers)")
            if args[0].ndim == 0 or args[0].shape[0] != b:
                shape = tuple(args[0].shape)
                raise UnsupportedModel(f"{path} computes something shared by the whole batch (input {shape})")
            saved[index] = (args[0].detach(), out)

        handles.append(site.module.register_forward_hook(keep))
    try:
        with torch.enable_grad():
            logits = model(batch["input_ids"], batch["attention_mask"])
            f = reduce_logits(logits, output)
            ran = [i for i in range(len(sites)) if i in saved]  # a module never run has no pieces
            outputs = [saved[i][1] for i in ran]
            per_output = []
            for o in range(out_dim if outputs else 0):
                grads = torch.autograd.grad(
                    f[:, o].sum(), outputs, retain_graph=o + 1 < out_dim, allow_unused=True, materialize_grads=True
                )
                per_output.append(grads)
    finally:
        for handle in handles:
            handle.remove()
    pieces: dict[str, list[Piece]] = {}
    for position, i in enumerate(ran):
        site = sites[i]
        if out_dim == 1:
            g = per_output[0][position].unsqueeze(1)  # (b, 1, *out)
        else:
            g = torch.stack([grads[position] for grads in per_output], dim=1)  # (b, O, *out)
        if site.kind == "readout":
            _readout_pieces(site, saved[i][0], g, pieces)
        else:
            _site_pieces(site, saved[i][0], g, pieces, projection)
    return pieces, logits.detach()


def _norm_scale_derivative(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """∂y_t/∂γ of an elementwise-scaled norm (RMSNorm) at inputs x: the JVP along γ̇ = 1, (b, T, d)."""
    weight = module.weight.detach()
    return jvp(lambda w: functional_call(module, {"weight": w}, (x,)), (weight,), (torch.ones_like(weight),))[1]


def _site_pieces(
    site: Site,
    inputs: torch.Tensor,
    g: torch.Tensor,
    pieces: dict[str, list[Piece]],
    projection: FactoredProjection | None = None,
) -> None:
    b, out_dim = g.shape[:2]
    g = g.reshape(b, out_dim, -1, g.shape[-1])  # (b, O, T, d_out)
    add = lambda name, piece: pieces.setdefault(name, []).append(piece)  # noqa: E731
    if site.kind == "embedding":
        keep = _keep_positions(g)
        ids = inputs.reshape(b, -1).gather(1, keep)
        values = _gather_outputs(g, keep)
        if site.module.padding_idx is not None:  # nn.Embedding never updates its padding row
            values = values * ids.ne(site.module.padding_idx)[:, None, :, None]
        add(site.weight, Rows(ids, values))
        return
    if site.kind in ("layernorm", "rmsnorm"):
        x = inputs.reshape(b, -1, inputs.shape[-1])
        if site.kind == "layernorm":
            normalized = F.layer_norm(x, site.module.normalized_shape, None, None, site.module.eps)
        else:
            normalized = _norm_scale_derivative(site.module, x)
        if site.weight is not None:
            add(site.weight, Dense(torch.einsum("botd,btd->bod", g, normalized.to(g.dtype))))
        if site.bias is not None:
            add(site.bias, Dense(g.sum(dim=2)))
        return
    a = _as_tokens(inputs)  # linear: (b, T, d_in)
    if site.row_sparse:
        active = g.ne(0).flatten(0, 2).any(dim=0).nonzero().squeeze(1)  # output rows with any gradient
        g_active = g[..., active]  # (b, O, T, r)
        rows = active.expand(b, -1)
        if site.weight is not None:
            add(site.weight, Rows(rows, torch.einsum("botr,btd->bord", g_active, a)))
        if site.bias is not None:
            add(site.bias, Rows(rows, g_active.sum(dim=2)[..., None]))
        return
    keep = _keep_positions(g)
    if keep.shape[1] < a.shape[1]:
        a = _gather(a, keep)
        g = _gather_outputs(g, keep)
    if site.bias is not None:
        add(site.bias, Dense(g.sum(dim=2)))
    if site.weight is not None and projection is not None and site.weight in projection.shapes:
        # Σ_t (P_out g_t)(P_in a_t)ᵀ = P_out ∇_W P_inᵀ: the projected factors are plain Linear factors.
        add(site.weight, Factored(*projection.project_inputs_and_grads(a, g, site.weight)))
    elif site.weight is not None:
        add(site.weight, Factored(a, g, transposed=site.kind == "conv1d"))


def _readout_pieces(site: Site, h: torch.Tensor, g: torch.Tensor, pieces: dict[str, list[Piece]]) -> None:
    """logit_c = h · E[label_c]: row label_c of ∇_E f_o is (∂f_o/∂logit_c) h; h (b, H), g (b, O, C)."""
    labels = site.module.label_token_ids
    values = g[..., None] * h[:, None, None, :]  # (b, O, C, H)
    pieces.setdefault(site.weight, []).append(Rows(labels.expand(h.shape[0], -1), values))
