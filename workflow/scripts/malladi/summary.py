"""One row per run (task, head, k, seed) and FT optimizer: the accuracy of the optimizer's kernel
(K(SGD) for SGD, K(A-SignGD) for Adam) and of FT, the kernel change, linearized and LoRA-kernel numbers;
each model's per-example correctness on the shared test subset; and the claims of F1–F4 decided from paired
intervals over those scores (rule malladi_summary; the tables and figures F1–F4 read them)."""

import functools
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from kernelft.core.claims import METHOD
from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.malladi.claims import claim_table
from kernelft.malladi.records import OPTIMIZER_SOLVERS, example_correctness, run_record
from kernelft.malladi.tables import KERNEL_NAMES

log = logging.getLogger("kernelft.malladi_summary")


def _by_run(paths) -> dict[str, str]:
    """Files keyed by their run directory (…/<task>/<head>/k<k>-seed<seed>)."""
    return {str(Path(path).parent): path for path in paths}


OPTIMIZER_IN_NAME = re.compile(r"-(?P<optimizer>[a-z]+)(?:_kernel|_test)?\.(?:csv|npz)$")
"""ft-<optimizer>.csv, ft-<optimizer>_kernel.npz, ft-<optimizer>_test.npz, linearized-<optimizer>.csv,
linearized-<optimizer>_test.npz (rules in malladi.smk)."""


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
    predictions = _by_run_and_optimizer(inputs.predictions)
    linearized_predictions = _by_run_and_optimizer(inputs.linearized_predictions)
    rows, scores = [], []
    for (run, optimizer), curve_path in _by_run_and_optimizer(inputs.finetune).items():
        curve = pd.read_csv(curve_path)
        first = curve.iloc[0]
        sgd_kernel = _load(kernels[run])
        kernel = _load(signgd[run]) if optimizer == "adam" else sgd_kernel
        fit = {"lora": _load(lora.get(run)) if optimizer == "sgd" else None,  # the LoRA kernel is a K(SGD)
               "solver": OPTIMIZER_SOLVERS.get(optimizer, params["solver"]), **options}
        record = run_record(
            kernel,
            curve,
            kernel_before=sgd_kernel,
            kernel_after=_load(after.get((run, optimizer))),
            linearized_curve=pd.read_csv(linearized[run, optimizer]) if (run, optimizer) in linearized else None,
            **fit,
        )
        keys = {"task": first["task"], "head": first["head"], "k": int(first["k"]), "seed": int(first["seed"]),
                "optimizer": optimizer}
        rows.append({**keys, "kernel": KERNEL_NAMES[optimizer], **record})
        correct = example_correctness(kernel, _load(predictions[run, optimizer]),
                                      _load(linearized_predictions.get((run, optimizer))), **fit)
        scores += [pd.DataFrame({**keys, "model": model, "example": np.arange(len(values)), "correct": values})
                   for model, values in correct.items()]
        log.info("%s %s: %s", run, optimizer, {key: round(value, 4) for key, value in record.items()})
    runs = pd.DataFrame(rows)
    runs.to_csv(snakemake.output.runs, index=False)
    write_metadata(snakemake.output.runs, {"solver": params}, inputs=list(snakemake.input))
    correct = pd.concat(scores, ignore_index=True)
    correct.to_parquet(snakemake.output.correct, index=False)
    write_metadata(snakemake.output.correct, {"solver": params}, inputs=list(snakemake.input))
    settings = snakemake.params.claims
    table = claim_table(correct, settings["margin"], settings["level"], settings["n_boot"], snakemake.params.seed)
    table.to_csv(snakemake.output.claims, index=False)
    write_metadata(snakemake.output.claims, {"solver": params, "claims": settings}, seed=snakemake.params.seed,
                   interval_method=METHOD, inputs=list(snakemake.input))
    for row in table.itertuples():
        log.info("%s %s k=%s %s %s: %s %.4f [%.4f, %.4f] -> %s", row.figure, row.task, row.k, row.head,
                 row.optimizer, row.statistic, row.estimate, row.low, row.high, row.verdict)

if __name__ == "__main__":
    main(snakemake)  # noqa: F821
