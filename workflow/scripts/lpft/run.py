"""One LP-FT stage run: a method and a data seed, trained on the ID task with ID and OOD evaluation
(rule lpft_run). Writes the runner's curve and the final ID test, OOD test and ID validation logits."""

import logging
from dataclasses import asdict

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.lpft.stage import evaluation_sets, run_config
from kernelft.text.experiment import build_model, encode_frame, limit_threads
from kernelft.training.inference import predict
from kernelft.training.runner import config_dict, finetune

log = logging.getLogger("kernelft.lpft_run")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, inputs, wildcards = snakemake.params, snakemake.input, snakemake.wildcards
    data_seed = int(wildcards.seed)
    # As in the finetune rule: the run's seed mixes the global seed and the data seed.
    seed = run_seed(params.seed, data_seed)
    seed_everything(seed)
    config = run_config(params.lpft, wildcards.method, seed)
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    train = pd.read_parquet(inputs.train)
    sets = evaluation_sets(pd.read_parquet(inputs.test), pd.read_parquet(inputs.ood), pd.read_parquet(inputs.pool),
                           train, params.lpft["test_size"], params.lpft["val_size"], len(params.task["labels"]),
                           seed=params.seed, data_seed=data_seed)

    def encoded(frame):
        return encode_frame(frame, tokenizer, head, params.model["max_length"])

    (train_x, train_y), (test_x, test_y) = encoded(train), encoded(sets["test"])
    ood, val = encoded(sets["ood"]), encoded(sets["val"])
    result = finetune(model, train_x, train_y, test_x, test_y, config, extra_eval={"ood": ood})
    val_logits = predict(result.model, val[0]).double().cpu().numpy()

    curve = result.curve
    curve.insert(0, "method", config.method)
    curve.insert(1, "seed", data_seed)
    curve.to_csv(snakemake.output.curve, index=False)
    np.savez(snakemake.output.logits, logits=result.final_logits, labels=test_y.numpy(),
             ood_logits=result.extra_logits["ood"], ood_labels=ood[1].numpy(),
             val_logits=val_logits, val_labels=val[1].numpy())
    meta = {"model": params.model, "task": params.task, "lpft": params.lpft, "finetune": config_dict(config)}
    summary = {"trainable_parameters": result.num_trainable,
               "linear_probe": asdict(result.linear_probe) if result.linear_probe else None}
    for path in snakemake.output:
        write_metadata(path, meta, seed=seed, **summary)
    last = curve.dropna(subset=["test_accuracy"]).iloc[-1]
    log.info("%s seed %d: ID %.3f, OOD %.3f, feature change %.3f, head norm %.3f", config.method, data_seed,
             last["test_accuracy"], last["ood_accuracy"], last["feature_change"], last["head_norm"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
