"""Tiny randomly initialised text classifiers for the eNTK tests (no tokenizer, no download)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, RobertaConfig, RobertaModel

from kernelft.text.models import EmbeddingReadout, LabelWordHead, LinearHead, TextClassifier

VOCAB = 40
MASK_ID = 3
LABEL_IDS = (11, 17, 23)


def tiny_encoder(arch: str, mlm: bool = False):
    """A random BertModel / RobertaModel, or with ``mlm`` a BertForMaskedLM: hidden 32, 2 layers,
    2 heads, vocabulary of 40."""
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
        return BertForMaskedLM(config) if mlm else BertModel(config, add_pooling_layer=False)
    config = RobertaConfig(max_position_embeddings=34, pad_token_id=1, **common)
    return RobertaModel(config, add_pooling_layer=False)


def tiny_classifier(arch: str = "bert", head: str = "prompt", num_classes: int = 2, mlm: bool = False):
    """A float64 TextClassifier; ``head`` is "prompt" (label words read at the mask, through the MLM
    head with ``mlm``, else the tied embeddings) or "linear" (on the first token)."""
    backbone = tiny_encoder(arch, mlm)
    labels = list(LABEL_IDS[:num_classes])
    if head == "prompt":
        module = LabelWordHead(labels) if mlm else EmbeddingReadout(labels)
        read = "mask"
    else:
        torch.manual_seed(1)
        module, read = LinearHead(32, num_classes), "first"
    return TextClassifier(backbone, module, read=read, mask_token_id=MASK_ID).to(torch.float64).eval()


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



# --- tiny checkpoints of every family, saved as Hugging Face folders with a tokenizer -----------------

WORDS = (
    "great flight and a crew terrible delay seat the food was lost my bag service price views wifi staff "
    "what day it this is about okay football"
).split()
"""Every word of the test sentences, templates and label words (tests/conftest.py SENTENCES)."""

_COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
FAMILIES: dict[str, tuple[str, dict]] = {
    # family: (model_type, config overrides); masked LMs first, then causal LMs.
    "bert": ("bert", {}),
    "roberta": ("roberta", {}),
    "distilbert": ("distilbert", dict(dim=32, n_layers=2, n_heads=2, hidden_dim=48)),
    "deberta-v2": ("deberta-v2", dict(relative_attention=True, position_biased_input=False,
                                      pos_att_type=["p2c", "c2p"], max_relative_positions=16)),
    "albert": ("albert", dict(embedding_size=16)),
    "electra": ("electra", dict(embedding_size=16)),
    "mpnet": ("mpnet", {}),
    "gpt2": ("gpt2", dict(n_embd=32, n_layer=2, n_head=2)),
    "gpt-neo": ("gpt_neo", dict(num_layers=2, num_heads=2, attention_types=[[["global", "local"], 1]], window_size=4)),
    "llama": ("llama", dict(num_key_value_heads=1)),
}
CAUSAL = ("gpt2", "gpt-neo", "llama")


def _wordpiece_tokenizer(folder, words=WORDS):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *dict.fromkeys(w.lower() for w in words)]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    return tokenizer


def _byte_bpe_tokenizer(folder, words=WORDS):
    """A GPT-2-style byte-level BPE trained here; every word (with its leading space) is one token."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    corpus = [" " + word for word in (*words, "It", "This", ".", ",")] * 50
    bpe.train_from_iterator(corpus, vocab_size=600 + 12 * (len(words) - len(WORDS)), min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    _, merges_file = bpe.save_model(str(folder))
    merges = [tuple(line.split()) for line in open(merges_file).read().splitlines()[1:]]
    tokenizer = GPT2TokenizerFast(vocab=bpe.get_vocab(), merges=merges, unk_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_tiny_checkpoint(family: str, folder, extra_words: Sequence[str] = ()) -> str:
    """A tiny random checkpoint of ``family`` (hidden 32, 2 layers, 2 heads) with its LM head and a
    tokenizer trained or built here, saved to ``folder`` as a user's local model; returns the folder.
    ``extra_words`` join :data:`WORDS` as single tokens (e.g. a config's label words)."""
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    Path(folder).mkdir(parents=True, exist_ok=True)
    model_type, overrides = FAMILIES[family]
    causal = family in CAUSAL
    words = (*WORDS, *extra_words)
    tokenizer = _byte_bpe_tokenizer(folder, words) if causal else _wordpiece_tokenizer(folder, words)
    config = AutoConfig.for_model(
        model_type,
        **{**_COMMON, **overrides},
        vocab_size=len(tokenizer),
        max_position_embeddings=64,
        n_positions=64,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = (AutoModelForCausalLM if causal else AutoModelForMaskedLM).from_config(config)
    model.save_pretrained(folder)
    return str(folder)
