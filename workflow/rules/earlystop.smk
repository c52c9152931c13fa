# Early stopping through the eNTK (Sun & Raskutti 2026; issue #6, figures F5–F7): one eNTK of a pool
# of training examples per task; kernel GD with the RWY stopping rule, the oracle and a validation
# stop over sample sizes drawn from the pool (the test examples and the pseudo-truth's held-out
# examples drawn inside the pool too); the rate predicted from the pool spectrum; known-truth
# synthetic checks on the pool's eigenvectors.

from kernelft.core.config import ConfigError

add_figures("F5_entk_spectrum", "F6_rates", "F7_learning_curves")

EARLYSTOP_RULE_KEYS = ("stopping_convention", "r2_target", "pseudo_truth_size")
"""`earlystop` keys of the rule's conventions and the held-out pseudo-truth (issue #19), passed with
common.smk's EARLYSTOP_SWEEP_KEYS (kernelft.earlystop.study.rule_options)."""


def earlystop_pseudo_truth_size():
    """`earlystop.pseudo_truth_size` resolved (null = n_test), checked against the pool at parse time:
    the pool holds the test set, the held-out set and the largest draw."""
    section = config["earlystop"]
    size = section.get("pseudo_truth_size")
    size = section["n_test"] if size is None else size
    if max(section["sizes"]) + section["n_test"] + size > section["pool_size"]:
        raise ConfigError(
            f"config key earlystop.pool_size={section['pool_size']} is smaller than max(earlystop.sizes)="
            f"{max(section['sizes'])} + earlystop.n_test={section['n_test']} + earlystop.pseudo_truth_size={size} "
            "(null = n_test); raise pool_size or lower the others"
        )
    return size


EARLYSTOP_PSEUDO_TRUTH_SIZE = earlystop_pseudo_truth_size()


rule earlystop_entk:
    input:
        pool=rules.data_task.output.pool,
    output:
        kernel=earlystop_file("{task}", "pool_kernel.npz"),
        sample=earlystop_file("{task}", "pool_sample.parquet"),
    params:
        model=model_config("earlystop"),
        task=lambda wc: task_config(wc.task),
        entk={key: config["entk"][key] for key in ("kind", "max_memory_gb")},
        pool_size=config["earlystop"]["pool_size"],
        seed=config["seed"],
    log:
        log_file("earlystop_entk", "{task}"),
    benchmark:
        bench_file("earlystop_entk", "{task}")
    priority: 3  # the longest chains (F13, F6-F7) start first: the run must not end on them (#20)
    threads: 2
    resources:
        # measured: 7.0 GB peak RSS for a pool of 384 at max_memory_gb 4 (float64 model); the default pool
        # is 512 since the held-out pseudo-truth (#19), not measured yet
        mem_mb=memory_mb(config["entk"]["max_memory_gb"], extra_gb=4),
        runtime=60,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/entk.py"


rule earlystop_sweep:
    input:
        kernel=rules.earlystop_entk.output.kernel,
    output:
        points=earlystop_file("{task}", "points.csv"),
        curves=earlystop_file("{task}", "curves.csv"),
        rates=earlystop_file("{task}", "rates.csv"),
        spectrum=earlystop_file("{task}", "spectrum.csv"),
        draws=earlystop_file("{task}", "draws.npz"),
    params:
        earlystop={**earlystop_sweep_params(), **pick(config["earlystop"], *EARLYSTOP_RULE_KEYS)},
        spectrum=config["spectrum"],
        seed=config["seed"],
    log:
        log_file("earlystop_sweep", "{task}"),
    benchmark:
        bench_file("earlystop_sweep", "{task}")
    priority: 2  # after earlystop_entk, before the short jobs (#20)
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/sweep.py"


rule earlystop_finetune:
    input:
        sample=rules.earlystop_entk.output.sample,
        points=rules.earlystop_sweep.output.points,
        draws=rules.earlystop_sweep.output.draws,
    output:
        curve=earlystop_file("{task}", "finetune/n{n}-rep{rep}.csv"),
        summary=earlystop_file("{task}", "finetune/n{n}-rep{rep}.json"),
    params:
        model=model_config("earlystop"),
        task=lambda wc: task_config(wc.task),
        earlystop=earlystop_finetune_params(),
        seed=config["seed"],
    log:
        log_file("earlystop_finetune", "{task}/n{n}-rep{rep}"),
    benchmark:
        bench_file("earlystop_finetune", "{task}/n{n}-rep{rep}")
    priority: 2  # after earlystop_entk, before the short jobs (#20)
    threads: 1
    resources:
        mem_mb=lambda wc: 1500 + 20 * int(wc.n),
        runtime=60,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/finetune.py"


rule earlystop_synthetic:
    input:
        kernel=rules.earlystop_entk.output.kernel,
    output:
        points=earlystop_file("{task}", "synthetic_points.csv"),
        check=earlystop_file("{task}", "synthetic_check.csv"),
    params:
        earlystop={**earlystop_synthetic_params(), **pick(config["earlystop"], "stopping_convention")},
        spectrum=config["spectrum"],
    log:
        log_file("earlystop_synthetic", "{task}"),
    benchmark:
        bench_file("earlystop_synthetic", "{task}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/synthetic.py"


rule figure_rates:
    input:
        rates=earlystop_files("rates.csv"),
        points=earlystop_files("points.csv"),
        synthetic_check=earlystop_files("synthetic_check.csv"),
        synthetic_points=earlystop_files("synthetic_points.csv"),
        finetune=stopped_finetune_files("json"),
    output:
        **figure("F6_rates", caption="../report/earlystop/F6.rst", category="F5-F7 early stopping"),
        points=f"{RESULTS}/tables/F6_rates_points.csv",
    params:
        level=config["earlystop"]["level"],
        # for the caption (report/earlystop/F6.rst), which names the rule's conventions in use
        stopping_convention=config["earlystop"]["stopping_convention"],
        r2_target=config["earlystop"]["r2_target"],
        r2_methods=config["earlystop"]["r2_methods"],
        pseudo_truth_size=EARLYSTOP_PSEUDO_TRUTH_SIZE,
    log:
        log_file("figures", "F6_rates"),
    benchmark:
        bench_file("figures", "F6_rates")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/figure_rates.py"




rule figure_spectrum:
    input:
        spectra=spectrum_files(),
        pool_spectra=earlystop_files("spectrum.csv"),
    output:
        **figure("F5_entk_spectrum", caption="../report/earlystop/F5.rst", category="F5-F7 early stopping"),
    log:
        log_file("figures", "F5_entk_spectrum"),
    benchmark:
        bench_file("figures", "F5_entk_spectrum")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/figure_spectrum.py"


rule figure_learning_curves:
    input:
        curves=stopped_finetune_files("csv"),
        kernel_curves=earlystop_files("curves.csv"),
    output:
        **figure("F7_learning_curves", caption="../report/earlystop/F7.rst", category="F5-F7 early stopping"),
    params:
        # for the caption (report/earlystop/F7.rst): what the pseudo-truth is and which T-hat is marked
        pseudo_truth_size=EARLYSTOP_PSEUDO_TRUTH_SIZE,
        n_test=config["earlystop"]["n_test"],
        stopping_convention=config["earlystop"]["stopping_convention"],
        test_target=config["earlystop"]["test_targets"][0],
    log:
        log_file("figures", "F7_learning_curves"),
    benchmark:
        bench_file("figures", "F7_learning_curves")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/earlystop/figure_learning_curves.py"
