"""The training side: one fine-tuning runner (FT, LP, LP-FT, LoRA, LP-LoRA, linearized), the linearized model
and the linear probe.

The method names live here, once: the runner, the config checks, the LP-FT stage and the rules read them
(importing this package loads no model code).
"""

METHODS = ("ft", "lp", "lpft", "lora", "lplora", "linearized")
"""Methods of :func:`kernelft.training.runner.finetune` (see that module's docstring)."""

LINEAR_PROBE_METHODS = ("lp", "lpft", "lplora")
"""Methods that start from a linear-probe head; they need ``model.head: linear``."""

LORA_METHODS = ("lora", "lplora")
"""Methods that train LoRA adapters instead of the encoder weights."""
