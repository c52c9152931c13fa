"""Early-stopped fine-tuning as kernel gradient descent (Sun & Raskutti 2026; figures F5-F7): stopping rule,
rates, real fine-tuning stopped at the rule's time, figures."""
