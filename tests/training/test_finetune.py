"""The one fine-tuning runner: every method on tiny models, tracked metrics, errors."""

import numpy as np
import pytest
import torch

from kernelft.core.config import ConfigError, check_method_head, section_defaults
from kernelft.kernels.outputs import kernel_output
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training import METHODS
from kernelft.training.inference import extract_features, predict
from kernelft.training.linearize import LinearizedModel
from kernelft.training.probe import fit_linear_probe
from kernelft.training.runner import FinetuneConfig, NonFiniteLossError, finetune, loss_fn


def test_mse_loss_on_the_kernel_output():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    labels = torch.tensor([1, 0])
    # f = (2, -1), y = (+1, -1): ½ mean((1)², 0²) = 0.25
    assert kernel_output(logits).tolist() == [2.0, -1.0]
    assert loss_fn(logits, labels, "mse").item() == pytest.approx(0.25)


def test_unknown_method_names_the_key():
    with pytest.raises(ValueError, match="finetune.method"):
        FinetuneConfig.from_section({"method": "magic"})
    with pytest.raises(ValueError, match="finetune.params"):
        FinetuneConfig.from_section({"params": "some"})


def test_config_errors_name_the_section_it_came_from():
    with pytest.raises(ConfigError, match=r"lpft\.steps=-1"):
        FinetuneConfig.from_section({"steps": -1}, name="lpft")
    with pytest.raises(ConfigError, match=r"lpft\.method='lpft' starts from a linear probe"):
        check_method_head("lpft", "prompt", key="lpft.method")


def test_keys_a_section_leaves_out_take_the_schema_defaults():
    config = FinetuneConfig.from_section({"lr": 0.5}, name="taskvec")
    defaults = section_defaults("finetune")
    assert config.lr == 0.5 and config.steps == defaults["steps"]
    assert config.lora_targets == tuple(defaults["lora_targets"])


def test_config_from_the_config_section():
    section = {"tasks": ["t"], "sample_sizes": [4], "method": "lora", "lora_targets": ["query"], "lr": 0.1}
    config = FinetuneConfig.from_section(section, seed=3)
    assert (config.method, config.lora_targets, config.lr, config.seed) == ("lora", ("query",), 0.1, 3)


def _setup(folder, table, head="linear", dtype=None):
    model_cfg = {"name": folder, "head": head, "max_length": 16}
    task_cfg = {"labels": ["neg", "pos"], "label_words": ["terrible", "great"]}
    model, tokenizer, spec = build_model(model_cfg, task_cfg, seed=0, dtype=dtype)
    batch, labels = encode_frame(table, tokenizer, spec, 16)
    return model, batch, labels


def _run(model, batch, labels, **kwargs):
    return finetune(model, batch, labels, batch, labels, FinetuneConfig.from_section(kwargs), show_progress=False)


def _snapshot(model, prefix=""):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}


def _changed(before, model):
    now = {n.replace(".base_layer.", "."): p for n, p in model.named_parameters()}  # peft wraps LoRA targets
    return {n for n, p in before.items() if not torch.equal(p, now[n].detach())}


def test_finetune_learns_and_is_reproducible(tiny_bert_dir, toy_table):
    config = dict(optimizer="adam", lr=3e-3, steps=12, batch_size=8, eval_every=4, seed=5)
    results = []
    for _ in range(2):
        model, batch, labels = _setup(tiny_bert_dir, toy_table)
        results.append(_run(model, batch, labels, **config))
    curve = results[0].curve
    assert curve["step"].tolist() == list(range(13))
    evaluated = curve.dropna(subset=["test_loss"])
    assert evaluated["step"].tolist() == [0, 4, 8, 12]
    assert evaluated["train_loss"].iloc[-1] < evaluated["train_loss"].iloc[0]
    losses = [r.curve["test_loss"].to_numpy() for r in results]
    np.testing.assert_array_equal(losses[0], losses[1])
    np.testing.assert_array_equal(results[0].final_logits, results[1].final_logits)
    assert evaluated["feature_change"].iloc[0] == 0.0 and evaluated["feature_change"].iloc[-1] > 0
    assert (evaluated["head_norm"] > 0).all()


