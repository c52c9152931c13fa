"""The eNTK of a model on a table of texts, from config slices: what ``kernelft entk`` and the eNTK
stage (``workflow/scripts/entk/block.py``) both call.

    kernel_fn = text_kernel_fn(model_config, task_config, entk_config, seed=0)
    K = kernel_fn(frame)                          # frame: a DataFrame with a ``text`` column
    K_ij = kernel_fn(test, train, rows=(0, 64), cols=(64, 128))  # one block of K(test, train)

``model_config``, ``task_config`` and ``entk_config`` are the slices the rules pass as
``params.model``, ``params.task`` and ``params.entk`` (keys left out take the schema's defaults;
``entk_config`` may add ``params``, ``projection_dim`` and ``projection``, passed to
:func:`~kernelft.entk.empirical_ntk_fn`). The model comes from
:func:`~kernelft.text.experiment.build_model`, the token ids from
:func:`~kernelft.text.experiment.encode_frame`; the output layout is that of ``empirical_ntk_fn``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from kernelft.core.config import section_defaults
from kernelft.entk.api import empirical_ntk_fn
from kernelft.entk.blocks import Range, compute_block
from kernelft.entk.params import add_lora
from kernelft.text.experiment import build_model, encode_frame
from kernelft.text.models import HeadSpec

TEXT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
"""File suffix → format of :func:`read_texts` (``.json`` holds JSON lines or one array of records)."""


class TextFileError(ValueError):
    """A table of texts that cannot be read as asked (suffix, missing file, missing column); the message
    names the file."""


def read_texts(
    path: str | Path, text_column: str = "text", label_column: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """The first ``limit`` rows (all when None) of a CSV, JSON-lines or Parquet file (format from the
    suffix, :data:`TEXT_FORMATS`) as a frame with column ``text`` and, with ``label_column``, ``label``
    (the values as found)."""
    path = Path(path)
    fmt = TEXT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TextFileError(f"{path}: unknown suffix {path.suffix!r}; expected one of {', '.join(TEXT_FORMATS)}")
    if not path.is_file():
        raise TextFileError(f"{path}: no such file")
    try:
        if fmt == "csv":
            raw = pd.read_csv(path, nrows=limit)
        elif fmt == "parquet":
            raw = pd.read_parquet(path)
        else:
            array = path.read_text().lstrip().startswith("[")
            raw = pd.read_json(path, lines=not array, nrows=None if array else limit)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise TextFileError(f"{path}: cannot be read as {fmt}: {err}") from None
    raw = raw if limit is None else raw.head(limit)
    wanted = {"text": text_column} | ({} if label_column is None else {"label": label_column})
    for role, column in wanted.items():
        if column not in raw.columns:
            found = ", ".join(map(str, raw.columns))
            raise TextFileError(f"{path}: no {role} column {column!r}; columns found: {found}")
    frame = pd.DataFrame({role: raw[column].to_numpy() for role, column in wanted.items()})
    bad = frame["text"].map(lambda text: not isinstance(text, str))
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        raise TextFileError(f"{path}: column {text_column!r} holds {len(rows)} missing or non-text values "
                            f"(first at row {rows[0]}); every row needs a text")
    if frame.empty:
        raise TextFileError(f"{path}: no rows")
    return frame


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the provenance of an input)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TextKernel:
    """The model, tokenizer and head of a config slice with its eNTK function (:func:`text_kernel_fn`)."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    head: HeadSpec
    ntk: Any
    max_length: int

    def encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """Token ids of the ``text`` column (padded to the frame's longest text, at most ``max_length``)."""
        # encode_frame also returns the labels as int64, which a kernel does not need: a frame may have none,
        # or names.
        batch, _ = encode_frame(frame[["text"]].assign(label=0), self.tokenizer, self.head, self.max_length)
        return batch

    def kernel(
        self,
        rows_batch: dict[str, torch.Tensor],
        cols_batch: dict[str, torch.Tensor] | None = None,
        rows: Range | None = None,
        cols: Range | None = None,
    ) -> np.ndarray:
        """K[rows, cols] of encoded batches: rows of ``rows_batch`` against cols of ``cols_batch``
        (default: ``rows_batch`` itself, computed by symmetry when ``rows == cols``); ranges default
        to all examples."""
        rows = rows or (0, len(rows_batch["input_ids"]))
        cols = cols or (0, len((rows_batch if cols_batch is None else cols_batch)["input_ids"]))
        return compute_block(self.ntk, rows_batch, rows, cols, batch2=cols_batch)

    def __call__(
        self,
        rows_frame: pd.DataFrame,
        cols_frame: pd.DataFrame | None = None,
        rows: Range | None = None,
        cols: Range | None = None,
    ) -> np.ndarray:
        """K[rows, cols] of two text tables (see :meth:`kernel`). Each frame is encoded whole before the
        ranges are taken, so a block pads as the full kernel does."""
        cols_batch = None if cols_frame is None else self.encode(cols_frame)
        return self.kernel(self.encode(rows_frame), cols_batch, rows, cols)


def text_kernel_fn(
    model_config: dict[str, Any],
    task_config: dict[str, Any],
    entk_config: dict[str, Any],
    *,
    seed: int,
    show_progress: bool = True,
) -> TextKernel:
    """Build the model of ``model_config`` with the head of ``task_config`` and its
    ``empirical_ntk_fn`` with ``entk_config``'s ``kind``, ``max_memory_gb`` and, when given, ``params``
    ``projection_dim`` and ``projection`` (a CountSketch or the factored projection, seeded by ``seed``,
    which also initialises a linear head).

    ``params: lora`` first injects LoRA adapters with B = 0 (:func:`~kernelft.entk.add_lora`; its
    defaults, or ``entk_config["lora"]``: ``rank``, ``alpha``, ``target_modules``), so f is that of the
    pretrained model and the kernel is that of LoRA fine-tuning."""
    model_config = {**section_defaults("model"), **model_config}
    entk_config = {**section_defaults("entk"), **entk_config}
    model, tokenizer, head = build_model(model_config, task_config, seed=seed)
    if str(entk_config.get("params")) == "lora":
        add_lora(model, seed=seed, **entk_config.get("lora", {}))
    options = {key: entk_config[key] for key in ("params", "projection_dim", "projection") if key in entk_config}
    ntk = empirical_ntk_fn(model, kind=entk_config["kind"], max_memory_gb=entk_config["max_memory_gb"], seed=seed,
                           show_progress=show_progress, **options)
    return TextKernel(model, tokenizer, head, ntk, model_config["max_length"])


def text_kernel(
    model_config: dict[str, Any],
    task_config: dict[str, Any],
    entk_config: dict[str, Any],
    rows_frame: pd.DataFrame,
    cols_frame: pd.DataFrame | None = None,
    *,
    seed: int,
    rows: Range | None = None,
    cols: Range | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """K[rows, cols] of ``rows_frame`` against ``cols_frame`` (default: itself) in one call:
    ``text_kernel_fn(...)(rows_frame, cols_frame, rows, cols)``."""
    kernel_fn = text_kernel_fn(model_config, task_config, entk_config, seed=seed, show_progress=show_progress)
    return kernel_fn(rows_frame, cols_frame, rows, cols)
