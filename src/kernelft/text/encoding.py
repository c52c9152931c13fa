"""Tokenisation of texts for the linear head and for prompt templates (LM-BFF style).

The prompt template is a string with ``{sentence}`` and ``{mask}``, e.g. SST-2's
``"{sentence} It was {mask} ."`` (Gao et al. 2021, used by Malladi et al. 2023). Only the sentence is
truncated, so the mask token always survives ``max_length``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from kernelft.text.models import HeadSpec


def _template_pieces(template: str, mask_token: str) -> tuple[str, str]:
    if template.count("{sentence}") != 1 or template.count("{mask}") != 1:
        raise ValueError(f"template {template!r} must contain {{sentence}} and {{mask}} exactly once")
    prefix, suffix = template.split("{sentence}")
    return prefix.replace("{mask}", mask_token), suffix.replace("{mask}", mask_token)


def encode(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, head: HeadSpec, max_length: int
) -> dict[str, torch.Tensor]:
    """Token ids and attention mask, padded to the longest example (at most ``max_length``).

    Returns ``{"input_ids": (N, T) int64, "attention_mask": (N, T) int64}``.
    """
    if head.kind == "prompt":
        prefix, suffix = _template_pieces(head.template, tokenizer.mask_token)
        prefix_ids = tokenizer(prefix.rstrip(), add_special_tokens=False).input_ids if prefix.strip() else []
        suffix_ids = tokenizer(suffix, add_special_tokens=False).input_ids
        # Encoder layout: [CLS] ... [SEP] for BERT, <s> ... </s> for RoBERTa.
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        overhead = len(prefix_ids) + len(suffix_ids) + 2
        budget = max_length - overhead
        if budget < 1:
            raise ValueError(
                f"model.max_length={max_length} leaves no room for the sentence in template {head.template!r}"
            )
        sequences = [
            [cls, *prefix_ids, *tokenizer(text, add_special_tokens=False).input_ids[:budget], *suffix_ids, sep]
            for text in texts
        ]
    else:
        sequences = tokenizer(list(texts), truncation=True, max_length=max_length).input_ids
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def trim_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without the trailing columns that are padding in every row.

    Padding is on the right (see :func:`encode`), so the outputs are unchanged and a batch of short
    texts costs what its longest text costs, not ``max_length``.
    """
    length = int(batch["attention_mask"].sum(dim=1).max())
    return {key: value[:, :length] for key, value in batch.items()}
