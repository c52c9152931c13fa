# Variable importance by early-stopped warm starts (F8), after Sun & Raskutti (AISTATS 2025).
# One vi_simulate job per (rho, n) cell (they run in parallel), then vi_table gathers them and
# vi_figure draws F8. Config: the `vi` section; seed: config["seed"].

add_figures("F8_vi_simulation")
TARGETS.append(f"{RESULTS}/vi/F8_headline.json")


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
    script:
        "../scripts/vi.py"


rule vi_table:
    input:
        raw=vi_cell_paths(),
    output:
        table="results/tables/F8_vi_simulation.csv",
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
    script:
        "../scripts/vi.py"


rule vi_figure:
    input:
        table="results/tables/F8_vi_simulation.csv",
    output:
        png=report("figures/F8_vi_simulation.png", caption="../report/F8.rst", category="F8 variable importance"),
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
    script:
        "../scripts/vi.py"
