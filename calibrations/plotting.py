"""One figure per analysis: the data, the fit and the key numbers with uncertainties.

Analyses describe what to draw in `Analysis.curves` (plain arrays), so plotting stays out of
the fit code and a figure can be rebuilt from recorded data. Keys understood:
`x`, `y` (data), `fit_x`, `fit_y` (model), `xlabel`, `ylabel`, or `image` with `image_x`,
`image_y` (a 2-D map) and optional `trace_x`, `trace_y` drawn over it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from fluxcal.calibrations.node import Analysis


def format_value(value: float, stderr: float) -> str:
    if np.isfinite(stderr) and stderr > 0:
        return f"{value:.6g} ± {stderr:.2g}"
    return f"{value:.6g}"


def plot_analysis(title: str, data: xr.Dataset, analysis: Analysis, path: Path) -> Path:
    curves = analysis.curves
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    try:
        if "image" in curves:
            mesh = axis.pcolormesh(
                curves["image_x"], curves["image_y"], curves["image"], shading="auto"
            )
            figure.colorbar(mesh, ax=axis)
            if "trace_x" in curves:
                axis.plot(curves["trace_x"], curves["trace_y"], "w.", ms=3)
        if "x" in curves:
            axis.plot(curves["x"], curves["y"], ".", ms=3, label="data")
        if "fit_x" in curves:
            axis.plot(curves["fit_x"], curves["fit_y"], "-", lw=1.5, label="fit")
            axis.legend(loc="best", fontsize=8)
        axis.set_xlabel(curves.get("xlabel", ""))
        axis.set_ylabel(curves.get("ylabel", ""))
        qubit = data.attrs.get("qubit", "")
        axis.set_title(f"{qubit} {title}")
        text = "\n".join(f"{k} = {format_value(v, e)}" for k, (v, e) in analysis.values.items())
        axis.text(
            0.02,
            0.98,
            text,
            transform=axis.transAxes,
            va="top",
            fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.7, "lw": 0},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path
