"""A lesson's chart: what the judge measured, beside what the paper reports (hollow, hatched bars).

Grouped bars with a legend and labelled axes; a share is labelled k/n on its bar so a student sees
how many images it counts, a mean carries its ± sd as an error bar. Uses matplotlib's `Figure`
(not pyplot), so a server keeps no figure after the request.
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from .reading import LessonReading  # noqa: E402

BAND_COLOURS = ("#e8f0fe", "#fef7e0", "#e6f4ea")


def lesson_figure(reading: LessonReading) -> Figure:
    groups = list(dict.fromkeys(b.group for b in reading.bars))
    series = list(dict.fromkeys(b.series for b in reading.bars))
    width = 0.8 / max(1, len(series))
    fig = Figure(figsize=(max(7.0, 1.5 * len(groups) + 3.5), 4.4))
    ax = fig.subplots()
    for k, (low, high, name) in enumerate(reading.bands):
        ax.axhspan(low, high, color=BAND_COLOURS[k % len(BAND_COLOURS)], zorder=0)
        ax.text(len(groups) - 0.45, (low + high) / 2, name, ha="left", va="center", fontsize=8, color="0.35", clip_on=False)
    for s, name in enumerate(series):
        for g, group in enumerate(groups):
            bar = next((b for b in reading.bars if b.group == group and b.series == name), None)
            if bar is None:
                continue
            x = g - 0.4 + width * (s + 0.5)
            if bar.value is None:
                ax.text(x, 0.02 * (reading.y_max or 1), "n/a", ha="center", va="bottom", fontsize=7, color="0.4", rotation=90)
                continue
            style = {"facecolor": "white", "edgecolor": "black", "hatch": "//"} if bar.paper else {"color": f"C{s}"}
            ax.bar(x, bar.value, width * 0.92, yerr=bar.spread, capsize=3 if bar.spread else 0, label=name if g == groups.index(
                next(b.group for b in reading.bars if b.series == name)) else None, zorder=2, **style)
            text = f"{round(bar.value * bar.count)}/{bar.count}" if bar.count else f"{bar.value:.2f}"
            ax.text(x, bar.value + (bar.spread or 0), text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), ["\n".join(textwrap.wrap(g, 16)) for g in groups], fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if reading.y_max is not None:
        ax.set_ylim(0, reading.y_max * 1.12)
    ax.set_ylabel(reading.y_label)
    ax.set_title("\n".join(textwrap.wrap(reading.question, 80)), fontsize=10)
    ax.grid(axis="y", alpha=0.3, zorder=1)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(3, len(series)), frameon=False)
    fig.tight_layout()
    return fig
