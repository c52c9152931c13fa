"""configs/paper.yaml's `lpft` section: the reference's protocol (tom4649/lp-ft_ntk
scripts/evaluation_scripts/*/run_amazon_roberta.sh) as the runner's configs."""

from pathlib import Path

from kernelft.core.config import load_config
from kernelft.lpft.stage import run_config

ROOT = Path(__file__).resolve().parents[2]


def test_paper_section_is_the_reference_protocol():
    config = load_config(ROOT / "config.yaml", ROOT / "configs" / "paper.yaml")
    section = config["lpft"]
    assert section["ood_tasks"] and section["id_task"] not in section["ood_tasks"]
    expected = {"ft": (1e-5, 16), "lpft": (1e-6, 8), "lora": (1e-3, 16), "lplora": (5e-4, 8)}  # run_amazon_roberta.sh
    for method, (lr, batch_size) in expected.items():
        run = run_config(section, method, seed=0)
        steps = -(-10 * section["n"] // batch_size)  # ceil(10 epochs x n / batch)
        assert (run.lr, run.batch_size, run.steps, len(run.eval_steps)) == (lr, batch_size, steps, 10)
        assert (run.lr_schedule, run.warmup_steps, run.max_grad_norm, run.dropout, run.select) == (
            "linear", 0, 1.0, True, "best_dev")
    assert section["lora_alpha"] == section["lora_rank"] == 8 and len(section["seeds"]) == 5
