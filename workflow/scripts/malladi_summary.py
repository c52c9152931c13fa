"""One row per run (task, head, k, seed): kernel solver and FT accuracy, kernel change, linearized
and LoRA-kernel numbers (rule malladi_summary; the tables and figures F1–F4 read it)."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kernelft.kernel_fit import run_record
from kernelft.logs import setup_logging
from kernelft.provenance import write_metadata

log = logging.getLogger("kernelft.malladi_summary")


def _by_run(paths) -> dict[str, str]:
    """Files keyed by their run directory (…/<task>/<head>/k<k>-seed<seed>)."""
    return {str(Path(path).parent): path for path in paths}


def _load(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, solver = snakemake.input, snakemake.params.solver
    after, linearized, lora = _by_run(inputs.kernels_after), _by_run(inputs.linearized), _by_run(inputs.lora)
    rows = []
    for kernel_path, curve_path in zip(inputs.kernels, inputs.finetune):
        run = str(Path(kernel_path).parent)
        curve = pd.read_csv(curve_path)
        first = curve.iloc[0]
        record = run_record(
            _load(kernel_path),
            curve,
            kernel_after=_load(after.get(run)),
            linearized_curve=pd.read_csv(linearized[run]) if run in linearized else None,
            lora=_load(lora.get(run)),
            **solver,
        )
        rows.append({"task": first["task"], "head": first["head"], "k": int(first["k"]), "seed": int(first["seed"]),
                     **record})
        log.info("%s: %s", run, {key: round(value, 4) for key, value in record.items()})
    runs = pd.DataFrame(rows)
    runs.to_csv(snakemake.output.runs, index=False)
    write_metadata(snakemake.output.runs, {"solver": solver}, inputs=list(snakemake.input))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
