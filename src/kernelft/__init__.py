"""kernelft: the kernel (empirical NTK) view of fine-tuning language models.

The library behind the Snakemake workflow, one subpackage per job (README, "Layout"): ``core`` (config,
logging, provenance, seeds, tables, plot theme), ``text`` (data, tokenisation, models), ``entk``,
``training`` (runner, linearized model, probe), ``kernels`` (solvers, spectra), and one package per
paper: ``malladi``, ``earlystop``, ``lpft``, ``taskvec``, ``vi``. Every module is importable and tested
without Snakemake; ``kernelft`` (:mod:`kernelft.cli`) is the command line.
"""

__version__ = "0.1.0"
