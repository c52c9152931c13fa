"""Tokenisation of texts for the linear head and for prompt templates (LM-BFF style).

The prompt template is a string with ``{sentence}``, ``{mask}`` and, for sentence pairs, ``{sentence2}``,
e.g. SST-2's ``"{sentence} It was {mask} ."`` (Gao et al. 2021, used by Malladi et al. 2023; the slots and
their modifiers: :mod:`kernelft.text.templates`). Only the sentences are truncated, so the prompt's own
words always survive ``max_length``.

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

from kernelft.text.models import HeadSpec
from kernelft.text.templates import Slot, check_template, parse_template


def _prompt_parts(template: str, mask_token: str | None, causal: bool, pair: bool) -> list[str | tuple[Slot, bool]]:
    """The prompt as literal strings (``{mask}`` replaced by the mask token) and ``(sentence slot, leading
    space)`` pairs; a causal prompt ends where ``{mask}`` is."""
    check_template(template, causal, pair)
    parts = parse_template(template)
    if causal:
        cut = next((i for i, p in enumerate(parts) if isinstance(p, Slot) and p.name == "mask"), len(parts))
        parts = parts[:cut]
        if parts and isinstance(parts[-1], str):
            parts[-1] = parts[-1].rstrip()
    pieces: list[str | tuple[Slot, bool]] = []
    for part in parts:
        if isinstance(part, Slot) and part.name != "mask":
            space = bool(pieces) and isinstance(pieces[-1], str) and pieces[-1] != pieces[-1].rstrip()
            if space:
                pieces[-1] = pieces[-1].rstrip()
            pieces.append((part, space))
            continue
        text = (mask_token or "") if isinstance(part, Slot) else part
        if pieces and isinstance(pieces[-1], str):
            pieces[-1] += text
        else:
            pieces.append(text)
    return [piece for piece in pieces if not isinstance(piece, str) or piece.strip()]


def _truncate(sentences: list[list[int]], budget: int) -> list[list[int]]:
    """Token ids of a row's sentences cut to ``budget`` tokens in all, one token at a time from the
    longest (the first on ties): Hugging Face's ``longest_first`` truncation."""
    sentences = [list(ids) for ids in sentences]
    while sum(map(len, sentences)) > budget:
        longest = max(range(len(sentences)), key=lambda i: (len(sentences[i]), -i))
        sentences[longest].pop()
    return sentences


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
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    head: HeadSpec,
    max_length: int,
    texts2: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Token ids and attention mask, padded to the longest example (at most ``max_length``).

    ``texts2`` holds the second sentence of each example of a sentence-pair task (the template's
    ``{sentence2}``; the linear head takes the tokenizer's own pair encoding). Only the sentences are
    truncated, the longest first. Returns ``{"input_ids": (N, T) int64, "attention_mask": (N, T) int64}``.
    """
    columns = [list(texts)] if texts2 is None else [list(texts), list(texts2)]
    if head.kind == "prompt":
        pieces = _prompt_parts(head.template, tokenizer.mask_token, head.causal, pair=texts2 is not None)
        leading, trailing = special_tokens(tokenizer)
        if head.causal:
            trailing = []
        literal = {
            i: tokenizer(p, add_special_tokens=False).input_ids for i, p in enumerate(pieces) if isinstance(p, str)
        }
        slots = {i: p for i, p in enumerate(pieces) if not isinstance(p, str)}
        budget = max_length - (len(leading) + sum(map(len, literal.values())) + len(trailing))
        if budget < len(slots):
            raise ValueError(
                f"model.max_length={max_length} leaves no room for the sentence in template {head.template!r}"
            )
        column = {"sentence": 0, "sentence2": 1}
        encoded = {
            i: tokenizer([(" " if space else "") + slot.apply(text) for text in columns[column[slot.name]]],
                         add_special_tokens=False).input_ids
            for i, (slot, space) in slots.items()
        }
        sequences = []
        for row in range(len(columns[0])):
            cut = dict(zip(encoded, _truncate([encoded[i][row] for i in encoded], budget)))
            body = [token for i in range(len(pieces)) for token in (literal[i] if i in literal else cut[i])]
            sequences.append([*leading, *body, *trailing])
    else:
        sequences = tokenizer(*columns, truncation=True, max_length=max_length).input_ids
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
