"""Device choice (`model.device`: auto | cpu | cuda) without a GPU: torch.cuda is monkeypatched."""

from __future__ import annotations

import pytest
import torch

from kernelft.core.config import validate_schema
from kernelft.text.experiment import build_model, resolve_device


def test_auto_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit cpu wins


def test_auto_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_cuda_without_a_gpu_names_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="model.device='cuda'.*no CUDA device"):
        resolve_device("cuda")


def test_unknown_device_names_the_key():
    with pytest.raises(ValueError, match="model.device='tpu'"):
        resolve_device("tpu")


def test_schema_knows_the_device_key():
    validate_schema({"model": {"device": "cuda"}})
    with pytest.raises(Exception, match="model.device"):
        validate_schema({"model": {"device": "gpu"}})


def test_build_model_moves_the_model_to_the_resolved_device(monkeypatch, tiny_bert_dir):
    """The model goes where resolve_device says; recorded by a patched ``to`` (there is no GPU here)."""
    moved = []
    real_to = torch.nn.Module.to
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def record(self, *args, **kwargs):
        moved.append(args[0] if args else kwargs.get("device"))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", record)
    task = {"labels": ["negative", "positive"], "label_words": ["terrible", "great"]}
    model, _, _ = build_model({"name": tiny_bert_dir, "head": "prompt", "device": "auto"}, task, seed=0)
    assert torch.device("cpu") in moved
    assert next(model.parameters()).device == torch.device("cpu")


def test_inputs_follow_the_model(tiny_bert_dir):
    """TextClassifier moves its inputs to its own device, so callers may pass CPU batches."""
    task = {"labels": ["negative", "positive"], "label_words": ["terrible", "great"]}
    model, tokenizer, _ = build_model({"name": tiny_bert_dir, "head": "prompt", "device": "cpu"}, task, seed=0)
    batch = tokenizer(["great day [MASK]"], return_tensors="pt")
    logits = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (1, 2) and logits.device.type == "cpu"
