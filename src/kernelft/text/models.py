"""Pretrained language models (encoders and decoders) with the two heads of Malladi et al. (2023), ready for torch.func.

A :class:`TextClassifier` maps token ids to C class logits. It reads one token per example, the
*read position*, and puts a head on that token's last hidden state ``h``:

- ``head="linear"``: a fresh linear layer, ``logits = W h + b``. Encoders read the first token
  ([CLS] / <s>); decoders (causal LMs) the last real token, the only one that has seen the whole text.
- ``head="prompt"``: the input is wrapped in a template and the logits are the label words' scores
  as the language model predicts them (LM-BFF, Gao et al. 2021; Malladi et al. 2023, Sec. 3).
  Masked LMs read the ``{mask}`` token; causal LMs the last token of the prompt, whose next-token
  logits score the label words (each with its leading space: ``" great"``). The scores come from
  the model's own LM head, run through its own ``*ForMaskedLM`` / ``*ForCausalLM`` forward (so any
  family's head, tied or untied output embeddings, works). A model saved without an LM head (the
  offline default all-MiniLM-L6-v2 ships a bare ``BertModel``) scores them through its tied word
  embeddings: ``logit_w = h · E_w``.

Which family a checkpoint is comes from its config (:func:`model_family`): ``architectures``
ending in ``ForCausalLM``/``LMHeadModel`` are causal, ``ForMaskedLM`` masked, anything else a bare
encoder.

Attention always runs in "eager" mode. Encoders get the attention mask as a ready 4-D additive
padding mask: transformers 5.x derives their bidirectional masks with a data-dependent check that
breaks under ``vmap``. An encoder that reads a 4-D mask differently (DeBERTa-v2 builds its own from
the 2-D one) is detected once at load time and gets the 2-D mask. Decoders get the 2-D mask (they
build causal and sliding-window masks from it, vmap-safe), each row moved to right padding
(:meth:`TextClassifier.prepare`), and ``position_ids`` counted over real tokens, so left and right
padding give the same logits.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from functools import cache

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from kernelft.core.config import ConfigError, task_defaults
from kernelft.text.checkpoints import (
    Family,
    ModelNotFoundError,
    _not_found_message,
    family_of,
    resolve_model_path,
)

log = logging.getLogger(__name__)

def load_config(name: str) -> PretrainedConfig:
    """The Hugging Face config of model ``name`` (see :func:`resolve_model_path`)."""
    path = resolve_model_path(name)
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as err:
        raise ModelNotFoundError(_not_found_message(name, path, err)) from err


@cache
def model_family(name: str) -> Family:
    """The :class:`Family` of model ``name`` (reads its config only)."""
    config = load_config(name)
    return family_of(config.architectures, config.model_type)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of model ``name`` (see :func:`resolve_model_path`).

    A tokenizer without a padding token (GPT-2, Llama) pads with its end-of-sequence token: padded
    positions are masked out, so which id fills them does not matter.
    """
    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise ModelNotFoundError(_not_found_message(name, path, err)) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return tokenizer


class LinearHead(nn.Module):
    """``logits = W h + b`` on the read token's last hidden state (a fresh head, as in standard FT)."""

    def __init__(self, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class LabelWordHead(nn.Module):
    """The label words' columns of the LM head's vocabulary logits: ``logits[b, c] = scores[b, label_c]``."""

    def __init__(self, label_token_ids: list[int]) -> None:
        super().__init__()
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids, dtype=torch.long), persistent=False)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores[..., self.label_token_ids]


