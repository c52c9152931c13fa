"""Fine-tune the pretrained model on one training sample and record its learning curve (rule finetune)."""

import logging

import pandas as pd
import torch

from kernelft.experiment import build_model, encode_frame, limit_threads
from kernelft.finetune import FinetuneConfig, config_dict, finetune, seed_everything
from kernelft.logs import setup_logging
from kernelft.provenance import write_metadata

log = logging.getLogger("kernelft.finetune")

RUNNER_KEYS = ("optimizer", "lr", "steps", "batch_size", "eval_every", "loss")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    # The run's seed mixes the global seed and the data seed, so seeds differ across samples.
    seed = params.seed * 1000 + int(snakemake.wildcards.seed)
    seed_everything(seed)
    config = FinetuneConfig(method=snakemake.wildcards.method, seed=seed,
                            **{key: params.finetune[key] for key in RUNNER_KEYS})
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    max_length = params.model["max_length"]
    train, train_labels = encode_frame(pd.read_parquet(snakemake.input.train), tokenizer, head, max_length)
    test, test_labels = encode_frame(pd.read_parquet(snakemake.input.test), tokenizer, head, max_length)
    curve = finetune(model, train, train_labels, test, test_labels, config)
    curve.insert(0, "n", int(snakemake.wildcards.n))
    curve.insert(1, "seed", int(snakemake.wildcards.seed))
    curve.insert(0, "task", snakemake.wildcards.task)
    curve.insert(1, "method", config.method)
    curve.to_csv(snakemake.output.curve, index=False)
    write_metadata(snakemake.output.curve, {"model": params.model, "task": params.task, "finetune": config_dict(config)},
                   seed=seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
