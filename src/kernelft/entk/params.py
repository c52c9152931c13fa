"""Which parameters θ the eNTK differentiates: all, all but embeddings, the last L layers, LoRA (with or
without the head), all but LoRA.

Malladi et al. (2023) compute the kernel over all parameters, and also over a LoRA subspace (the
kernel of LoRA fine-tuning). The reference code (princeton-nlp/LM-Kernel-FT) excludes embeddings by
name (every parameter whose name contains ``"embed"``) and LoRA by keeping only ``lora`` weights;
this module does the same on a :class:`~kernelft.text.models.TextClassifier` of any family, and also
drops every ``nn.Embedding`` weight whatever its name (GPT-2's ``wte``/``wpe``).

Tied weights are counted once, under the name ``named_parameters()`` gives first (the backbone's
word embeddings; a prompt head or tied LM head reads the same tensor). So ``no_embeddings`` also
drops the prompt head's read-out of the label-word embeddings (it is the same parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from torch import nn

_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)\.")
"""The block index of a transformer parameter: ``layer.<i>.`` (BERT), ``layers.<i>.`` (Llama), ``h.<i>.``
(GPT-2, GPT-Neo), ``blocks.<i>.``."""


class ParamSet(str, Enum):
    """Named parameter sets (see :class:`ParamSpec` for the last-L-layers count)."""

    ALL = "all"
    NO_EMBEDDINGS = "no_embeddings"
    LAST_LAYERS = "last_layers"
    LORA = "lora"
    LORA_HEAD = "lora_head"
    NO_LORA = "no_lora"


@dataclass(frozen=True)
class ParamSpec:
    """A parameter set: ``kind`` plus, for ``LAST_LAYERS``, how many final transformer blocks.

    ``LAST_LAYERS`` keeps the parameters of the last ``layers`` blocks (names ``...layer.<i>....``)
    and every head parameter (the linear head, or an MLM head's transform; a tied decoder weight is
    the word embedding and stays out).
    """

    kind: ParamSet = ParamSet.ALL
    layers: int = 1

    def __str__(self) -> str:
        return f"last_layers:{self.layers}" if self.kind is ParamSet.LAST_LAYERS else self.kind.value


def parse_params(spec: ParamSet | ParamSpec | str) -> ParamSpec:
    """Accept ``ParamSet.ALL``, ``ParamSpec(...)`` or the config strings ``"all"``,
    ``"no_embeddings"``, ``"lora"``, ``"lora_head"`` (LoRA adapters and the head), ``"no_lora"`` (every
    parameter but the LoRA adapters: the pretrained model's and the head's), ``"last_layers:<L>"``."""
    if isinstance(spec, ParamSpec):
        return spec
    if isinstance(spec, ParamSet):
        return ParamSpec(spec)
    text = str(spec)
    if text.startswith("last_layers"):
        _, _, count = text.partition(":")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"params={spec!r}: expected 'last_layers:<L>' with L ≥ 1, e.g. 'last_layers:2'")
        return ParamSpec(ParamSet.LAST_LAYERS, int(count))
    try:
        return ParamSpec(ParamSet(text))
    except ValueError:
        raise ValueError(
            f"params={spec!r}: expected one of 'all', 'no_embeddings', 'lora', 'lora_head', 'no_lora', "
            "'last_layers:<L>'"
        ) from None


def select_parameters(model: nn.Module, spec: ParamSet | ParamSpec | str) -> dict[str, nn.Parameter]:
    """The parameters in the set, by name, in ``named_parameters()`` order (tied ones once).

    Raises ``ValueError`` when the set is empty (e.g. ``lora`` on a model without adapters).
    """
    spec = parse_params(spec)
    named = dict(model.named_parameters())
    if spec.kind is ParamSet.ALL:
        chosen = named
    elif spec.kind is ParamSet.NO_EMBEDDINGS:
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        chosen = {name: p for name, p in named.items() if "embed" not in name and id(p) not in embeddings}
    elif spec.kind is ParamSet.LORA:
        chosen = {name: p for name, p in named.items() if "lora_" in name}
    elif spec.kind is ParamSet.NO_LORA:
        chosen = {name: p for name, p in named.items() if "lora_" not in name}
    elif spec.kind is ParamSet.LORA_HEAD:
        # The reference's LoRA kernel: LoRA adapters plus every parameter outside the backbone (RoBERTa's
        # lm_head transform and bias, or the classifier; princeton-nlp/LM-Kernel-FT src/kernel_trainer.py,
        # convert_to_buffer, keeps what does not start with "roberta" or is a LoRA weight).
        head = set(_head_names(model))
        chosen = {name: p for name, p in named.items() if "lora_" in name or name in head}
    else:
        indices = {int(m.group(1)) for name in named if (m := _LAYER_INDEX.search(name))}
        if not indices:
            raise ValueError(f"params={spec}: no parameter name has a '.layer.<i>.' block index")
        keep = set(sorted(indices)[-spec.layers :])
        head = set(_head_names(model))
        chosen = {}
        for name, p in named.items():
            match = _LAYER_INDEX.search(name)
            if (match and int(match.group(1)) in keep) or name in head:
                chosen[name] = p
    if not chosen:
        raise ValueError(f"params={spec}: the model has no parameter in this set (LoRA adapters missing?)")
    return chosen


def _head_names(model: nn.Module) -> list[str]:
    """The head's parameter names: those of
    :meth:`~kernelft.text.models.TextClassifier.head_parameter_names` of the first module that has it
    (``model`` itself, or a classifier inside a wrapper such as task vectors' contrast model), with its
    path; for a model without one, the names under ``head.``."""
    for path, module in model.named_modules():
        own = getattr(module, "head_parameter_names", None)
        if own is not None:
            return [f"{path}.{name}" if path else name for name in own()]
    return [name for name, _ in model.named_parameters() if name.startswith("head.")]


def default_lora_targets(model: nn.Module) -> tuple[str, ...]:
    """peft's default LoRA target modules for the model's architecture (query and value projections:
    ``query``/``value`` for BERT and RoBERTa, ``q_proj``/``v_proj`` for Llama and GPT-Neo, ``c_attn`` for
    GPT-2); a ``ValueError`` when peft has none for it."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = model.backbone.config.model_type
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if not targets:
        raise ValueError(f"no default LoRA target modules for model type {model_type!r}: name them in the config")
    return tuple(targets)


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    target_modules: tuple[str, ...] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Inject LoRA adapters (peft) into ``model.backbone`` in place and return ``model``.

    ``W x + (alpha / rank) B A x`` with A random (seeded) and B = 0 (Hu et al. 2021), so at
    initialisation the LoRA kernel only sees ∇_B and the model's outputs are unchanged, whatever the
    dropout (checked: a RuntimeError if any B is not 0). ``target_modules=None`` (or empty) takes
    peft's default for the architecture (:func:`default_lora_targets`).
    """
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    targets = list(target_modules or default_lora_targets(model))
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model.backbone = inject_adapter_in_model(config, model.backbone)
    finally:
        torch.random.set_rng_state(state)
    adapters_b = [p for name, p in model.backbone.named_parameters() if "lora_B" in name]
    if not adapters_b or any(p.count_nonzero() for p in adapters_b):
        raise RuntimeError(f"LoRA adapters on {targets} must start with B = 0 (the outputs stay the pretrained "
                           f"model's); found {len(adapters_b)} B matrices, not all zero")
    return model
