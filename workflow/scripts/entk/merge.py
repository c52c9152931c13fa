"""Merge the eNTK blocks into K(train, train) and K(test, train), with f at θ0 (rule entk)."""

import logging

import numpy as np
import pandas as pd
import torch

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.entk import check_finite
from kernelft.entk.blocks import merge_blocks
from kernelft.text.experiment import build_model, encode_frame

log = logging.getLogger("kernelft.entk")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    params = snakemake.params
    kernel_train = merge_blocks(snakemake.input.train, params.entk["kind"], self_kernel=True)
    test_frame = pd.read_parquet(snakemake.input.test_sample).head(params.test_rows)
    if snakemake.input.test:
        kernel_test = merge_blocks(snakemake.input.test, params.entk["kind"], self_kernel=False)
    else:  # entk.test_size: 0, no test kernel: an empty one in the train kernel's layout
        kernel_test = np.zeros((0, *kernel_train.shape[1:]))
    for name, kernel in (("train x train", kernel_train), ("test x train", kernel_test)):
        check_finite(kernel, f"eNTK {name} of {snakemake.output.kernel}")
    model, tokenizer, head = build_model(params.model, params.task, seed=params.seed)
    max_length = params.model["max_length"]
    train, train_labels = encode_frame(pd.read_parquet(snakemake.input.train_sample), tokenizer, head, max_length)
    with torch.no_grad():
        f0_train = model(**train).cpu().numpy()
        test_labels, f0_test = torch.zeros(0, dtype=torch.long), np.zeros((0, f0_train.shape[1]))
        if len(test_frame):
            test, test_labels = encode_frame(test_frame, tokenizer, head, max_length)
            f0_test = model(**test).cpu().numpy()
    np.savez(
        snakemake.output.kernel,
        kernel_train=kernel_train,
        kernel_test=kernel_test,
        train_labels=train_labels.numpy(),
        test_labels=test_labels.numpy(),
        f0_train=f0_train,
        f0_test=f0_test,
    )
    write_metadata(
        snakemake.output.kernel,
        {"model": params.model, "task": params.task, "entk": params.entk},
        seed=int(snakemake.wildcards.seed),
        shape_train=list(kernel_train.shape),
        blocks=len(snakemake.input.train) + len(snakemake.input.test),
    )
    log.info("eNTK %s: train %s, test %s", snakemake.output.kernel, kernel_train.shape, kernel_test.shape)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
