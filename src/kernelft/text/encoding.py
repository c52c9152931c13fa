"""Tokenisation of texts for the linear head and for prompt templates (LM-BFF style).

The prompt template is a string with ``{sentence}`` and ``{mask}``, e.g. SST-2's
``"{sentence} It was {mask} ."`` (Gao et al. 2021, used by Malladi et al. 2023). Only the sentence is
truncated, so the prompt's own words always survive ``max_length``.

- Masked LMs: the mask token stands where ``{mask}`` is; the tokenizer's special tokens wrap the
  sequence (``[CLS] … [SEP]``, ``<s> … </s>``).
- Causal LMs: the prompt ends where ``{mask}`` is, and the label word is the next token (read at the
  prompt's last token); what follows ``{mask}`` cannot change a next-token prediction and is dropped.
  A template without ``{mask}`` (``"{sentence} It was"``) means the label word follows it. Only
  the tokenizer's leading special tokens (a BOS) are kept: an appended EOS would stand between the
  prompt and the label word.

Rows are padded on the right; the models read the right token on either side (see
:mod:`kernelft.text.models`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from kernelft.text.checkpoints import check_template
from kernelft.text.models import HeadSpec


def _template_pieces(template: str, mask_token: str | None, causal: bool) -> tuple[str, str]:
    """(text before the sentence, text after it) of a prompt."""
    check_template(template, causal)
    if causal:
        template = template.split("{mask}")[0].rstrip()
    prefix, suffix = template.split("{sentence}")
    return prefix.replace("{mask}", mask_token or ""), suffix.replace("{mask}", mask_token or "")


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """(leading, trailing) special token ids the tokenizer adds around one sequence."""
    probe = "hello"
    plain = tokenizer(probe, add_special_tokens=False).input_ids
    wrapped = tokenizer(probe).input_ids
    for start in range(len(wrapped) - len(plain) + 1):
        if wrapped[start : start + len(plain)] == plain:
            return wrapped[:start], wrapped[start + len(plain) :]
    raise ValueError(f"{type(tokenizer).__name__}: cannot locate a text between its special tokens")


def encode(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, head: HeadSpec, max_length: int
) -> dict[str, torch.Tensor]:
    """Token ids and attention mask, padded to the longest example (at most ``max_length``).

    Returns ``{"input_ids": (N, T) int64, "attention_mask": (N, T) int64}``.
    """
    if head.kind == "prompt":
        prefix, suffix = _template_pieces(head.template, tokenizer.mask_token, head.causal)
        prefix_ids = tokenizer(prefix.rstrip(), add_special_tokens=False).input_ids if prefix.strip() else []
        suffix_ids = tokenizer(suffix, add_special_tokens=False).input_ids if suffix else []
        leading, trailing = special_tokens(tokenizer)
        if head.causal:
            trailing = []
        budget = max_length - (len(leading) + len(prefix_ids) + len(suffix_ids) + len(trailing))
        if budget < 1:
            raise ValueError(
                f"model.max_length={max_length} leaves no room for the sentence in template {head.template!r}"
            )
        sequences = [
            [*leading, *prefix_ids, *tokenizer(text, add_special_tokens=False).input_ids[:budget], *suffix_ids,
             *trailing]
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
    """The batch without the leading and trailing columns that are padding in every row.

    The outputs are unchanged (padding is masked out and the models read the right token on either
    side), and a batch of short texts costs what its longest text costs, not ``max_length``.
    """
    used = batch["attention_mask"].ne(0).any(dim=0).nonzero()
    start, stop = int(used.min()), int(used.max()) + 1
    return {key: value[:, start:stop] for key, value in batch.items()}
