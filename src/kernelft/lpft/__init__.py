"""LP-FT through the NTK (Tomihari & Sato, NeurIPS 2024; figures F9-F12): the stage's data and tables, the NTK split, calibration, figures."""
