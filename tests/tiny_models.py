"""Tiny randomly initialised text classifiers for the eNTK tests (no tokenizer, no download)."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, RobertaConfig, RobertaModel

from kernelft.text.models import LinearHead, PromptHead, TextClassifier

VOCAB = 40
MASK_ID = 3
LABEL_IDS = (11, 17, 23)


def tiny_encoder(arch: str, mlm: bool = False):
    """(encoder, mlm_head or None): hidden 32, 2 layers, 2 heads, vocabulary of 40."""
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    if arch == "bert":
        config = BertConfig(max_position_embeddings=32, **common)
        if mlm:
            full = BertForMaskedLM(config)
            return full.bert, full.cls
        return BertModel(config, add_pooling_layer=False), None
    config = RobertaConfig(max_position_embeddings=34, pad_token_id=1, **common)
    return RobertaModel(config, add_pooling_layer=False), None


def tiny_classifier(arch: str = "bert", head: str = "prompt", num_classes: int = 2, mlm: bool = False):
    """A float64 TextClassifier; ``head`` is "prompt" (label words read at the mask) or "linear"."""
    encoder, mlm_head = tiny_encoder(arch, mlm)
    if head == "prompt":
        module = PromptHead(list(LABEL_IDS[:num_classes]), MASK_ID, mlm_head)
    else:
        torch.manual_seed(1)
        module = LinearHead(32, num_classes)
    return TextClassifier(encoder, module).to(torch.float64).eval()


def tiny_batch(n: int, length: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids in [4, VOCAB) with one mask token per example and right padding on some rows."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (n, length), generator=generator)
    mask = torch.ones(n, length, dtype=torch.long)
    ids[:, 0] = 0
    for row in range(n):
        used = length - (row % 3)
        ids[row, 1 + row % (used - 2)] = MASK_ID
        ids[row, used:] = 1
        mask[row, used:] = 0
    return {"input_ids": ids, "attention_mask": mask}

