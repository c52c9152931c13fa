"""Fine-tune (or train the linearized model) on a k-shot sample, evaluated on the test subset
(rules malladi_finetune, malladi_linearized). A learning-rate list is a grid selected on the k-shot dev
set (``input.dev``), as is ``select: best_dev``; the train and test sets are evaluated at the selected step
only (the pretrained accuracy comes from the kernel job's f0); the curve marks that step, and
``output.predictions`` holds its test logits. With
``output.kernel_after``: K(SGD) of the fine-tuned model (at the selected step) on the training sample,
for the kernel change of F3."""

import copy
import dataclasses
import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.entk import check_finite, empirical_ntk_fn
from kernelft.malladi.runs import finetune_steps, run_data
from kernelft.text.experiment import build_model, encode_frame, limit_threads
from kernelft.training.grid import finetune_grid
from kernelft.training.runner import FinetuneConfig, config_dict, finetune

log = logging.getLogger("kernelft.malladi_finetune")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, wildcards = snakemake.params, snakemake.wildcards
    seed = run_seed(params.seed, int(wildcards.seed))
    seed_everything(seed)
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    (train, train_labels), (test, test_labels) = run_data(
        snakemake.input.train, snakemake.input.test, tokenizer, head, params.model["max_length"],
        params.malladi["test_size"], params.seed,
    )
    dev = None
    if hasattr(snakemake.input, "dev"):
        dev = encode_frame(pd.read_parquet(snakemake.input.dev), tokenizer, head, params.model["max_length"])
    steps = finetune_steps(params.finetune, len(train_labels))
    eval_every = min(params.finetune.get("eval_every") or steps, max(steps, 1))
    rates = params.finetune["lr"]
    section = {key: value for key, value in params.finetune.items() if key not in ("lr", "eval_every")}
    config = FinetuneConfig.from_section(section, name="malladi.finetune", method=params.method, seed=seed,
                                         steps=steps, eval_every=eval_every, lr=rates[0] if isinstance(rates, list)
                                         else rates)
    grid = None
    if isinstance(rates, list):
        initial = copy.deepcopy(model)
        result, grid = finetune_grid(lambda: copy.deepcopy(initial), train, train_labels, test, test_labels, config,
                                     rates, dev, evaluate="selected")
        model = result.model if params.method != "linearized" else model
        config = dataclasses.replace(config, lr=float(grid.loc[grid["chosen"], "lr"].iloc[0]))
    else:
        result = finetune(model, train, train_labels, test, test_labels, config, show_progress=False, dev=dev,
                          evaluate="selected")
    curve = result.curve
    run = {"task": wildcards.task, "head": wildcards.head, "k": int(wildcards.k), "seed": int(wildcards.seed),
           "optimizer": config.optimizer, "method": config.method}
    for position, (name, value) in enumerate(run.items()):
        curve.insert(position, name, value)
    curve["selected"] = curve["step"] == result.selected_step
    curve.to_csv(snakemake.output.curve, index=False)
    meta = {"model": params.model, "task": params.task, "malladi": params.malladi, "finetune": config_dict(config)}
    extra = {} if grid is None else {"learning_rate_grid": grid.to_dict("records")}
    write_metadata(snakemake.output.curve, meta, seed=seed, trainable_parameters=result.num_trainable,
                   selected_step=result.selected_step, **extra)
    # the selected step's test logits: per-example correctness for the paired intervals (kernelft.malladi.claims)
    np.savez(snakemake.output.predictions, test_logits=result.final_logits, test_labels=test_labels.numpy())
    write_metadata(snakemake.output.predictions, meta, seed=seed, selected_step=result.selected_step)
    kernel_after = getattr(snakemake.output, "kernel_after", None)
    if kernel_after:
        ntk = empirical_ntk_fn(model, kind="sgd", max_memory_gb=params.malladi["max_memory_gb"], show_progress=False)
        kernel = check_finite(ntk(train), f"eNTK of the fine-tuned model ({kernel_after})")
        np.savez(kernel_after, kernel_train=kernel, train_labels=train_labels.numpy())
        write_metadata(kernel_after, meta, seed=seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
