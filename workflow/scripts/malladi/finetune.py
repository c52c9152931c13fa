"""Fine-tune (or train the linearized model) on a k-shot sample with each optimizer, evaluated on the test
subset (rules malladi_finetune, malladi_linearized: one job per run, every optimizer from the same loaded
model, ``params.finetune`` by optimizer). A learning-rate list is a grid selected on the k-shot dev set
(``input.dev``), as is ``select: best_dev``; the train and test sets are evaluated at the selected step only
(the pretrained accuracy comes from the kernel job's f0); each curve marks that step, and
``output.<optimizer>_predictions`` holds its test logits. With ``output.<optimizer>_kernel_after``: K(SGD)
of the fine-tuned model (at the selected step) on the training sample, for the kernel change of F3."""

import copy
import dataclasses
import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.core.threads import limit_threads
from kernelft.entk import check_finite, empirical_ntk_fn
from kernelft.malladi.runs import finetune_steps, run_data
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.grid import finetune_grid
from kernelft.training.runner import FinetuneConfig, config_dict, finetune

log = logging.getLogger("kernelft.malladi_finetune")


def run_optimizer(snakemake, optimizer: str, pretrained, data: dict, seed: int) -> None:
    """One optimizer's run from a copy of the ``pretrained`` model; its files are ``output.<optimizer>_*``."""
    params, wildcards, output = snakemake.params, snakemake.wildcards, snakemake.output
    section = params.finetune[optimizer]
    (train, train_labels), (test, test_labels), dev = data["train"], data["test"], data["dev"]
    seed_everything(seed)
    steps = finetune_steps(section, len(train_labels))
    eval_every = min(section.get("eval_every") or steps, max(steps, 1))
    rates = section["lr"]
    fixed = {key: value for key, value in section.items() if key not in ("lr", "eval_every")}
    config = FinetuneConfig.from_section(fixed, name="malladi.finetune", method=params.method, seed=seed,
                                         steps=steps, eval_every=eval_every, lr=rates[0] if isinstance(rates, list)
                                         else rates)
    grid = None
    if isinstance(rates, list):
        result, grid = finetune_grid(lambda: copy.deepcopy(pretrained), train, train_labels, test, test_labels,
                                     config, rates, dev, evaluate="selected")
        config = dataclasses.replace(config, lr=float(grid.loc[grid["chosen"], "lr"].iloc[0]))
    else:
        result = finetune(copy.deepcopy(pretrained), train, train_labels, test, test_labels, config,
                          show_progress=False, dev=dev, evaluate="selected")
    curve = result.curve
    run = {"task": wildcards.task, "head": wildcards.head, "k": int(wildcards.k), "seed": int(wildcards.seed),
           "optimizer": config.optimizer, "method": config.method}
    for position, (name, value) in enumerate(run.items()):
        curve.insert(position, name, value)
    curve["selected"] = curve["step"] == result.selected_step
    curve.to_csv(output[f"{optimizer}_curve"], index=False)
    meta = {"model": params.model, "task": params.task, "malladi": params.malladi, "finetune": config_dict(config)}
    extra = {} if grid is None else {"learning_rate_grid": grid.to_dict("records")}
    write_metadata(output[f"{optimizer}_curve"], meta, seed=seed, trainable_parameters=result.num_trainable,
                   selected_step=result.selected_step, **extra)
    # the selected step's test logits: per-example correctness for the paired intervals (kernelft.malladi.claims)
    predictions = output[f"{optimizer}_predictions"]
    np.savez(predictions, test_logits=result.final_logits, test_labels=test_labels.numpy())
    write_metadata(predictions, meta, seed=seed, selected_step=result.selected_step)
    kernel_after = getattr(output, f"{optimizer}_kernel_after", None)
    if kernel_after:
        ntk = empirical_ntk_fn(result.model, kind="sgd", max_memory_gb=params.malladi["max_memory_gb"],
                               show_progress=False)
        kernel = check_finite(ntk(train), f"eNTK of the fine-tuned model ({kernel_after})")
        np.savez(kernel_after, kernel_train=kernel, train_labels=train_labels.numpy())
        write_metadata(kernel_after, meta, seed=seed)


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, wildcards = snakemake.params, snakemake.wildcards
    seed = run_seed(params.seed, int(wildcards.seed))
    seed_everything(seed)
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    train, test = run_data(snakemake.input.train, snakemake.input.test, tokenizer, head, params.model["max_length"],
                           params.malladi["test_size"], params.seed)
    dev = None
    if hasattr(snakemake.input, "dev"):
        dev = encode_frame(pd.read_parquet(snakemake.input.dev), tokenizer, head, params.model["max_length"])
    for optimizer in params.finetune:
        run_optimizer(snakemake, optimizer, model, {"train": train, "test": test, "dev": dev}, seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
