"""Real fine-tuning with the kernel sweep's step size and loss, on one of its draws, evaluated at a grid
of steps and at the RWY stopping time T̂ (rule earlystop_finetune; kernelft.earlystop.finetune)."""

import json
import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.core.threads import limit_threads
from kernelft.earlystop.finetune import finetune_config, mse_curve, stop_plan, stop_summary
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.runner import config_dict, finetune

log = logging.getLogger("kernelft.earlystop_finetune")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, wildcards, output = snakemake.params, snakemake.wildcards, snakemake.output
    n, rep = int(wildcards.n), int(wildcards.rep)
    plan = stop_plan(pd.read_csv(snakemake.input.points), n, rep)
    draws = np.load(snakemake.input.draws)
    train_rows, test_rows = draws[f"train_n{n}_rep{rep}"], draws["test"]
    seed = run_seed(params.seed, rep)
    seed_everything(seed)
    config = finetune_config(plan, params.earlystop, seed=seed)
    log.info("n=%d rep=%d: full-batch SGD, eta %.3g, T̂ = %d, %d steps", n, rep, plan.eta, plan.stop_rule, config.steps)
    model, tokenizer, head = build_model(params.model, params.task, seed=params.seed)
    pool = pd.read_parquet(snakemake.input.sample)
    train, train_labels = encode_frame(pool.iloc[train_rows], tokenizer, head, params.model["max_length"])
    test, test_labels = encode_frame(pool.iloc[test_rows], tokenizer, head, params.model["max_length"])
    result = finetune(model, train, train_labels, test, test_labels, config)
    targets = {name: draws[name][test_rows] for name in ("labels", "pseudo_truth")}
    curve = mse_curve(result.test_logits, targets).merge(
        result.curve.dropna(subset=["test_loss"])[["step", "train_loss", "test_accuracy"]], on="step")
    curve.insert(0, "task", wildcards.task)
    curve.insert(1, "n", n)
    curve.insert(2, "rep", rep)
    summary = {"task": wildcards.task, **stop_summary(curve, plan)}
    curve.to_csv(output.curve, index=False)
    with open(output.summary, "w") as handle:
        json.dump(summary, handle, indent=2)
    meta = {"model": params.model, "task": params.task, "earlystop": params.earlystop, "finetune": config_dict(config)}
    for path in (output.curve, output.summary):
        write_metadata(path, meta, seed=seed, inputs=list(snakemake.input))
    log.info("n=%d rep=%d: test MSE at T̂=%d %.4f, best %.4f at step %d", n, rep, plan.stop_rule,
             summary["test_mse_rule"], summary["test_mse_best"], summary["stop_best_finetune"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
