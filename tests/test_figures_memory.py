"""The panels' figures are made outside pyplot: a long-running app (the Space) draws one per
request, and pyplot would hold every one of them until closed."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from concepts.edit.figures import block_mass_figure, edit_size_figure  # noqa: E402
from concepts.evolve.figures import decided_figure  # noqa: E402


def test_drawing_figures_per_request_leaves_none_open_and_they_still_render():
    open_before = len(plt.get_fignums())
    for _ in range(30):
        figures = [
            block_mass_figure({"mid_block.attentions.0": (1.0, -0.5)}, {"mid_block.attentions.0": 12}, "mass"),
            edit_size_figure({"mid_block.attentions.0": 0.4}, "UCE"),
            decided_figure({"judge": {"shape": 7.0, "position": 0.6}}, 25),
        ]
    assert len(plt.get_fignums()) == open_before
    for figure in figures:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG") and len(buffer.getvalue()) > 2000
