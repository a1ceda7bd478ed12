"""A section's chart as a PNG picture (matplotlib, Agg: no display), for the PDF."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from microservices.report_sections import Chart  # noqa: E402

COLOURS = ("#1f6f8b", "#e39b2d", "#99a8b2", "#b3412d", "#5b8c5a")
WIDTH_IN = 6.8  # the PDF's text width (A4 less margins), so the picture is printed at its own size


def chart_png(chart: Chart, dpi: int = 150) -> bytes:
    """The chart drawn as bars (stacked or side by side), labelled with its unit; PNG bytes."""
    n = max(len(chart.categories), 1)
    horizontal = chart.kind == "barh"
    height = min(max(1.8, 0.32 * n + 1.0), 7.5) if horizontal else 2.8
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height), dpi=dpi)
    try:
        positions = np.arange(len(chart.categories))
        names = list(chart.series)
        width = 0.8 if chart.stacked or len(names) <= 1 else 0.8 / len(names)
        base = np.zeros(len(chart.categories))
        for i, name in enumerate(names):
            values = np.asarray(chart.series[name], dtype=float)
            offset = 0 if chart.stacked or len(names) <= 1 else (i - (len(names) - 1) / 2) * width
            draw = ax.barh if horizontal else ax.bar
            draw(positions + offset, values, width, base if chart.stacked else 0, label=name,
                 color=COLOURS[i % len(COLOURS)])
            if chart.stacked:
                base = base + values
        (ax.set_yticks if horizontal else ax.set_xticks)(positions, chart.categories)
        if horizontal:
            ax.invert_yaxis()
        (ax.set_xlabel if horizontal else ax.set_ylabel)(chart.unit)
        ax.set_title(chart.title, fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
        if len(names) > 1:
            ax.legend(fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(names))
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(fig)
