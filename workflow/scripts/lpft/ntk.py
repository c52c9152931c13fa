"""The eNTK at the start of FT split into pre-train-effective and FT-effective parts, for the heads
and parameter sets of FT, LP-FT, LoRA and LP-LoRA (rule lpft_ntk)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.core.threads import limit_threads
from kernelft.lpft.ntk import start_of_ft_decompositions
from kernelft.lpft.stage import run_config
from kernelft.text.experiment import build_model, encode_frame

log = logging.getLogger("kernelft.lpft_ntk")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    data_seed = int(snakemake.wildcards.seed)
    seed = run_seed(params.seed, data_seed)  # the runs' seed: the same random head, probe and LoRA init
    seed_everything(seed)
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    batch, labels = encode_frame(pd.read_parquet(snakemake.input.train), tokenizer, head, params.model["max_length"])
    config = run_config(params.lpft, "lplora", seed)
    table = start_of_ft_decompositions(model, batch, labels, config, params.lpft["kernel_size"], params.methods,
                                       max_memory_gb=params.max_memory_gb)
    table.insert(1, "seed", data_seed)
    table.to_csv(snakemake.output.ntk, index=False)
    write_metadata(snakemake.output.ntk, {"model": params.model, "task": params.task, "lpft": params.lpft}, seed=seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
