"""Seeds: how a job's seed is made from the config's, and seeding the global generators.

Every job that trains or initialises a model seeds from ``seed`` (the config's global seed) and its
data seed (the training sample's, or a repetition's index), mixed by :func:`run_seed`, so the kernel job
and the fine-tuning job of one run start from the same model and different samples get different
initialisations.
"""

from __future__ import annotations


def run_seed(global_seed: int, data_seed: int) -> int:
    """Seed of one run (linear-head initialisation, minibatch order, LoRA's A): ``global_seed · 1000 +
    data_seed`` (data seeds stay below 1000)."""
    return global_seed * 1000 + data_seed


def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators (library code otherwise uses explicit generators)."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
