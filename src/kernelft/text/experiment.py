"""Glue from config sections to objects: the model and head for a task, encoded data sets.

Scripts of the workflow and the CLI call these so that every stage builds the same model and
the same token ids from the same config slice.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from kernelft.core.config import ConfigError, section_defaults, task_defaults
from kernelft.text.checkpoints import Family
from kernelft.text.encoding import encode
from kernelft.text.models import HeadSpec, TextClassifier, load_classifier, load_tokenizer, model_family
from kernelft.text.templates import check_template

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | None = "auto") -> torch.device:
    """The torch device of ``model.device``: ``auto`` (or None) = CUDA when ``torch.cuda.is_available()``,
    else CPU; ``cpu``; ``cuda`` (the current CUDA device; an error naming the key when there is none)."""
    name = name or "auto"
    if name not in DEVICES:
        raise ConfigError(f"model.device={name!r}: expected one of {DEVICES}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "model.device='cuda' but torch finds no CUDA device (torch.cuda.is_available() is False): "
            "install a CUDA build of torch, run on a GPU node, or set model.device: auto"
        )
    return torch.device(name)


def head_spec(model_config: dict[str, Any], task_config: dict[str, Any]) -> HeadSpec:
    """The head of ``model.head`` for the task ``tasks.<task>`` (keys left out take the schema's defaults).

    Reads the model's config to know whether it is causal (its prompt ends where the label word
    follows); a template the model cannot use is a :class:`ConfigError` naming the key.
    """
    model_config = {**section_defaults("model"), **model_config}
    task_config = {**task_defaults(), **task_config}
    causal = model_family(model_config["name"]) is Family.CAUSAL
    if model_config["head"] == "prompt":
        try:
            check_template(task_config["template"], causal, pair=bool(task_config["text_column2"]))
        except ValueError as err:
            name = model_config["name"]
            raise ConfigError(f"config key tasks.<task>.template with model.name={name!r}: {err}") from None
    return HeadSpec(
        kind=model_config["head"],
        num_classes=len(task_config["labels"]),
        label_words=tuple(task_config["label_words"]),
        template=task_config["template"],
        causal=causal,
    )


def build_model(
    model_config: dict[str, Any], task_config: dict[str, Any], seed: int, dtype: torch.dtype | None = None
) -> tuple[TextClassifier, PreTrainedTokenizerBase, HeadSpec]:
    """Model, tokenizer and head spec for a task; ``dtype`` overrides ``model.dtype``. The model is on
    the device of ``model.device`` (:func:`resolve_device`); it moves its inputs there itself."""
    head = head_spec(model_config, task_config)
    model_config = {**section_defaults("model"), **model_config}
    dtype = dtype or DTYPES[model_config["dtype"]]
    model = load_classifier(model_config["name"], head, seed=seed, dtype=dtype)
    model = model.to(resolve_device(model_config["device"]))
    return model, load_tokenizer(model_config["name"]), head


def encode_frame(
    frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, head: HeadSpec, max_length: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoded texts and int64 labels of a task table (columns ``text``, ``label`` and, for a sentence-pair
    task, ``text2``)."""
    texts2 = frame["text2"].tolist() if "text2" in frame else None
    batch = encode(frame["text"].tolist(), tokenizer, head, max_length, texts2=texts2)
    return batch, torch.tensor(frame["label"].to_numpy(), dtype=torch.long)  # a copy: pandas' array is read-only
