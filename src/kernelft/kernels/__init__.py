"""Kernel tools on precomputed eNTKs: the kernel solvers (Malladi et al. 2023) and eigenvalue spectra with their decay laws."""
