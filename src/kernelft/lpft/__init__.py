"""LP-FT through the NTK (Tomihari & Sato, NeurIPS 2024; figures F9-F12): the stage's data and tables, the NTK
split, calibration, figures."""

from kernelft.training import METHODS as _RUNNER_METHODS

METHODS = tuple(method for method in _RUNNER_METHODS if method != "linearized")
"""The rows of Tomihari & Sato's tables: FT, LP, LP-FT, LoRA, LP-LoRA (every runner method but the
linearized model), in display order."""
