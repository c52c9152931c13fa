"""Variable importance by early-stopped warm starts (Sun & Raskutti, AISTATS 2025; figures F8, F14): simulation, learners, intervals, Shapley values, figures."""
