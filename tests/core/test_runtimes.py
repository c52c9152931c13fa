import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernelft.core.runtimes import read_benchmarks, rule_times

ROOT = Path(__file__).resolve().parents[2]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_bench(path: Path, seconds: float, rss_mb: float, cpu: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss_mb}\t0\t0\t0\t0\t0\t50\t{cpu}\n")


def test_rule_times_sum_jobs_and_keep_the_largest_rss(tmp_path):
    write_bench(tmp_path / "entk_block/t/n8-seed0/train-0-0.tsv", 2.0, 1024, 3.0)
    write_bench(tmp_path / "entk_block/t/n8-seed0/test-0-0.tsv", 4.5, 2048, 6.0)
    write_bench(tmp_path / "data_task/t.tsv", 1.0, 100, 0.5)
    jobs = read_benchmarks(tmp_path)
    assert sorted(jobs["job"]) == ["t", "t/n8-seed0/test-0-0", "t/n8-seed0/train-0-0"]
    table = rule_times(tmp_path).set_index("rule")
    assert list(table.index) == ["entk_block", "data_task"]  # largest wall time first
    assert table.loc["entk_block", "jobs"] == 2 and table.loc["entk_block", "wall_s"] == pytest.approx(6.5)
    assert table.loc["entk_block", "cpu_s"] == pytest.approx(9.0) and table.loc["entk_block", "peak_rss_gb"] == 2.0
    with pytest.raises(FileNotFoundError, match="no benchmark folder"):
        rule_times(tmp_path / "missing")


def test_stage_times_script_prints_json_lines_and_the_total(tmp_path):
    write_bench(tmp_path / "lpft_run/ft/seed0.tsv", 10.0, 512, 12.0)
    write_bench(tmp_path / "lpft_run/lp/seed0.tsv", 5.0, 256, 4.0)
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/stage_times.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines[0] == {"rule": "lpft_run", "jobs": 2, "wall_s": 15.0, "cpu_s": 16.0, "peak_rss_gb": 0.5}
    assert lines[-1]["rule"] == "total" and lines[-1]["jobs"] == 2
