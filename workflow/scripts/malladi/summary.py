"""One row per run (task, head, k, seed) and FT optimizer: the accuracy of the optimizer's kernel
(K(SGD) for SGD, K(A-SignGD) for Adam) and of FT, the kernel change, linearized and LoRA-kernel numbers
(rule malladi_summary; the tables and figures F1–F4 read it)."""

import functools
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.malladi.runs import KERNEL_NAMES, OPTIMIZER_SOLVERS, run_record

log = logging.getLogger("kernelft.malladi_summary")


def _by_run(paths) -> dict[str, str]:
    """Files keyed by their run directory (…/<task>/<head>/k<k>-seed<seed>)."""
    return {str(Path(path).parent): path for path in paths}


OPTIMIZER_IN_NAME = re.compile(r"-(?P<optimizer>[a-z]+)(?:_kernel)?\.(?:csv|npz)$")
"""ft-<optimizer>.csv, ft-<optimizer>_kernel.npz, linearized-<optimizer>.csv (rules in malladi.smk)."""


def _by_run_and_optimizer(paths) -> dict[tuple[str, str], str]:
    """Per-optimizer files keyed by (run directory, optimizer)."""
    return {(str(Path(path).parent), OPTIMIZER_IN_NAME.search(path)["optimizer"]): path for path in paths}


@functools.cache  # a run's K(SGD) serves the rows of every optimizer
def _load(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, params = snakemake.input, snakemake.params.solver
    asymmetric = params["asymmetric_solver"]
    options = {"ridge": params["ridge"], "adjust_for_init": params["adjust_for_init"],
               "gamma": asymmetric["gamma"], "lam": asymmetric["lambda"]}
    kernels, signgd, lora = _by_run(inputs.kernels), _by_run(inputs.signgd_kernels), _by_run(inputs.lora)
    after, linearized = _by_run_and_optimizer(inputs.kernels_after), _by_run_and_optimizer(inputs.linearized)
    rows = []
    for (run, optimizer), curve_path in _by_run_and_optimizer(inputs.finetune).items():
        curve = pd.read_csv(curve_path)
        first = curve.iloc[0]
        sgd_kernel = _load(kernels[run])
        record = run_record(
            _load(signgd[run]) if optimizer == "adam" else sgd_kernel,
            curve,
            kernel_before=sgd_kernel,
            kernel_after=_load(after.get((run, optimizer))),
            linearized_curve=pd.read_csv(linearized[run, optimizer]) if (run, optimizer) in linearized else None,
            lora=_load(lora.get(run)) if optimizer == "sgd" else None,  # the LoRA kernel is a K(SGD)
            solver=OPTIMIZER_SOLVERS.get(optimizer, params["solver"]),
            **options,
        )
        rows.append({"task": first["task"], "head": first["head"], "k": int(first["k"]), "seed": int(first["seed"]),
                     "optimizer": optimizer, "kernel": KERNEL_NAMES[optimizer], **record})
        log.info("%s %s: %s", run, optimizer, {key: round(value, 4) for key, value in record.items()})
    runs = pd.DataFrame(rows)
    runs.to_csv(snakemake.output.runs, index=False)
    write_metadata(snakemake.output.runs, {"solver": params}, inputs=list(snakemake.input))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
