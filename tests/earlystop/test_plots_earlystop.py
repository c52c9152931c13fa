"""Figures F5–F7 build from small tables and carry labelled axes and legends."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from kernelft.core.claims import HOLDS  # noqa: E402
from kernelft.earlystop.kernel_gd import run_early_stopping, step_grid  # noqa: E402
from kernelft.earlystop.plots import plot_learning_curves, plot_rates, plot_spectrum  # noqa: E402
from kernelft.earlystop.rates import fit_rate, predict_slope  # noqa: E402
from kernelft.kernels.spectrum import fit_spectrum, spectrum_frame  # noqa: E402


def assert_labelled(fig) -> None:
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible
    for ax in visible:
        assert ax.get_xlabel() and ax.get_ylabel()
    assert fig.legends or any(ax.get_legend() is not None for ax in visible)
    plt.close(fig)


def test_spectrum_figure():
    i = np.arange(1, 61, dtype=float)
    spectra = {"power": i**-1.5, "exp": np.exp(-0.1 * i)}
    frames = [spectrum_frame(lam, fit_spectrum(lam), label) for label, lam in spectra.items()]
    fig = plot_spectrum(pd.concat(frames, ignore_index=True))
    assert fig.axes[0].get_xscale() == "log" and fig.axes[1].get_yscale() == "log"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend below both panels
    assert any("α=1.50" in t and "✓" in t for t in legend)
    assert_labelled(fig)


def test_rates_figure():
    n = np.repeat([50, 100, 200, 400], 2)
    loss = 2.0 * n**-0.6 * np.exp(0.05 * np.random.default_rng(0).standard_normal(n.size))
    prediction = predict_slope(fit_spectrum(np.arange(1, 101, dtype=float) ** -1.5), n)
    points = pd.DataFrame(
        {"label": "toy", "n": n, "rep": np.tile([0, 1], 4), "test_mse_rule": loss, "test_mse_oracle": 0.8 * loss}
    )
    fig = plot_rates(points.assign(**prediction))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    legend = ax.get_legend()
    assert "measured slope" in legend.get_title().get_text()
    (text,) = [t.get_text() for t in legend.get_texts()]  # one line per series: slope, interval, verdict
    rate = fit_rate(n, loss)  # predicted -0.6 (alpha = 1.5) lies in it
    assert text == f"toy: {rate.slope:.2f} [{rate.ci_low:.2f}, {rate.ci_high:.2f}]: {HOLDS}"
    assert f"predicted {prediction['predicted_slope']:.2f}" in ax.get_title()
    assert_labelled(fig)
    assert "RWY" not in fig._suptitle.get_text()
    plt.close(fig)
    fig = plot_rates(points.assign(**prediction, stopping_convention="before_crossing", r2_target="pseudo_truth"))
    title = fig._suptitle.get_text()
    assert "the step before the RWY rule fires" in title and "R² from the held-out pseudo-truth" in title
    plt.close(fig)


def test_rates_legends_leave_the_panels_most_of_the_figure():
    """Three panels of two series each (as the default run draws): the legends below the panels take
    under a fifth of the figure's height and no more than two lines per series panel plus a title."""
    rng = np.random.default_rng(1)
    n = np.repeat([24, 48, 96, 192], 3)
    prediction = predict_slope(fit_spectrum(np.arange(1, 101, dtype=float) ** -1.7), n)
    frames = []
    for panel in ("eNTK of task: test MSE vs pseudo_truth", "eNTK of task: test MSE vs labels", "synthetic"):
        for series in ("R² ridge", "R² pinv"):
            loss = n**-0.3 * np.exp(0.2 * rng.standard_normal(n.size))
            frames.append(pd.DataFrame({"label": f"{panel}, {series}", "panel": panel, "series": series, "n": n,
                                        "test_mse_rule": loss, "test_mse_oracle": 0.9 * loss}))
    fig = plot_rates(pd.concat(frames, ignore_index=True).assign(**prediction))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes] + fig.legends
    assert all(len(ax.get_legend().get_texts()) == 2 for ax in fig.axes) and len(fig.legends) == 1
    top = max(legend.get_window_extent(renderer).y1 for legend in legends)
    assert top / fig.bbox.height < 0.2
    plt.close(fig)


def test_learning_curve_figure():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    kernel = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1))
    y = np.sin(x[:, 0]) + 0.1 * rng.normal(size=50)
    frames = []
    for n in (20, 40):
        result = run_early_stopping(
            kernel[:n, :n], y[:n], kernel[40:, :n], y[40:], step_grid(500, 30), sigma2=0.01, patience=5
        )
        stops = {k: result.summary[k] for k in ("stop_rule", "stop_oracle", "stop_validation")}
        frames.append(result.curve.assign(label="toy", n=n, rep=0, **stops))
    fig = plot_learning_curves(pd.concat(frames, ignore_index=True))
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["n = 20", "n = 40"]
    assert_labelled(fig)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="lacks columns"):
        plot_rates(pd.DataFrame({"label": ["a"], "n": [1]}))
