"""Task vectors through the eNTK (Sun & Raskutti 2026; figure F13): vectors, arithmetic over a lambda grid,
cross-task kernel diagnostics, figure."""

METHODS = ("ft", "linearized")
"""How a task vector is trained: the real network (``ft``) or its linearization at θ_0 (``linearized``)."""
