"""Kernel tools on precomputed eNTKs: the kernel solvers (Malladi et al. 2023), eigenvalue spectra with their decay
laws, and the kernel output of a model's logits."""
