"""The training side: one fine-tuning runner (FT, LP, LP-FT, LoRA, LP-LoRA, linearized), the linearized model
and the linear probe.

The method names and the runner's protocol keys live here, once: the runner, the config checks, the stages
and the rules read them (importing this package loads no model code).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METHODS = ("ft", "lp", "lpft", "lora", "lplora", "linearized")
"""Methods of :func:`kernelft.training.runner.finetune` (see that module's docstring)."""

LINEAR_PROBE_METHODS = ("lp", "lpft", "lplora")
"""Methods that start from a linear-probe head; they need ``model.head: linear``."""

LORA_METHODS = ("lora", "lplora")
"""Methods that train LoRA adapters instead of the encoder weights."""

PROTOCOL_KEYS = ("lr_schedule", "warmup_steps", "max_grad_norm", "dropout", "select", "init_head")
"""The runner's protocol options (:mod:`kernelft.training.protocol`), added after the stages' first runs."""


def set_protocol_keys(section: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`PROTOCOL_KEYS` of a config section that differ from the `finetune` schema defaults, in that
    order: what goes into a rule's params, so that a run made before the keys existed stays up to date."""
    from kernelft.core.config import section_defaults

    defaults = section_defaults("finetune")
    return {key: section[key] for key in PROTOCOL_KEYS if key in section and section[key] != defaults[key]}
