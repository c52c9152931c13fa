"""Shared fixtures: tiny randomly initialised models and small tables built in the test."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

# Never reach a model hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny problems run fastest on one thread: two torch or BLAS threads spin under load from other
    processes (an 800 x 800 eigh took 3 s threaded vs 0.12 s on one thread on a busy 2-core machine)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield


SENTENCES = [
    "great flight and a great crew",
    "terrible delay and a terrible seat",
    "the food was great",
    "lost my bag , terrible service",
    "great price , great views",
    "terrible wifi , terrible staff",
    "what a great day",
    "what a terrible day",
]


@pytest.fixture
def toy_table() -> pd.DataFrame:
    """A balanced binary task table (label 1 = contains 'great')."""
    texts = SENTENCES * 4
    return pd.DataFrame({"text": texts, "label": [int("great" in t) for t in texts], "topic": ""})


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> str:
    """A tiny random RobertaForMaskedLM with a byte-level BPE tokenizer trained here, saved as an HF folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        SENTENCES * 20, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    _, merges_file = bpe.save_model(str(folder))
    merges = [tuple(line.split()) for line in open(merges_file).read().splitlines()[1:]]
    tokenizer = RobertaTokenizerFast(vocab=bpe.get_vocab(), merges=merges)
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=tokenizer.vocab_size + 8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.architectures = ["RobertaForMaskedLM"]
    torch.manual_seed(0)
    RobertaForMaskedLM(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """A tiny random BertModel (no MLM head, like all-MiniLM-L6-v2) with a word-piece tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for s in SENTENCES for w in s.split()} | {"it", "was", "."})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config.architectures = ["BertModel"]
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole default target list with configs/smoke.yaml, run once per session in a temporary copy
    of the workflow (the workflow and report tests read it; tests that change files copy it first)."""
    from workflow_helpers import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    run = snakemake(workdir, "--configfile", "configs/smoke.yaml")
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(family)``: the folder of a tiny random checkpoint of that family (BERT ... Llama,
    tests/tiny_models.py FAMILIES) with its tokenizer, made once per session."""
    from tiny_models import save_tiny_checkpoint

    folders: dict[str, str] = {}

    def make(family: str) -> str:
        if family not in folders:
            folders[family] = save_tiny_checkpoint(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return folders[family]

    return make
