"""The eNTK of a file of texts: kernelft.entk.texts (read_texts, text_kernel), the `kernelft entk` command
and the eNTK block script, each checked against empirical_ntk_fn called directly."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from kernelft.cli import KINDS, main
from kernelft.entk import KernelKind, compute_block, empirical_ntk_fn
from kernelft.entk.texts import TextFileError, file_sha256, read_texts, text_kernel
from kernelft.text.experiment import build_model, encode_frame

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["great flight and a great crew", "terrible delay", "the food was great", "lost my bag , terrible service",
         "what a great day", "what a terrible day"]


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"sentence": TEXTS, "sentiment": ["pos", "neg", "pos", "neg", "pos", "neg"]})


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_json(path, orient="records")
    return path


def direct_kernel(model_dir: str, head: str, frame: pd.DataFrame, labels, label_words, template=None,
                  **entk) -> np.ndarray:
    """What the command should compute: build_model, encode_frame, empirical_ntk_fn(model)(batch)."""
    task = {"labels": labels, "label_words": label_words} | ({} if template is None else {"template": template})
    model, tokenizer, spec = build_model({"name": model_dir, "head": head, "device": "cpu"}, task, seed=0)
    batch, _ = encode_frame(frame.assign(label=0), tokenizer, spec, 48)
    return empirical_ntk_fn(model, show_progress=False, **entk)(batch)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_read_texts_reads_every_format(tmp_path, table, suffix):
    frame = read_texts(write(table, tmp_path / f"texts{suffix}"), "sentence", "sentiment", limit=4)
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].tolist() == TEXTS[:4] and frame["label"].tolist() == ["pos", "neg", "pos", "neg"]


def test_read_texts_errors_name_the_file_and_the_columns(tmp_path, table):
    with pytest.raises(TextFileError, match=r"texts\.txt: unknown suffix '\.txt'"):
        read_texts(write(table, tmp_path / "texts.csv").with_suffix(".txt"))
    with pytest.raises(TextFileError, match="no such file"):
        read_texts(tmp_path / "absent.csv")
    with pytest.raises(TextFileError, match=r"texts\.csv: no text column 'text'; columns found: sentence, sentiment"):
        read_texts(tmp_path / "texts.csv")
    with pytest.raises(TextFileError, match="no label column 'label'"):
        read_texts(tmp_path / "texts.csv", "sentence", "label")


def test_kinds_of_the_parser_are_the_kernel_kinds():
    assert KINDS == tuple(kind.value for kind in KernelKind)


@pytest.mark.parametrize(("head", "suffix"), [("prompt", ".csv"), ("linear", ".jsonl")])
def test_command_writes_the_kernel_of_empirical_ntk_fn(tmp_path, table, tiny_bert_dir, capsys, head, suffix):
    path = write(table, tmp_path / f"texts{suffix}")
    output = tmp_path / "out" / "K.npz"
    flags = ["--label-column", "sentiment", "--label-words", "terrible,great"] if head == "prompt" else []
    code = main(["entk", str(path), "--model", tiny_bert_dir, "--head", head, "--text-column", "sentence",
                 "--device", "cpu", "--quiet", "-o", str(output), *flags])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {output}: kernel (6, 6)" in capsys.readouterr().out
    with np.load(output) as data:
        kernel = data["kernel"]
        assert set(data.files) == ({"kernel", "labels"} if flags else {"kernel"})
        if flags:
            assert data["labels"].tolist() == table["sentiment"].tolist()
    classes = ["neg", "pos"] if flags else ["negative", "positive"]
    expected = direct_kernel(tiny_bert_dir, head, table.rename(columns={"sentence": "text"}), classes,
                             ["terrible", "great"])
    assert kernel.shape == (6, 6)
    np.testing.assert_allclose(kernel, expected, rtol=1e-10)
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-6)  # float32 gradients: symmetric to ~2e-7
    assert np.linalg.eigvalsh(kernel).min() > -1e-6 * np.abs(kernel).max()
    meta = json.loads(Path(f"{output}.meta.json").read_text())
    for key in ("model", "head", "kind", "params", "projection_dim", "n", "seconds", "kernelft_version",
                "input_sha256", "classes", "config", "packages"):
        assert key in meta
    assert (meta["model"], meta["head"], meta["kind"], meta["params"], meta["n"]) == (tiny_bert_dir, head, "sgd",
                                                                                      "all", 6)
    assert meta["input_sha256"] == file_sha256(path) and meta["classes"] == classes


def test_command_limit_kind_and_projection(tmp_path, table, tiny_bert_dir):
    path = write(table, tmp_path / "texts.parquet")
    output = tmp_path / "K.npz"
    assert main(["entk", str(path), "--model", tiny_bert_dir, "--text-column", "sentence", "--limit", "4",
                 "--kind", "asymmetric_signgd", "--params", "no_embeddings", "--projection-dim", "64",
                 "--device", "cpu", "--quiet", "-o", str(output)]) == 0
    with np.load(output) as data:
        kernel = data["kernel"]
    expected = direct_kernel(tiny_bert_dir, "prompt", table.head(4).rename(columns={"sentence": "text"}),
                             ["negative", "positive"], ["terrible", "great"], kind="asymmetric_signgd",
                             params="no_embeddings", projection_dim=64)
    assert kernel.shape == (2, 4, 4)
    np.testing.assert_allclose(kernel, expected, rtol=1e-10)


def test_command_on_a_decoder_with_the_factored_projection(tmp_path, table, tiny_checkpoint):
    """A causal LM folder, a template without {mask} (the label word follows the prompt), LoGra's factored
    projection: the kernel that empirical_ntk_fn gives."""
    folder = tiny_checkpoint("gpt-neo")
    path = write(table, tmp_path / "texts.csv")
    output = tmp_path / "K.npz"
    assert main(["entk", str(path), "--model", folder, "--text-column", "sentence", "--template", "{sentence} It was",
                 "--projection", "factored", "--projection-dim", "16", "--quiet", "--device", "cpu",
                 "-o", str(output)]) == 0
    with np.load(output) as data:
        kernel = data["kernel"]
    expected = direct_kernel(folder, "prompt", table.rename(columns={"sentence": "text"}), ["negative", "positive"],
                             ["terrible", "great"], template="{sentence} It was", projection="factored",
                             projection_dim=16)
    np.testing.assert_allclose(kernel, expected, rtol=1e-10)
    meta = json.loads(Path(f"{output}.meta.json").read_text())
    assert meta["projection"] == "factored" and meta["projection_dim"] == 16


def test_command_user_errors_exit_2(tmp_path, table, tiny_bert_dir, capsys):
    path = write(table, tmp_path / "texts.csv")
    base = ["--model", tiny_bert_dir, "--quiet", "-o", str(tmp_path / "K.npz")]
    assert main(["entk", str(path), *base]) == 2
    err = capsys.readouterr().err
    assert "no text column 'text'" in err and str(path) in err and "columns found: sentence, sentiment" in err
    assert main(["entk", str(path.with_suffix(".tsv")), *base]) == 2
    assert "texts.tsv: unknown suffix '.tsv'" in capsys.readouterr().err
    assert main(["entk", str(path), "--text-column", "sentence", "--labels", "a,b,c", *base]) == 2
    assert "--head prompt needs one --label-words word per class: 3 classes" in capsys.readouterr().err
    assert main(["entk", str(path), "--text-column", "sentence", "--label-words", "terrible,zebra", *base]) == 2
    assert "label word 'zebra'" in capsys.readouterr().err
    assert main(["entk", str(path), "--text-column", "sentence", "--params", "everything", *base]) == 2
    assert "params='everything'" in capsys.readouterr().err
    assert not (tmp_path / "K.npz").exists()


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("part", "i", "j"), [("train", 0, 0), ("train", 0, 1), ("test", 1, 0)])
def test_block_script_computes_the_block_of_empirical_ntk_fn(tmp_path, toy_table, tiny_bert_dir, part, i, j):
    """workflow/scripts/entk/block.py (now over text_kernel) gives the block it gave before: compute_block of
    empirical_ntk_fn on the whole encoded train (and test) set."""
    train, test = toy_table.head(6), toy_table.tail(5)
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    model_config, task_config = {"name": tiny_bert_dir, "head": "prompt", "max_length": 48, "device": "cpu"}, {
        "labels": ["negative", "positive"], "label_words": ["terrible", "great"]}
    entk = {"kind": "sgd", "block_size": 3, "max_memory_gb": 1.0}
    snakemake = SimpleNamespace(
        log=[str(tmp_path / "block.log")], threads=1,
        params=SimpleNamespace(model=model_config, task=task_config, entk=entk, test_rows=None, seed=0),
        wildcards=SimpleNamespace(part=part, i=str(i), j=str(j)),
        input=SimpleNamespace(train=str(tmp_path / "train.parquet"), test=str(tmp_path / "test.parquet")),
        output=SimpleNamespace(block=str(tmp_path / "block.npz")),
    )
    hook, handlers = sys.excepthook, logging.root.handlers[:]  # the script's setup_logging replaces both
    try:
        load_script(ROOT / "workflow/scripts/entk/block.py").main(snakemake)
    finally:
        sys.excepthook = hook
        logging.root.handlers[:] = handlers
    model, tokenizer, head = build_model(model_config, task_config, seed=0)
    train_batch, _ = encode_frame(train, tokenizer, head, 48)
    ntk = empirical_ntk_fn(model, kind="sgd", max_memory_gb=1.0)
    rows, cols = [(0, 3), (3, 6)][i], [(0, 3), (3, 6)][j]
    if part == "train":
        expected = compute_block(ntk, train_batch, rows, cols)
    else:
        rows = (3, 5)
        expected = compute_block(ntk, encode_frame(test, tokenizer, head, 48)[0], rows, cols, batch2=train_batch)
    with np.load(tmp_path / "block.npz") as data:
        np.testing.assert_array_equal(data["kernel"], expected)
        assert tuple(data["rows"]) == rows and tuple(data["cols"]) == cols
    np.testing.assert_array_equal(
        text_kernel(model_config, task_config, entk, *((train,) if part == "train" else (test, train)), seed=0,
                    rows=rows, cols=cols, show_progress=False),
        expected,
    )
