# Variable importance by early-stopped warm starts (F8, F14), after Sun & Raskutti (AISTATS 2025).
# F8: one vi_simulate job per (rho, n) cell (they run in parallel), then vi_table gathers them and
# vi_figure draws F8. F14 (VI in full): interval coverage per rho, Shapley values, p = 100, a real
# data set and the symmetric-tree kernel's rate check, one job each, gathered with the F8 table by
# vi_full_table, drawn by vi_full_figure. Config: the `vi` section (F14: its coverage, shapley,
# highdim, real and tree_kernel subsections); seed: config["seed"].

add_figures("F8_vi_simulation", "F14_vi_full")
TARGETS.extend([f"{VI}/F8_headline.json", f"{VI}/F14_headline.json"])


rule vi_simulate:
    output:
        raw=f"{VI}/raw/rho{{rho}}_n{{n}}.csv",
    params:
        vi=vi_fit_params("repetitions"),
        seed=config["seed"],
    log:
        log_file("vi_simulate", "rho{rho}_n{n}"),
    benchmark:
        bench_file("vi_simulate", "rho{rho}_n{n}")
    wildcard_constraints:
        rho=r"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?",
        n=r"[0-9]+",
    threads: vi_threads()
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
        raw=f"{VI}/raw.csv",
        speedup=f"{VI}/speedup.csv",
        headline=f"{VI}/F8_headline.json",
    params:
        vi=pick(config["vi"], "interval"),
        seed=config["seed"],
    log:
        log_file("vi_table", "vi_table"),
    benchmark:
        bench_file("vi_table", "vi_table")
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
        table=f"{RESULTS}/tables/F8_vi_simulation.csv",
    output:
        png=figure("F8_vi_simulation", caption="../report/vi/F8.rst", category="F8 variable importance")["png"],
        pdf=f"{FIGURES}/F8_vi_simulation.pdf",
    log:
        log_file("vi_figure", "vi_figure"),
    benchmark:
        bench_file("vi_figure", "vi_figure")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/simulation.py"


# --- F14: VI in full ---------------------------------------------------------------------------


rule vi_coverage:
    output:
        raw=f"{VI}/coverage/rho{{rho}}.csv",
    params:
        vi=vi_fit_params("coverage"),
        seed=config["seed"],
    log:
        log_file("vi_coverage", "rho{rho}"),
    benchmark:
        bench_file("vi_coverage", "rho{rho}")
    wildcard_constraints:
        rho=r"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?",
    threads: vi_threads()
    resources:
        mem_mb=1000,
        runtime=lambda wildcards: 2 + int(config["vi"]["coverage"]["n"]) * config["vi"]["coverage"]["repetitions"] // 2000,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_shapley:
    output:
        raw=f"{VI}/shapley.csv",
    params:
        vi=vi_fit_params("shapley"),
        seed=config["seed"],
    log:
        log_file("vi_shapley", "vi_shapley"),
    benchmark:
        bench_file("vi_shapley", "vi_shapley")
    threads: vi_threads()
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_highdim:
    output:
        raw=f"{VI}/highdim.csv",
    params:
        vi=vi_fit_params("highdim"),
        seed=config["seed"],
    log:
        log_file("vi_highdim", "vi_highdim"),
    benchmark:
        bench_file("vi_highdim", "vi_highdim")
    threads: vi_threads()
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_real:
    output:
        raw=f"{VI}/real.csv",
    params:
        vi=vi_fit_params("real"),
        seed=config["seed"],
    log:
        log_file("vi_real", "vi_real"),
    benchmark:
        bench_file("vi_real", "vi_real")
    threads: vi_threads()
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"


rule vi_tree_kernel:
    output:
        points=f"{VI}/tree_kernel_points.csv",
        summary=f"{VI}/tree_kernel.csv",
    params:
        vi=pick(config["vi"], "tree_kernel"),
        seed=config["seed"],
    log:
        log_file("vi_tree_kernel", "vi_tree_kernel"),
    benchmark:
        bench_file("vi_tree_kernel", "vi_tree_kernel")
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
        f8=f"{RESULTS}/tables/F8_vi_simulation.csv",
        coverage=vi_coverage_paths(),
        shapley=f"{VI}/shapley.csv",
        highdim=f"{VI}/highdim.csv",
        real=f"{VI}/real.csv",
        tree_points=f"{VI}/tree_kernel_points.csv",
        tree_summary=f"{VI}/tree_kernel.csv",
    output:
        table=figure("F14_vi_full", caption="../report/vi/F14.rst", category="F14 variable importance in full")["table"],
        headline=f"{VI}/F14_headline.json",
    params:
        vi=pick(config["vi"], "level"),
        seed=config["seed"],
    log:
        log_file("vi_full_table", "vi_full_table"),
    benchmark:
        bench_file("vi_full_table", "vi_full_table")
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
    log:
        log_file("vi_full_figure", "vi_full_figure"),
    benchmark:
        bench_file("vi_full_figure", "vi_full_figure")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/vi/full.py"