class EmbeddingReadout(nn.Module):
    """Label-word logits through the tied input embeddings, for a model without LM head:
    ``logits[b, c] = h_b · E[label_c]`` (E is the backbone's input embedding matrix, passed in)."""

    def __init__(self, label_token_ids: list[int]) -> None:
        super().__init__()
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids, dtype=torch.long), persistent=False)

    def forward(self, h: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return h @ word_embeddings[self.label_token_ids].T


def _gather(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H) at one position per example (B,) → (B, 1, H); no data-dependent shapes (vmap-safe)."""
    return hidden.gather(1, positions[:, None, None].expand(-1, 1, hidden.shape[-1]))


class TextClassifier(nn.Module):
    """Backbone plus head: ``forward(input_ids, attention_mask) -> logits`` of shape (B, C).

    ``backbone`` is the pretrained model: a bare encoder (``AutoModel``), or, for a prompt head with
    an LM head, the whole ``*ForMaskedLM`` / ``*ForCausalLM`` model. ``read`` says which token the
    head reads: ``"first"``, ``"mask"`` (the token ``mask_token_id``) or ``"last"`` (the last real
    token). ``causal`` marks a decoder (rows moved to right padding, position ids over real tokens);
    ``additive_mask`` passes the 4-D additive mask (else the 2-D 0/1 mask).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        read: str = "first",
        causal: bool = False,
        mask_token_id: int | None = None,
        additive_mask: bool = True,
    ) -> None:
        super().__init__()
        if read not in ("first", "mask", "last"):
            raise ValueError(f"read={read!r}: expected 'first', 'mask' or 'last'")
        if read == "mask" and mask_token_id is None:
            raise ValueError("read='mask' needs mask_token_id")
        self.backbone = backbone
        self.head = head
        self.read = read
        self.causal = causal
        self.mask_token_id = mask_token_id
        self.additive_mask = additive_mask
        base = backbone.base_model
        self._takes_positions = causal and "position_ids" in inspect.signature(base.forward).parameters

    @property
    def base(self) -> nn.Module:
        """The transformer without any LM head (``backbone.base_model``)."""
        return self.backbone.base_model

    @property
    def uses_lm_head(self) -> bool:
        return isinstance(self.head, LabelWordHead)

    def word_embeddings(self) -> torch.Tensor:
        return self.backbone.get_input_embeddings().weight

    def on_device(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The inputs on the model's device (a no-op when they are there already, e.g. on CPU)."""
        device = self.word_embeddings().device
        return tuple(tensor.to(device) for tensor in tensors)

    def read_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The token each example's head reads, (B,) int64 (argmax forms keep shapes static: vmap-safe)."""
        if self.read == "mask":
            return (input_ids == self.mask_token_id).to(torch.int64).argmax(dim=-1)
        if self.read == "last":  # the last 1 of the mask
            length = attention_mask.shape[-1]
            return length - 1 - attention_mask.flip(-1).to(torch.int64).argmax(dim=-1)
        return torch.zeros(input_ids.shape[0], dtype=torch.int64, device=input_ids.device)

    def model_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keyword arguments of the backbone's forward for a padded batch (see the module docstring)."""
        inputs = {"input_ids": input_ids}
        if self.additive_mask:
            dtype = self.word_embeddings().dtype
            inputs["attention_mask"] = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        else:
            inputs["attention_mask"] = attention_mask
        if self._takes_positions:
            inputs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return inputs

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on the model's device; for a decoder, each row moved to right padding.

        A left-padded row puts padding queries before any real token, which attend to nothing:
        eager attention turns them into NaN (Llama) that then leaks into every position. With the
        padding on the right no real token ever sees it, and position ids count real tokens, so the
        logits do not depend on the padding side. Batches from :func:`~kernelft.text.encoding.encode`
        are right-padded already (the gather is then the identity).
        """
        input_ids, attention_mask = self.on_device(input_ids, attention_mask)
        if not self.causal:
            return input_ids, attention_mask
        length = attention_mask.shape[-1]
        first = attention_mask.to(torch.int64).argmax(dim=-1, keepdim=True)  # first real token
        index = (torch.arange(length, device=first.device) + first) % length
        return input_ids.gather(-1, index), attention_mask.gather(-1, index)

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.base(**self.model_inputs(input_ids, attention_mask)).last_hidden_state

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, T, H) of the transformer (of the :meth:`prepare`-d batch)."""
        return self._hidden(*self.prepare(input_ids, attention_mask))

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """φ(x), the read token's last hidden state (the head's input), shape (B, H)."""
        input_ids, attention_mask = self.prepare(input_ids, attention_mask)
        return _gather(self._hidden(input_ids, attention_mask), self.read_positions(input_ids, attention_mask))[:, 0]

    def logits_and_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and φ(x) (B, H) from one pass."""
        input_ids, attention_mask = self.prepare(input_ids, attention_mask)
        positions = self.read_positions(input_ids, attention_mask)
        if not self.uses_lm_head:
            h = _gather(self._hidden(input_ids, attention_mask), positions)[:, 0]
            if isinstance(self.head, EmbeddingReadout):
                return self.head(h, self.word_embeddings()), h
            return self.head(h), h
        kept: list[torch.Tensor] = []

        def read_only(module, args, output):
            # The LM head then runs on the read token alone: (B, 1, H) instead of (B, T, H).
            output["last_hidden_state"] = _gather(output["last_hidden_state"], positions)
            kept.append(output["last_hidden_state"][:, 0])
            return output

        handle = self.base.register_forward_hook(read_only)
        try:
            scores = self.backbone(**self.model_inputs(input_ids, attention_mask)).logits[:, 0]
        finally:
            handle.remove()
        return self.head(scores), kept[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(input_ids, attention_mask)[0]

    def head_parameter_names(self) -> list[str]:
        """Names of the head's parameters: the linear head, or the LM head's own (its transform; a
        decoder matrix tied to the input embeddings belongs to the embeddings and is left out)."""
        base = {id(p) for p in self.base.parameters()}
        return [
            name
            for name, p in self.named_parameters()
            if name.startswith("head.") or (name.startswith("backbone.") and id(p) not in base)
        ]


@dataclass(frozen=True)
class HeadSpec:
    """What the head needs: ``kind`` ("prompt" or "linear"), class count, label words, template, and
    whether the model is causal (its prompt ends where the label word follows; see :mod:`.encoding`)."""

    kind: str
    num_classes: int
    label_words: tuple[str, ...] = ()
    template: str = field(default_factory=lambda: task_defaults()["template"])  # the schema's default
    causal: bool = False


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


def _no_pooler(config: PretrainedConfig) -> dict[str, bool]:
    """``add_pooling_layer=False`` for base models that take it (BERT, RoBERTa, ...): the heads read
    hidden states, so a pooler would only cost a forward and a random initialisation."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    model_class = MODEL_MAPPING[type(config)]
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class).parameters else {}


