"""One LP-FT stage run: a method and a data seed, trained on the ID task with ID and OOD evaluation
(rule lpft_run). Writes the runner's curve and the selected step's ID test, OOD test and ID validation
logits with the run's feature metrics (kernelft.lpft.runs)."""

import logging
from dataclasses import asdict

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.core.threads import limit_threads
from kernelft.lpft.runs import lpft_run
from kernelft.text.experiment import build_model
from kernelft.training.runner import config_dict

log = logging.getLogger("kernelft.lpft_run")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, inputs, wildcards = snakemake.params, snakemake.input, snakemake.wildcards
    data_seed = int(wildcards.seed)
    # As in the finetune rule: the run's seed mixes the global seed and the data seed.
    seed = run_seed(params.seed, data_seed)
    seed_everything(seed)
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    run = lpft_run(model, tokenizer, head, params.lpft, wildcards.method, train=pd.read_parquet(inputs.train),
                   id_test=pd.read_parquet(inputs.test), id_pool=pd.read_parquet(inputs.pool),
                   ood_tests=[pd.read_parquet(path) for path in inputs.ood], max_length=params.model["max_length"],
                   seed=seed, data_seed=data_seed, test_seed=params.seed)
    run.curve.to_csv(snakemake.output.curve, index=False)
    np.savez(snakemake.output.logits, **run.arrays)
    meta = {"model": params.model, "task": params.task, "lpft": params.lpft, "finetune": config_dict(run.config)}
    summary = {"trainable_parameters": run.result.num_trainable,
               "linear_probe": asdict(run.result.linear_probe) if run.result.linear_probe else None}
    for path in snakemake.output:
        write_metadata(path, meta, seed=seed, **summary)
    chosen = run.curve.loc[run.curve["step"] == run.result.selected_step].iloc[0]
    log.info("%s seed %d, step %d: ID %.3f, OOD %.3f, feature change %.3f, cos %.4f, head norm %.3f",
             run.config.method, data_seed, run.result.selected_step, chosen["test_accuracy"], chosen["ood_accuracy"],
             chosen["feature_change"], run.arrays["feature_cosine"], chosen["head_norm"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
