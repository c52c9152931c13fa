"""Relative error of the CountSketch-projected eNTK vs the projection dimension d on the model's
gradients (rule malladi_projection, figure F4)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.malladi.runs import projection_errors
from kernelft.text.experiment import build_model, encode_frame

log = logging.getLogger("kernelft.malladi_projection")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    section = params.projection
    model, tokenizer, head = build_model(params.model, params.task, seed=params.seed)
    frame = pd.read_parquet(snakemake.input.train).head(section["n"])
    batch, _ = encode_frame(frame, tokenizer, head, params.model["max_length"])
    errors = projection_errors(model, batch, section["dims"], seed=section["seed"],
                               max_memory_gb=params.max_memory_gb)
    errors.insert(0, "task", params.task["id"])
    errors.insert(1, "head", head.kind)
    errors.insert(2, "n", len(frame))
    errors.to_csv(snakemake.output.errors, index=False)
    write_metadata(snakemake.output.errors, {"model": params.model, "task": params.task, "projection": section},
                   seed=section["seed"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