def _reads_4d_masks(base: nn.Module, pad_id: int) -> bool:
    """Whether an encoder gives the same hidden states for a padded batch with the 4-D additive
    mask as with the plain 2-D mask (its documented input); DeBERTa-v2, for one, does not."""
    probe = TextClassifier(base, nn.Identity(), additive_mask=True)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, pad_id, pad_id]]) % base.config.vocab_size
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        additive = probe.hidden_states(ids, mask)
        probe.additive_mask = False
        plain = probe.hidden_states(ids, mask)
    return bool(torch.allclose(additive * mask[..., None], plain * mask[..., None], atol=1e-4, rtol=1e-3))


def load_classifier(name: str, head: HeadSpec, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> TextClassifier:
    """Load the pretrained model (eager attention) and attach ``head``.

    A linear head is initialised from ``seed``; a prompt head has no new parameters. The model is in
    eval mode, in ``dtype``.
    """
    path = resolve_model_path(name)
    config = load_config(name)
    family = family_of(config.architectures, config.model_type)
    causal = family is Family.CAUSAL
    tokenizer = load_tokenizer(name)
    try:
        if head.kind == "prompt" and family is not Family.ENCODER:
            auto = AutoModelForCausalLM if causal else AutoModelForMaskedLM
            backbone = auto.from_pretrained(path, attn_implementation="eager")
        else:
            backbone = AutoModel.from_pretrained(path, attn_implementation="eager", **_no_pooler(config))
    except OSError as err:
        raise ModelNotFoundError(_not_found_message(name, path, err)) from err
    if head.kind == "prompt":
        ids = label_token_ids(tokenizer, head.label_words)
        module: nn.Module = EmbeddingReadout(ids) if family is Family.ENCODER else LabelWordHead(ids)
        if not causal and tokenizer.mask_token_id is None:
            raise ConfigError(f"model.name={name!r} has no mask token for the prompt head; use model.head: linear")
        read = "last" if causal else "mask"
    elif head.kind == "linear":
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        module = LinearHead(backbone.config.hidden_size, head.num_classes)
        torch.random.set_rng_state(generator_state)
        read = "last" if causal else "first"
    else:
        raise ValueError(f"head kind {head.kind!r}: expected 'prompt' or 'linear'")
    backbone.eval()
    # Causal LMs build their masks (causal, sliding windows) from the 2-D mask in a vmap-safe way.
    additive = not causal and _reads_4d_masks(backbone.base_model, tokenizer.pad_token_id)
    if not additive and not causal:
        log.info("%s reads 4-D attention masks its own way; passing the 2-D mask", type(backbone).__name__)
    model = TextClassifier(
        backbone, module, read=read, causal=causal, mask_token_id=tokenizer.mask_token_id, additive_mask=additive
    ).to(dtype)
    model.eval()
    # tests/workflow/test_paper.py reads this line to know which rules load a model (they request a GPU).
    kind = {Family.CAUSAL: "causal LM", Family.MASKED: "masked LM", Family.ENCODER: "bare encoder"}[family]
    log.info("loaded model %s: %s, %s head, %s", name, kind, head.kind, dtype)
    return model
