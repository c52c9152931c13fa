# Spectrum of each eNTK: eigenvalues of K/n, power-law and exponential fits, subsampling intervals.


rule spectrum:
    input:
        kernel=rules.entk.output.kernel,
    output:
        spectrum=f"{RESULTS}/spectrum/{{task}}/n{{n}}-seed{{seed}}.csv",
    params:
        spectrum=config["spectrum"],
        seed=config["seed"],
    log:
        log_file("spectrum", "{task}/n{n}-seed{seed}"),
    benchmark:
        bench_file("spectrum", "{task}/n{n}-seed{seed}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/spectrum.py"
