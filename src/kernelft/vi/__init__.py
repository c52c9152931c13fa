"""Variable importance by early-stopped warm starts (Sun & Raskutti, AISTATS 2025; figures F8, F14):
simulation, data designs, learners, intervals, Shapley values, figures."""

FIT_KEYS = (
    "beta", "noise_sd", "test_fraction", "val_fraction", "drop_mean", "width", "hidden_layers", "bias_scale", "lr",
    "max_steps", "patience", "min_delta", "boosting", "boosting_params",
)
"""The `vi` keys that set the data and the learners of every study (the fields of
:class:`kernelft.vi.simulation.VIConfig`); the other keys are grids, studies and summaries."""
