"""Task arithmetic on the text classifier (kernelft.taskvec.arithmetic): union head, contrast eNTK, grid, table,
configs."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from kernelft.core.config import ConfigError, check_config, load_config, load_schema, validate
from kernelft.entk import empirical_ntk_fn, select_parameters
from kernelft.taskvec.arithmetic import (
    Point,
    concatenate_batches,
    contrast_model,
    disentanglement_table,
    evaluate_grid,
    grid_points,
    linearized_outputs,
    task_contrasts,
    task_kernel,
    task_set,
    union_model,
    union_words,
)
from kernelft.taskvec.plots import plot_task_vectors
from kernelft.taskvec.tables import summary_table
from kernelft.text.data import load_tweet_topics

ROOT = Path(__file__).resolve().parents[2]
TASK_A = {"labels": ["negative", "positive"], "label_words": ["terrible", "great"],
          "template": "{sentence} It was {mask} ."}
TASK_B = {"labels": ["x", "y"], "label_words": ["day", "food"], "template": "{sentence} it {mask} ."}


def test_contrast_kernel_blocks_match_per_example_gradients(tiny_bert_dir, toy_table):
    """The stage's scalar kernel K[i, j] = ⟨∇f_{t(i)}(x_i), ∇f_{t(j)}(x_j)⟩ against explicit gradients."""
    model_config = {"name": tiny_bert_dir, "dtype": "float64"}
    model, tokenizer = union_model(model_config, [TASK_A, TASK_B], seed=0)
    words = union_words([TASK_A, TASK_B])
    assert words == ["terrible", "great", "day", "food"]
    sets = [task_set(name, toy_table.head(3), task, tokenizer, words, {**model_config, "max_length": 16})
            for name, task in (("a", TASK_A), ("b", TASK_B))]
    assert sets[1].columns == (2, 3)
    contrasts, contrast_of_task = task_contrasts([s.columns for s in sets], len(words))
    assert contrast_of_task == [0, 1]
    batch = concatenate_batches([s.batch for s in sets])
    scalar_model = contrast_model(model, contrasts.double())
    full = empirical_ntk_fn(scalar_model, params="no_embeddings", output="logits", show_progress=False)(batch)
    kernel = task_kernel(full, np.repeat(contrast_of_task, 3))
    # explicit: gradient of f_{t(i)} = logit_w1 − logit_w0 of the union head, per example
    params = select_parameters(model, "no_embeddings")
    rows = []
    for i in range(6):
        logits = model(batch["input_ids"][i : i + 1], batch["attention_mask"][i : i + 1])[0]
        w0, w1 = sets[i // 3].columns
        grads = torch.autograd.grad(logits[w1] - logits[w0], list(params.values()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    g = torch.stack(rows).double()
    np.testing.assert_allclose(kernel, (g @ g.T).numpy(), rtol=1e-8)
    # the contrast model's outputs are the tasks' logit differences
    with torch.no_grad():
        union_logits = model(**batch)
        np.testing.assert_allclose(scalar_model(**batch)[:, 1].numpy(),
                                   (union_logits[:, 3] - union_logits[:, 2]).numpy(), atol=1e-12)


def test_grid_points_and_linearized_grid_are_additive():
    points = grid_points(["a", "b"], [["a", "b"]], [0.5, 1.0], [1.0])
    assert [p.operation for p in points].count("single") == 4
    assert Point("added", "a+b", 0.5, (("a", 0.5), ("b", 0.5))) in points
    assert Point("negated", "a", 1.0, (("a", -1.0),)) in points
    rng = np.random.default_rng(0)
    base = {"a": rng.normal(size=(6, 2)), "b": rng.normal(size=(6, 2))}
    tangents = {t: {s: rng.normal(size=(6, 2)) for s in "ab"} for t in "ab"}
    outputs = linearized_outputs(base, tangents)
    negated = outputs(Point("negated", "a", 1.0, (("a", -1.0),)))
    np.testing.assert_allclose(negated["b"], base["b"] - tangents["a"]["b"])

    class Set:
        def __init__(self, name):
            self.name, self.labels = name, np.array([0, 1, 0, 1, 0, 1])

    accuracy, logits, correct = evaluate_grid(outputs, points, [Set("a"), Set("b")])
    assert len(accuracy) == 2 * len(points) and accuracy["accuracy"].between(0, 1).all()
    assert len(correct) == 6 * len(accuracy)
    means = correct.groupby(["operation", "vector", "lambda", "eval_task"], sort=False)["correct"].mean().to_numpy()
    np.testing.assert_allclose(means, accuracy["accuracy"])
    errors = disentanglement_table(logits, [["a", "b"]], [0.5, 1.0])
    assert len(errors) == 4 and (errors["disentanglement_error"] < 1e-12).all()


def test_summary_table_absolute_and_normalised_accuracy():
    rows = []
    for model, added in (("real", 0.6), ("linearized", 0.9)):
        for task in ("a", "b"):
            rows += [
                {"model": model, "operation": "zero_shot", "vector": np.nan, "lambda": 0.0, "eval_task": task,
                 "accuracy": 0.5},
                {"model": model, "operation": "single", "vector": task, "lambda": 1.0, "eval_task": task,
                 "accuracy": 0.8},
                {"model": model, "operation": "added", "vector": "a+b", "lambda": 1.0, "eval_task": task,
                 "accuracy": added},
                {"model": model, "operation": "added", "vector": "a+b", "lambda": 0.5, "eval_task": task,
                 "accuracy": 0.75},
                {"model": model, "operation": "negated", "vector": task, "lambda": 1.0, "eval_task": task,
                 "accuracy": 0.2},
                {"model": model, "operation": "negated", "vector": task, "lambda": 1.0,
                 "eval_task": "b" if task == "a" else "a", "accuracy": 0.45},
            ]
    diagnostics = pd.DataFrame([{"pair": "a+b", "cka": 0.3, "overlap": 0.2, "cka_same_inputs": 1.0,
                                 "cross_block": 0.5}])
    dis = pd.DataFrame([{"model": "real", "pair": "a+b", "lambda": 1.0, "eval_task": t, "disentanglement_error": 0.1}
                        for t in "ab"])
    table = summary_table(pd.DataFrame(rows), dis, diagnostics, [{"name": "similar", "tasks": ["a", "b"]}])
    real = table[(table["model"] == "real") & (table["task"] == "a")].iloc[0]
    assert real["normalised"] == pytest.approx(0.75) and real["interference"] == pytest.approx(0.2)
    assert real["best_lambda"] == 0.5 and real["added_best"] == 0.75
    assert real["negated"] == 0.2 and real["control_negated"] == 0.45 and real["disentanglement_error"] == 0.1
    lin = table[(table["model"] == "linearized") & (table["task"] == "b")].iloc[0]
    assert lin["best_lambda"] == 1.0 and np.isnan(lin["disentanglement_error"])
    figure = plot_task_vectors(pd.DataFrame(rows), table, [{"name": "similar", "tasks": ["a", "b"]}])
    assert len(figure.axes) == 9
    plt.close(figure)


def test_topic_task_labels_are_topics():
    table = load_tweet_topics(("airline", "sports"))
    assert set(table["topic"]) == {"airline", "sports"}
    assert (table["label"] == (table["topic"] == "sports").astype(int)).all()
    with pytest.raises(ValueError, match="topic task labels"):
        load_tweet_topics(("airline", "weather"))


def _config(path: str) -> dict:
    return load_config(ROOT / "config.yaml", ROOT / path)


@pytest.mark.parametrize("path", ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml"])
def test_configs_validate(path):
    config = _config(path)
    validate(config)
    assert "topic" in load_schema()["properties"]["tasks"]["additionalProperties"]["properties"]["kind"]["enum"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lambdas": [0.5]}, "taskvec.lambdas"),
        ({"kernel_size": 64}, "taskvec.kernel_size=64 exceeds taskvec.n_train"),
        ({"top_k": 16}, "taskvec.top_k=16"),
        ({"pairs": [{"name": "x", "tasks": ["tweets-topic2", "nope"]}]}, "taskvec.pairs.0.tasks names unknown"),
        ({"pairs": [{"name": "x", "tasks": ["tweets-sentiment3", "tweets-topic2"]}]}, "needs two labels"),
    ],
)
def test_bad_taskvec_config_names_the_key(change, message):
    config = _config("config.yaml")
    config["taskvec"] = {**config["taskvec"], **change}
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_contrast_model_keeps_the_lm_head_in_its_last_layers(tiny_roberta_dir):
    """The contrast model wraps the union model: ``last_layers`` still finds its LM head's transform."""
    model, _ = union_model({"name": tiny_roberta_dir}, [TASK_A, TASK_B], seed=0)
    wrapped = contrast_model(model, torch.eye(4)[:, :2])
    own = set(select_parameters(model, "last_layers:1"))
    assert any(".lm_head." in name for name in own)
    assert set(select_parameters(wrapped, "last_layers:1")) == {f"model.{name}" for name in own}
