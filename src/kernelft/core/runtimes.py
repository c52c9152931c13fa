"""Where a finished run spent its time: Snakemake's per-job benchmark files summed per rule.

Every rule writes ``results/benchmarks/<rule>/<wildcards>.tsv`` (Snakemake's ``benchmark:``): one row
with ``s`` (wall seconds), ``max_rss`` (MB) and ``cpu_time`` (seconds) of the job. :func:`rule_times`
reads them into one table per rule: ``jobs``, ``wall_s`` (summed over the rule's jobs; they run in
parallel, so the sum is job-seconds, not the run's wall time), ``cpu_s`` and ``peak_rss_gb`` (of the
largest job). ``benchmarks/stage_times.py`` prints it as JSON, the per-stage table of the README.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_benchmarks(benchmarks: str | Path) -> pd.DataFrame:
    """One row per job: ``rule`` (the first folder under ``benchmarks``), ``job`` (the file's path under
    the rule's folder, without ``.tsv``), ``wall_s``, ``cpu_s`` and ``rss_gb``."""
    root = Path(benchmarks)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no benchmark folder (a finished run writes results/benchmarks/)")
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if table.empty:
            continue
        relative = path.relative_to(root)
        last = table.iloc[-1]  # `--benchmark-repeats` writes one row per repeat; the last is the one kept
        rows.append({"rule": relative.parts[0], "job": str(relative.with_suffix(""))[len(relative.parts[0]) + 1 :],
                     "wall_s": float(last["s"]), "cpu_s": float(last.get("cpu_time", float("nan"))),
                     "rss_gb": float(last["max_rss"]) / 1024})
    return pd.DataFrame(rows, columns=["rule", "job", "wall_s", "cpu_s", "rss_gb"])


def rule_times(benchmarks: str | Path) -> pd.DataFrame:
    """Per rule, largest ``wall_s`` first: ``jobs``, ``wall_s``, ``cpu_s`` (sums over its jobs) and
    ``peak_rss_gb`` (the largest job's)."""
    jobs = read_benchmarks(benchmarks)
    table = jobs.groupby("rule").agg(jobs=("job", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                     peak_rss_gb=("rss_gb", "max"))
    return table.sort_values("wall_s", ascending=False).reset_index()
