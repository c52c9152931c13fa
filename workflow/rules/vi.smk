# Variable importance by early-stopped warm starts (F8, F14), after Sun & Raskutti (AISTATS 2025).
# F8: one vi_simulate job per (rho, n) cell (they run in parallel), then vi_table gathers them and
# vi_figure draws F8. F14 (VI in full): interval coverage per rho, Shapley values, p = 100, a real
# data set and the symmetric-tree kernel's rate check, one job each, gathered with the F8 table by
# vi_full_table, drawn by vi_full_figure. Config: the `vi` section (F14: its coverage, shapley,
# highdim, real and tree_kernel subsections); seed: config["seed"].

add_figures("F8_vi_simulation", "F14_vi_full")
TARGETS.append(f"{RESULTS}/vi/F8_headline.json")
TARGETS.append(f"{RESULTS}/vi/F14_headline.json")


def vi_cell_paths():
    """Raw result files of every (rho, n) cell of config["vi"]: results/vi/raw/rho{rho:g}_n{n}.csv."""
    return [
        f"results/vi/raw/rho{float(rho):g}_n{int(n)}.csv"
        for rho in config["vi"]["rhos"]
        for n in config["vi"]["ns"]
    ]


rule vi_simulate:
    output:
        raw="results/vi/raw/rho{rho}_n{n}.csv",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_simulate/rho{rho}_n{n}.log",
    benchmark:
        "results/benchmarks/vi_simulate/rho{rho}_n{n}.tsv"
    wildcard_constraints:
        rho=r"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?",
        n=r"[0-9]+",
    threads: config["vi"].get("threads", 1)
    resources:
        mem_mb=1000,
        runtime=lambda wildcards: 2 + int(wildcards.n) * config["vi"]["repetitions"] // 500,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/simulation.py"


rule vi_table:
    input:
        raw=vi_cell_paths(),
    output:
        table=figure("F8_vi_simulation", caption="../report/vi/F8.rst", category="F8 variable importance")["table"],
        raw="results/vi/raw.csv",
        speedup="results/vi/speedup.csv",
        headline="results/vi/F8_headline.json",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_table/vi_table.log",
    benchmark:
        "results/benchmarks/vi_table/vi_table.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/simulation.py"


rule vi_figure:
    input:
        table="results/tables/F8_vi_simulation.csv",
    output:
        png=figure("F8_vi_simulation", caption="../report/vi/F8.rst", category="F8 variable importance")["png"],
        pdf="figures/F8_vi_simulation.pdf",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_figure/vi_figure.log",
    benchmark:
        "results/benchmarks/vi_figure/vi_figure.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/simulation.py"


# --- F14: VI in full ---------------------------------------------------------------------------


def vi_coverage_paths():
    """Coverage runs, one per rho of config["vi"]: results/vi/coverage/rho{rho:g}.csv."""
    return [f"results/vi/coverage/rho{float(rho):g}.csv" for rho in config["vi"]["rhos"]]


rule vi_coverage:
    output:
        raw="results/vi/coverage/rho{rho}.csv",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_coverage/rho{rho}.log",
    benchmark:
        "results/benchmarks/vi_coverage/rho{rho}.tsv"
    wildcard_constraints:
        rho=r"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?",
    threads: config["vi"].get("threads", 1)
    resources:
        mem_mb=1000,
        runtime=lambda wildcards: 2 + int(config["vi"]["coverage"]["n"]) * config["vi"]["coverage"]["repetitions"] // 2000,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_shapley:
    output:
        raw="results/vi/shapley.csv",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_shapley/vi_shapley.log",
    benchmark:
        "results/benchmarks/vi_shapley/vi_shapley.tsv"
    threads: config["vi"].get("threads", 1)
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_highdim:
    output:
        raw="results/vi/highdim.csv",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_highdim/vi_highdim.log",
    benchmark:
        "results/benchmarks/vi_highdim/vi_highdim.tsv"
    threads: config["vi"].get("threads", 1)
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_real:
    output:
        raw="results/vi/real.csv",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_real/vi_real.log",
    benchmark:
        "results/benchmarks/vi_real/vi_real.tsv"
    threads: config["vi"].get("threads", 1)
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_tree_kernel:
    output:
        points="results/vi/tree_kernel_points.csv",
        summary="results/vi/tree_kernel.csv",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_tree_kernel/vi_tree_kernel.log",
    benchmark:
        "results/benchmarks/vi_tree_kernel/vi_tree_kernel.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_full_table:
    input:
        f8="results/tables/F8_vi_simulation.csv",
        coverage=vi_coverage_paths(),
        shapley="results/vi/shapley.csv",
        highdim="results/vi/highdim.csv",
        real="results/vi/real.csv",
        tree_points="results/vi/tree_kernel_points.csv",
        tree_summary="results/vi/tree_kernel.csv",
    output:
        table=figure("F14_vi_full", caption="../report/vi/F14.rst", category="F14 variable importance in full")["table"],
        headline="results/vi/F14_headline.json",
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_full_table/vi_full_table.log",
    benchmark:
        "results/benchmarks/vi_full_table/vi_full_table.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_full_figure:
    input:
        table=figure("F14_vi_full")["table"],
    output:
        png=figure("F14_vi_full", caption="../report/vi/F14.rst", category="F14 variable importance in full")["png"],
        pdf=figure("F14_vi_full")["pdf"],
    params:
        vi=config["vi"],
        seed=config["seed"],
    log:
        "results/logs/vi_full_figure/vi_full_figure.log",
    benchmark:
        "results/benchmarks/vi_full_figure/vi_full_figure.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"
