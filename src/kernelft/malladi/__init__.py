"""Kernel vs fine-tuning (Malladi et al., ICML 2023; figures F1-F4): runs, tables and figures."""
