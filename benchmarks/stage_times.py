"""The per-rule time table of a finished run, as JSON (the README's "Stage times").

Reads Snakemake's benchmark files of a run (``results/benchmarks/`` by default) and prints one JSON line
per rule (``rule``, ``jobs``, ``wall_s``, ``cpu_s``, ``peak_rss_gb``; wall and CPU seconds summed over the
rule's jobs) and a last line with the totals (``rule: "total"``). Compare two runs by running it on both.

    python benchmarks/stage_times.py                    # the run in results/
    python benchmarks/stage_times.py /tmp/x/results/benchmarks
"""

from __future__ import annotations

import argparse
import json

from kernelft.core.runtimes import rule_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="?", default="results/benchmarks", help="a run's benchmark folder")
    args = parser.parse_args()
    table = rule_times(args.benchmarks)
    for row in table.to_dict("records"):
        print(json.dumps({key: round(value, 2) if isinstance(value, float) else value for key, value in row.items()}))
    totals = {"rule": "total", "jobs": int(table["jobs"].sum()), "wall_s": round(float(table["wall_s"].sum()), 2),
              "cpu_s": round(float(table["cpu_s"].sum()), 2),
              "peak_rss_gb": round(float(table["peak_rss_gb"].max()), 2)}
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
