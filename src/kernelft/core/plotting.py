"""Figures of the workflow: one theme, one function per figure (DataFrame in, Figure out).

Submodules group the figures by paper; :func:`theme` is applied by every figure function and
:func:`save` writes the PNG and PDF pair.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402


def theme() -> None:
    """The one look of every figure: seaborn whitegrid, colour-blind palette, readable fonts."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.2)
    plt.rcParams.update({"figure.dpi": 120, "savefig.dpi": 150, "savefig.bbox": "tight"})


def save(figure: plt.Figure, png: str | Path, pdf: str | Path | None = None) -> None:
    """Write ``figure`` as PNG (and PDF) and close it."""
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png)
    if pdf is not None:
        figure.savefig(pdf)
    plt.close(figure)
