"""Empirical NTK of a text classifier (Malladi et al., ICML 2023, https://arxiv.org/abs/2210.05643).

Start with :func:`empirical_ntk_fn`::

    from kernelft.entk import KernelKind, Implementation, ParamSet, empirical_ntk_fn
    ntk = empirical_ntk_fn(model, kind=KernelKind.SGD, params=ParamSet.ALL, max_memory_gb=4.0)
    K = ntk(batch1)            # (n, n) float64 for a binary task, (n, n, C, C) for C > 2 classes
    K12 = ntk(batch1, batch2)  # (n1, n2[, C, C])

Several kernels of the same examples from one gradient collection (:func:`empirical_kernels`)::

    out = empirical_kernels(model, {"train": train, "test": test},
                            [("sgd", "train", "train"), ("signgd", "test", "train")])
    out["sgd", "train", "train"]  # as ntk(train) of kind="sgd"

Large kernels as separate (Snakemake) jobs: :mod:`kernelft.entk.blocks` (``block_ranges``,
``block_pairs``, ``compute_block``, ``save_block``, ``merge_blocks``).

Modules: ``api`` (the factory and the Implementation enum), ``kinds`` (kernel formulas, output
reduction, blocked float64 contraction), ``params`` (parameter sets, LoRA), ``hooks_engine`` with
``capture`` and ``products`` (the fast engine), ``functorch_engine`` (vmap/jacrev engine),
``projection`` (CountSketch random projection), ``factored`` (LoGra's factored projection of
Linear weights), ``blocks`` (block jobs), ``naive`` (the per-example autograd loop, for tests and
benchmarks).
"""

from kernelft.entk.api import Implementation, KernelRequest, Projection, empirical_kernels, empirical_ntk_fn
from kernelft.entk.blocks import block_pairs, block_ranges, compute_block, merge_blocks, save_block
from kernelft.entk.kinds import KernelKind, check_finite
from kernelft.entk.naive import naive_kernel
from kernelft.entk.params import ParamSet, ParamSpec, add_lora, parse_params, select_parameters
from kernelft.kernels.outputs import relative_error

__all__ = [
    "Implementation",
    "Projection",
    "block_pairs",
    "block_ranges",
    "check_finite",
    "compute_block",
    "merge_blocks",
    "relative_error",
    "save_block",
    "KernelKind",
    "ParamSet",
    "ParamSpec",
    "add_lora",
    "empirical_kernels",
    "empirical_ntk_fn",
    "KernelRequest",
    "naive_kernel",
    "parse_params",
    "select_parameters",
]
