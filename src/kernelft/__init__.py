"""kernelft: the kernel (empirical NTK) view of fine-tuning language models.

Library behind the Snakemake workflow: data, models, entk, spectrum, earlystop, finetune, vi,
calibration, plots. Every module is importable and tested without Snakemake.
"""

__version__ = "0.1.0"
