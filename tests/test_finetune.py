import numpy as np
import pytest
import torch

from kernelft.experiment import build_model, encode_frame
from kernelft.finetune import FinetuneConfig, NonFiniteLossError, finetune, kernel_output, loss_fn


def test_mse_loss_on_the_kernel_output():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    labels = torch.tensor([1, 0])
    # f = (2, -1), y = (+1, -1): ½ mean((1)², 0²) = 0.25
    assert kernel_output(logits).tolist() == [2.0, -1.0]
    assert loss_fn(logits, labels, "mse").item() == pytest.approx(0.25)


def test_unknown_method_names_the_key():
    with pytest.raises(ValueError, match="finetune.method"):
        FinetuneConfig(method="magic")


def _setup(folder, table, head="linear"):
    model_cfg = {"name": folder, "head": head, "max_length": 16}
    task_cfg = {"labels": ["neg", "pos"], "label_words": ["terrible", "great"]}
    model, tokenizer, spec = build_model(model_cfg, task_cfg, seed=0)
    batch, labels = encode_frame(table, tokenizer, spec, 16)
    return model, batch, labels


def test_finetune_learns_and_is_reproducible(tiny_bert_dir, toy_table):
    config = FinetuneConfig(optimizer="adam", lr=3e-3, steps=12, batch_size=8, eval_every=4, seed=5)
    curves = []
    for _ in range(2):
        model, batch, labels = _setup(tiny_bert_dir, toy_table)
        curves.append(finetune(model, batch, labels, batch, labels, config, show_progress=False))
    curve = curves[0]
    assert curve["step"].tolist() == list(range(13))
    evaluated = curve.dropna(subset=["test_loss"])
    assert evaluated["step"].tolist() == [0, 4, 8, 12]
    assert evaluated["train_loss"].iloc[-1] < evaluated["train_loss"].iloc[0]
    np.testing.assert_array_equal(curves[0]["test_loss"].to_numpy(), curves[1]["test_loss"].to_numpy())


def test_non_finite_loss_stops_with_a_clear_error(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    with torch.no_grad():
        model.head.linear.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 1"):
        finetune(model, batch, labels, batch, labels, FinetuneConfig(steps=2), show_progress=False)