def test_head_norm_and_feature_change_are_what_they_say(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    probe = {k: v[:5] for k, v in batch.items()}
    phi0 = extract_features(model, probe)
    norm0 = float(torch.linalg.norm(model.head.linear.weight))
    result = _run(model, batch, labels, lr=1e-2, steps=3, batch_size=8, eval_every=3, probe_size=5)
    first, last = result.curve.iloc[0], result.curve.iloc[-1]
    assert first["head_norm"] == pytest.approx(norm0, rel=1e-6)
    assert last["head_norm"] == pytest.approx(float(torch.linalg.norm(model.head.linear.weight)), rel=1e-6)
    expected = torch.linalg.norm(extract_features(model, probe) - phi0, dim=1).mean()
    assert last["feature_change"] == pytest.approx(float(expected), rel=1e-5)
    # the final test logits are the trained model's
    np.testing.assert_allclose(result.final_logits, predict(model, batch).numpy(), rtol=1e-5, atol=1e-6)
    assert result.num_trainable == sum(p.numel() for p in model.parameters())


def test_non_finite_loss_stops_with_a_clear_error(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    with torch.no_grad():
        model.head.linear.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 1"):
        _run(model, batch, labels, steps=2)


def test_linear_probe_is_sklearn_logistic_regression_in_the_head(tiny_bert_dir, toy_table):
    from sklearn.linear_model import LogisticRegression

    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    fit = fit_linear_probe(model, batch, labels, cv=False, C=0.5, seed=0)
    phi = extract_features(model, batch).double().numpy()
    reference = LogisticRegression(C=0.5, max_iter=5000, tol=1e-4).fit(phi, labels.numpy())
    probs = torch.softmax(predict(model, batch).double(), dim=-1).numpy()
    np.testing.assert_allclose(probs, reference.predict_proba(phi), atol=1e-5)
    assert fit.C == 0.5 and fit.cv_folds == 0
    assert fit.train_accuracy == pytest.approx(reference.score(phi, labels.numpy()))


def test_lp_leaves_the_backbone_untouched(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    encoder = _snapshot(model, "backbone.")
    head = _snapshot(model, "head.")
    result = _run(model, batch, labels, method="lp", steps=5, seed=1)
    assert not _changed(encoder, model)
    assert _changed(head, model) == set(head)
    row = result.curve.iloc[-1]
    assert result.curve["step"].tolist() == [0]
    assert row["feature_change"] == 0.0
    assert row["head_norm"] == pytest.approx(result.linear_probe.head_norm)
    assert row["train_accuracy"] == pytest.approx(result.linear_probe.train_accuracy)
    assert result.linear_probe.cv_folds == 5  # 16 examples per class
    assert result.trainable == () and all(p.requires_grad for p in model.parameters())


def test_lpft_starts_from_the_probe_and_then_moves_the_encoder(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    encoder = _snapshot(model, "backbone.")
    result = _run(model, batch, labels, method="lpft", lr=1e-2, steps=4, batch_size=8, eval_every=2,
                  lp_cv=False)
    assert result.curve["head_norm"].iloc[0] == pytest.approx(result.linear_probe.head_norm)
    assert _changed(encoder, model) and result.curve["feature_change"].iloc[-1] > 0


@pytest.mark.parametrize("method", ["lora", "lplora"])
def test_lora_trains_adapters_and_head_only(tiny_bert_dir, toy_table, method):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    start = predict(model, batch)
    base = _snapshot(model)
    result = _run(model, batch, labels, method=method, lr=1e-2, steps=4, batch_size=8, eval_every=2, lora_rank=2,
                  lp_cv=False)
    lora = [n for n in result.trainable if "lora_" in n]
    assert lora and all(".query." in n or ".value." in n for n in lora)
    assert set(result.trainable) - set(lora) == {"head.linear.weight", "head.linear.bias"}
    assert _changed(base, model) == {"head.linear.weight", "head.linear.bias"}  # base encoder weights frozen
    named = dict(model.named_parameters())
    assert any(named[n].abs().sum() > 0 for n in lora if "lora_B" in n)  # B starts at 0 and moved
    assert result.curve["feature_change"].iloc[-1] > 0
    if method == "lora":  # B = 0: step 0 is the pretrained model
        assert result.curve["test_loss"].iloc[0] == pytest.approx(float(loss_fn(start, labels, "ce")), rel=1e-6)
    assert result.num_trainable < sum(base[n].numel() for n in base if n.startswith("backbone."))


def test_lora_with_a_prompt_head_trains_adapters_only(tiny_roberta_dir, toy_table):
    model, batch, labels = _setup(tiny_roberta_dir, toy_table, head="prompt")
    base = _snapshot(model)
    result = _run(model, batch, labels, method="lora", lr=1e-2, steps=2, batch_size=8, eval_every=2)
    assert result.trainable and all("lora_" in n for n in result.trainable)
    assert not _changed(base, model)
    assert np.isnan(result.curve["head_norm"]).all()


def test_linearized_starts_at_the_model_and_leaves_it_untouched(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table, head="prompt")
    start = predict(model, batch).numpy()
    base = _snapshot(model)
    result = _run(model, batch, labels, method="linearized", lr=1e-2, steps=3, batch_size=8, eval_every=3)
    assert not _changed(base, model)
    assert isinstance(result.model, LinearizedModel)
    start_loss = float(loss_fn(torch.as_tensor(start), labels, "ce"))
    assert result.curve["test_loss"].iloc[0] == pytest.approx(start_loss, rel=1e-6)
    assert result.curve["train_loss"].iloc[-1] < result.curve["train_loss"].iloc[0]
    assert result.curve["feature_change"].iloc[0] == 0 and result.curve["feature_change"].iloc[-1] > 0
    assert not np.allclose(result.final_logits, start)
    untrained = finetune(model, batch, labels, batch, labels,
                         FinetuneConfig.from_section({"method": "linearized", "steps": 0}), show_progress=False)
    np.testing.assert_allclose(untrained.final_logits, start, rtol=1e-5, atol=1e-6)


def test_linearized_agrees_with_the_model_to_first_order(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table, dtype=torch.float64)
    batch = {k: v[:6] for k, v in batch.items()}
    linear = LinearizedModel(model, [n for n, _ in model.named_parameters()])
    generator = torch.Generator().manual_seed(0)
    direction = [torch.randn(d.shape, generator=generator, dtype=d.dtype) for d in linear.delta]
    f0 = model(**batch).detach()
    errors = []
    for eps in (1e-3, 5e-4):
        with torch.no_grad():
            for d, v in zip(linear.delta, direction):
                d.copy_(eps * v)
            moved = {n: p.detach() + d for (n, p), d in zip(model.named_parameters(), linear.delta)}
            real = torch.func.functional_call(model, moved, tuple(batch.values()))  # f(θ0 + εv)
            lin = linear(**batch)
        assert (lin - f0).abs().max() > 1e-6  # the step is visible at first order
        errors.append(float((lin - real).abs().max()))
    # the remainder is O(ε²): halving ε divides it by about 4
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.1)
    phi = linear.features(**batch) - model.features(**batch).detach()
    _, phi_joint = linear.logits_and_features(**batch)
    torch.testing.assert_close(phi_joint - model.features(**batch).detach(), phi)


def test_model_linear_in_its_parameters_trains_identically_when_linearized(tiny_bert_dir, toy_table):
    results = {}
    for method in ("ft", "linearized"):
        model, batch, labels = _setup(tiny_bert_dir, toy_table, dtype=torch.float64)
        results[method] = _run(model, batch, labels, method=method, params="head", optimizer="sgd", lr=0.05,
                               steps=6, batch_size=32, eval_every=2, seed=2)
    ft, lin = results["ft"], results["linearized"]
    assert ft.trainable == lin.trainable == ("head.linear.weight", "head.linear.bias")
    for column in ("batch_loss", "train_loss", "test_accuracy", "head_norm", "feature_change"):
        np.testing.assert_allclose(lin.curve[column], ft.curve[column], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lin.final_logits, ft.final_logits, rtol=1e-10)
    assert (ft.curve["feature_change"].dropna() == 0).all()  # a frozen encoder keeps φ
    assert ft.curve["train_loss"].iloc[-1] < ft.curve["train_loss"].iloc[0]


@pytest.mark.parametrize("method", ["lp", "lpft", "lplora"])
def test_linear_probe_methods_refuse_a_prompt_head(tiny_bert_dir, toy_table, method):
    model, batch, labels = _setup(tiny_bert_dir, toy_table, head="prompt")
    with pytest.raises(ValueError, match=r"finetune.method='%s'.*model.head" % method):
        _run(model, batch, labels, method=method, steps=1)


def test_other_invalid_combinations_are_clear(tiny_bert_dir, toy_table):
    check_method_head("lpft", "linear")
    for method in set(METHODS) - {"lp", "lpft", "lplora"}:
        check_method_head(method, "prompt")
    model, batch, labels = _setup(tiny_bert_dir, toy_table, head="prompt")
    with pytest.raises(ValueError, match="finetune.params='head'"):
        _run(model, batch, labels, params="head", steps=1)
    with pytest.raises(ValueError, match="finetune.lora_targets"):
        _run(model, batch, labels, method="lora", lora_targets=("no_such_module",), steps=1)
    with pytest.raises(ValueError, match="clash"):
        finetune(model, batch, labels, batch, labels, FinetuneConfig.from_section({"steps": 1}), show_progress=False,
                 extra_eval={"test": (batch, labels)})


def test_extra_evaluation_sets_get_their_columns_and_logits(tiny_bert_dir, toy_table):
    model, batch, labels = _setup(tiny_bert_dir, toy_table)
    ood = ({k: v[:6] for k, v in batch.items()}, 1 - labels[:6])
    config = FinetuneConfig.from_section({"steps": 2, "eval_every": 1, "lr": 1e-3})
    result = finetune(model, batch, labels, batch, labels, config, show_progress=False, extra_eval={"ood": ood})
    assert {"ood_loss", "ood_accuracy"} <= set(result.curve.columns)
    assert result.extra_logits["ood"].shape == (6, 2)
    np.testing.assert_allclose(result.curve["ood_accuracy"].iloc[-1],
                               (result.extra_logits["ood"].argmax(1) == ood[1].numpy()).mean())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["ft", "lpft", "lora"])
def test_every_method_trains_a_tiny_decoder(tiny_checkpoint, toy_table, family, method):
    """A causal LM through the same runner: FT and LoRA on the prompt head (next-token logits of the
    label words), LP-FT on the linear head of the last real token."""
    head = "linear" if method == "lpft" else "prompt"
    model, batch, labels = _setup(tiny_checkpoint(family), toy_table, head=head, dtype=torch.float64)
    assert model.causal
    base = _snapshot(model)
    result = _run(model, batch, labels, method=method, lr=1e-2, steps=4, batch_size=8, eval_every=2, lp_cv=False)
    losses = result.curve["train_loss"].dropna()
    assert len(losses) == 3 and np.isfinite(losses).all()
    changed = _changed(base, model)
    if method == "lora":
        assert result.trainable and all("lora_" in n for n in result.trainable) and not changed
    else:
        assert any(n.startswith("backbone.") for n in changed)
    if method == "lpft":
        assert result.curve["head_norm"].iloc[0] == pytest.approx(result.linear_probe.head_norm)
