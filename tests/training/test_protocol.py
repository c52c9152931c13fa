"""The reference code's training protocol as runner options: LR schedule, clipping, dropout, best-dev
checkpoint, learning-rate grid on dev, probe-initialised head; defaults keep the plain runner."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from kernelft.core.config import ConfigError, load_schema
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.grid import finetune_grid
from kernelft.training.inference import predict
from kernelft.training.probe import fit_linear_probe
from kernelft.training.protocol import SCHEDULES, SELECTIONS, BestDev, dev_score, lr_factor
from kernelft.training.runner import INIT_HEADS, FinetuneConfig, finetune

PROTOCOL_DEFAULTS = dict(lr_schedule="constant", warmup_steps=0, max_grad_norm=None, dropout=False, select="last",
                         init_head="random")


def _setup(folder, table, head="linear"):
    model_cfg = {"name": folder, "head": head, "max_length": 16}
    task_cfg = {"labels": ["neg", "pos"], "label_words": ["terrible", "great"]}
    model, tokenizer, spec = build_model(model_cfg, task_cfg, seed=0)
    batch, labels = encode_frame(table, tokenizer, spec, 16)
    return model, batch, labels


def _run(model, batch, labels, dev=None, extra_eval=None, **keys):
    config = FinetuneConfig.from_section(keys)
    return finetune(model, batch, labels, batch, labels, config, show_progress=False, dev=dev, extra_eval=extra_eval)


def test_schema_enums_and_defaults_are_the_runners():
    keys = load_schema()["properties"]["finetune"]["properties"]
    assert tuple(keys["lr_schedule"]["enum"]) == SCHEDULES
    assert tuple(keys["select"]["enum"]) == SELECTIONS
    assert tuple(keys["init_head"]["enum"]) == INIT_HEADS
    assert {key: keys[key]["default"] for key in PROTOCOL_DEFAULTS} == PROTOCOL_DEFAULTS
    assert all(keys[key]["description"] for key in PROTOCOL_DEFAULTS)


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"lr_schedule": "cosine"}, r"finetune\.lr_schedule='cosine'"),
        ({"warmup_steps": -1}, r"finetune\.warmup_steps=-1"),
        ({"warmup_steps": 50, "steps": 40}, r"finetune\.warmup_steps=50: expected at most the 40 steps"),
        ({"max_grad_norm": 0}, r"finetune\.max_grad_norm=0"),
        ({"select": "best"}, r"finetune\.select='best'"),
        ({"init_head": "lp"}, r"finetune\.init_head='lp'"),
        ({"dropout": True, "method": "linearized"}, r"finetune\.dropout=true.*linearized"),
    ],
)
def test_protocol_keys_are_checked(keys, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig.from_section(keys)


def test_defaults_spelled_out_are_the_omitted_keys(tiny_bert_dir, toy_table):
    """Explicit defaults run the same loop as a section without the new keys, and the curve has exactly the
    columns of the plain runner."""
    runs = []
    for keys in ({}, PROTOCOL_DEFAULTS):
        model, batch, labels = _setup(tiny_bert_dir, toy_table)
        runs.append(_run(model, batch, labels, lr=1e-2, steps=4, batch_size=8, eval_every=2, **keys))
    pd.testing.assert_frame_equal(runs[0].curve, runs[1].curve, check_exact=True)
    np.testing.assert_array_equal(runs[0].final_logits, runs[1].final_logits)
    assert list(runs[0].curve.columns) == ["step", "batch_loss", "train_loss", "train_accuracy", "test_loss",
                                           "test_accuracy", "feature_change", "head_norm"]
    assert runs[0].selected_step == 4


def test_linear_schedule_is_transformers_and_decays_to_zero(tiny_bert_dir, toy_table):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    total, warmup = 10, 3
    for schedule in SCHEDULES:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        if schedule == "linear":
            hf = get_linear_schedule_with_warmup(optimizer, warmup, total)
        else:
            hf = get_constant_schedule_with_warmup(optimizer, warmup)
        expected = [hf.lr_lambdas[0](s) for s in range(total + 1)]
        assert [lr_factor(s, schedule, warmup, total) for s in range(total + 1)] == pytest.approx(expected, abs=0)
    assert lr_factor(total, "linear", warmup, total) == 0.0 and lr_factor(warmup, "linear", warmup, total) == 1.0
    assert lr_factor(total, "linear", 0, total) == 0.0 and lr_factor(0, "linear", 0, total) == 1.0

    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    lr, steps = 0.1, 6
    result = _run(model, batch, labels, optimizer="sgd", lr=lr, steps=steps, batch_size=8, eval_every=1,
                  lr_schedule="linear", warmup_steps=2)
    rates = result.curve["lr"].to_numpy()
    assert np.isnan(rates[0])  # step 0 makes no update
    # update k (1-based) uses lr·λ(k − 1): 0, lr/2, then lr·(6 − s)/4 for s = 2..5, the last lr/4; λ(6) = 0
    np.testing.assert_allclose(rates[1:], lr * np.array([0.0, 0.5, 1.0, 0.75, 0.5, 0.25]), rtol=1e-12)
    assert result.curve["train_loss"].iloc[1] == result.curve["train_loss"].iloc[0]  # the lr-0 update moved nothing
    assert result.curve["train_loss"].iloc[2] != result.curve["train_loss"].iloc[1]


def test_clipping_bounds_the_gradient_norm_of_every_step(tiny_bert_dir, toy_table):
    norms = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        clipped = _run(*_setup(tiny_bert_dir, toy_table), lr=1e-2, steps=4, batch_size=8, eval_every=4,
                       max_grad_norm=0.05)
        seen, norms[:] = list(norms), []
        plain = _run(*_setup(tiny_bert_dir, toy_table), lr=1e-2, steps=4, batch_size=8, eval_every=4)
    finally:
        handle.remove()
    before = clipped.curve["grad_norm"].to_numpy()[1:]
    assert len(seen) == 4 and max(seen) <= 0.05 * (1 + 1e-5)
    assert (before > 0.05).all()  # clipping was active: the raw norm exceeded the bound
    assert norms[0] == pytest.approx(before[0], rel=1e-5)  # same first minibatch, unclipped
    assert "grad_norm" not in plain.curve


def test_dropout_trains_differently_but_evaluates_deterministically(tiny_bert_dir, toy_table):
    """The tiny BERT has the default hidden and attention dropout 0.1. The masks come from torch's global
    generator seeded with the run's seed; the caller's global random state is left as it was."""
    runs = {}
    for caller_seed, (name, dropout) in enumerate((("off", False), ("on", True), ("on again", True))):
        model, batch, labels = _setup(tiny_bert_dir, toy_table)
        assert model.backbone.config.hidden_dropout_prob > 0
        torch.manual_seed(caller_seed)  # a different global state before each run
        runs[name] = _run(model, batch, labels, lr=1e-2, steps=4, batch_size=8, eval_every=2, dropout=dropout, seed=3)
        after = torch.rand(4)
        torch.manual_seed(caller_seed)
        np.testing.assert_array_equal(after, torch.rand(4))
        assert not model.training  # back in eval mode
        np.testing.assert_array_equal(runs[name].final_logits, predict(model, batch).double().numpy())
    off, on = runs["off"].curve, runs["on"].curve
    pd.testing.assert_series_equal(off.iloc[0], on.iloc[0])  # step 0: the same eval-mode model
    assert off["batch_loss"].iloc[1] != on["batch_loss"].iloc[1]  # the first forward drew dropout masks
    assert not np.allclose(runs["off"].final_logits, runs["on"].final_logits)
    pd.testing.assert_frame_equal(on, runs["on again"].curve, check_exact=True)  # seeded masks


def test_best_dev_state_bookkeeping():
    weight = torch.nn.Parameter(torch.zeros(2))
    for loss, kept in (("ce", 2), ("mse", 4)):
        best = BestDev([weight], loss)
        for step, accuracy, dev_loss in ((2, 0.75, 1.0), (4, 0.75, 0.5), (6, 0.5, 0.1)):
            with torch.no_grad():
                weight.fill_(step)
            best.offer(step, accuracy, dev_loss, {"test": np.full(1, step)})
        best.restore()
        assert best.step == kept and weight.tolist() == [kept, kept] and best.logits["test"][0] == kept
    assert dev_score(0.5, 0.2, "mse") > dev_score(0.5, 0.3, "mse") and dev_score(0.5, 0.2, "ce") == (0.5,)


@pytest.mark.parametrize(
    "method, head, lr, flip",
    [
        ("ft", "linear", 1e-2, False),  # dev accuracy 1.0 from step 8 on: the tie keeps step 8
        ("ft", "prompt", 3e-2, False),  # a large rate: the best dev step (10) is followed by a worse one
        ("lora", "linear", 1e-2, False),
        ("linearized", "prompt", 3e-3, True),  # flipped dev labels: best where the model has learnt least
    ],
)
def test_best_dev_returns_the_best_step_and_restores_its_model(tiny_bert_dir, toy_table, method, head, lr, flip):
    """Settings where the last step is not the best dev step (on this tiny model); the returned logits and
    the model are those of the best dev step."""
    model, batch, labels = _setup(tiny_bert_dir, toy_table, head=head)
    dev = (batch, 1 - labels if flip else labels)
    ood = ({k: v[:6] for k, v in batch.items()}, labels[:6])
    result = _run(model, batch, labels, dev=dev, extra_eval={"ood": ood}, method=method, lr=lr, steps=12,
                  batch_size=8, eval_every=2, lora_rank=2, select="best_dev")
    curve = result.curve
    assert curve["step"].tolist() == list(range(13))  # the curve keeps every step
    candidates = curve.dropna(subset=["dev_accuracy"]).query("step > 0")
    accuracy = candidates["dev_accuracy"].to_numpy()
    expected = int(candidates["step"].iloc[int(np.argmax(accuracy))])  # the first maximum
    assert result.selected_step == expected < 12
    np.testing.assert_array_equal(result.final_logits, result.test_logits[expected])
    assert not np.array_equal(result.final_logits, result.test_logits[12])
    np.testing.assert_array_equal(predict(result.model, batch).double().numpy(), result.test_logits[expected])
    np.testing.assert_array_equal(result.extra_logits["ood"], predict(result.model, ood[0]).double().numpy())
    assert "dev" not in result.extra_logits


def test_best_dev_needs_a_dev_set_and_dev_is_a_reserved_name(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    with pytest.raises(ValueError, match=r"finetune\.select='best_dev'.*dev="):
        _run(model, batch, labels, steps=1, select="best_dev")
    with pytest.raises(ValueError, match="clash"):
        _run(model, batch, labels, steps=1, dev=(batch, labels), extra_eval={"dev": (batch, labels)})


def test_grid_chooses_on_dev_never_on_test(tiny_bert_dir, toy_table):
    """dev = the training texts with flipped labels, test = with the true labels: dev accuracy is 1 − test
    accuracy, so the chosen rate is the one with the worst test accuracy."""
    _, batch, labels = _setup(tiny_bert_dir, toy_table)
    made = []

    def make_model():
        made.append(_setup(tiny_bert_dir, toy_table)[0])
        return made[-1]

    config = FinetuneConfig.from_section({"steps": 6, "batch_size": 8, "eval_every": 3})
    flipped = (batch, 1 - labels)
    result, grid = finetune_grid(make_model, batch, labels, batch, labels, config, [1e-2, 1e-6], dev=flipped)
    assert len(made) == 2 and list(grid.columns) == ["lr", "selected_step", "dev_accuracy", "dev_loss",
                                                     "test_accuracy", "chosen"]
    np.testing.assert_allclose(grid["dev_accuracy"], 1 - grid["test_accuracy"])
    assert grid["lr"][grid["chosen"]].tolist() == [1e-6]
    assert grid["test_accuracy"][grid["chosen"]].item() < grid["test_accuracy"].max()  # test would choose 1e-2
    assert result.model is made[1]
    assert (result.final_logits.argmax(1) == labels.numpy()).mean() == grid["test_accuracy"][grid["chosen"]].item()
    # two rates too small to change a prediction tie on dev accuracy: the earlier one is kept (with ce the
    # dev loss, here lower for the second, does not break ties)
    _, tied = finetune_grid(make_model, batch, labels, batch, labels, config, [1e-7, 1e-6], dev=(batch, labels))
    assert tied["dev_accuracy"].nunique() == 1 and tied["dev_loss"].iloc[1] < tied["dev_loss"].iloc[0]
    assert tied["chosen"].tolist() == [True, False]


def test_init_head_probe_starts_from_the_linear_probe(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    fit = fit_linear_probe(model, batch, labels, cv=False, C=1.0, seed=0)
    probe_head = model.head.linear.weight.detach().clone()
    start = _run(*_setup(tiny_bert_dir, toy_table), method="ft", init_head="probe", steps=0, lp_cv=False)
    fresh, _, _ = _setup(tiny_bert_dir, toy_table)
    assert not torch.equal(fresh.head.linear.weight, probe_head)
    assert start.linear_probe == fit and start.selected_step == 0
    np.testing.assert_array_equal(start.model.head.linear.weight.detach().numpy(), probe_head.numpy())
    # ft from the probe is lpft, and the linearized model expands around the probe head
    runs = {}
    for method in ("ft", "lpft", "linearized"):
        keys = dict(init_head="probe") if method != "lpft" else {}
        runs[method] = _run(*_setup(tiny_bert_dir, toy_table), method=method, lr=1e-2, steps=2, batch_size=8,
                            eval_every=2, lp_cv=False, **keys)
    pd.testing.assert_frame_equal(runs["ft"].curve, runs["lpft"].curve, check_exact=True)
    assert runs["linearized"].curve["head_norm"].iloc[0] == pytest.approx(fit.head_norm)
    assert runs["linearized"].linear_probe == fit


def test_init_head_probe_refuses_a_prompt_head(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table, head="prompt")
    with pytest.raises(ConfigError, match=r"finetune\.init_head='probe'.*model\.head: linear"):
        _run(model, batch, labels, steps=1, init_head="probe")
