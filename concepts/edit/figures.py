"""The per-block chart of attribution mass (positive: zeroing lowers J; negative: raises it), and
UCE's per-block edit size. Figures are made without pyplot, which would keep every one a server
ever drew until closed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _block_axes(blocks: int) -> tuple[Figure, Axes]:
    """One horizontal bar row per block: both charts grow with the number of blocks alike."""
    fig = Figure(figsize=(7.0, 0.42 * blocks + 1.3))
    return fig, fig.subplots()


def block_mass_figure(mass: dict[str, tuple[float, float]], zeroed: dict[str, int], title: str) -> Figure:
    blocks = list(mass)
    fig, ax = _block_axes(len(blocks))
    ys = range(len(blocks))
    ax.barh(ys, [mass[b][0] for b in blocks], color="#2a9d8f", label="positive (zeroing lowers J)")
    ax.barh(ys, [mass[b][1] for b in blocks], color="#e76f51", label="negative (zeroing raises J)")
    ax.set_yticks(list(ys), [f"{b}  ({zeroed.get(b, 0)} zeroed)" for b in blocks], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("sum of attribution scores W·∂J/∂W")
    ax.set_title(title, fontsize=10, pad=22)
    # Between the title and the axes, not over a bar: the longest bars reach the corners.
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def edit_size_figure(change: dict[str, float], title: str) -> Figure:
    """UCE's counterpart of the mass chart: per block, how far its cross-attention K/V moved
    (‖W' − W‖ / ‖W‖, over both matrices)."""
    blocks = list(change)
    fig, ax = _block_axes(len(blocks))
    ax.barh(range(len(blocks)), [change[b] for b in blocks], color="#457b9d")
    ax.set_yticks(list(range(len(blocks))), blocks, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("relative change of the cross-attention key/value weights ‖W′ − W‖ / ‖W‖")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
