"""Task vectors through the eNTK (Sun & Raskutti 2026; figure F13): vectors, arithmetic over a lambda grid, cross-task kernel diagnostics, figure."""
