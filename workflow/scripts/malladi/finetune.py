"""Fine-tune (or train the linearized model) on a k-shot sample, evaluated on the test subset
(rules malladi_finetune, malladi_linearized). With ``output.kernel_after``: K(SGD) of the
fine-tuned model on the training sample, for the kernel change of F3."""

import logging

import numpy as np

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.entk import check_finite, empirical_ntk_fn
from kernelft.malladi.runs import finetune_steps, run_data
from kernelft.text.experiment import build_model, limit_threads
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
    steps = finetune_steps(params.finetune, len(train_labels))
    config = FinetuneConfig.from_section(params.finetune, name="malladi.finetune", method=params.method, seed=seed,
                                         steps=steps, eval_every=steps)
    result = finetune(model, train, train_labels, test, test_labels, config, show_progress=False)
    curve = result.curve
    run = {"task": wildcards.task, "head": wildcards.head, "k": int(wildcards.k), "seed": int(wildcards.seed),
           "optimizer": config.optimizer, "method": config.method}
    for position, (name, value) in enumerate(run.items()):
        curve.insert(position, name, value)
    curve.to_csv(snakemake.output.curve, index=False)
    meta = {"model": params.model, "task": params.task, "malladi": params.malladi, "finetune": config_dict(config)}
    write_metadata(snakemake.output.curve, meta, seed=seed, trainable_parameters=result.num_trainable)
    kernel_after = getattr(snakemake.output, "kernel_after", None)
    if kernel_after:
        ntk = empirical_ntk_fn(model, kind="sgd", max_memory_gb=params.malladi["max_memory_gb"], show_progress=False)
        kernel = check_finite(ntk(train), f"eNTK of the fine-tuned model ({kernel_after})")
        np.savez(kernel_after, kernel_train=kernel, train_labels=train_labels.numpy())
        write_metadata(kernel_after, meta, seed=seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
