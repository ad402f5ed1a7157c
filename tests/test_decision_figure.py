"""The "when is it decided" figure reads top-down in decision order, so the finding (layout first,
texture and outline last) is visible without reading the numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from concepts.evolve.figures import decided_figure, decision_order


def test_rows_run_in_the_first_sources_decision_order_with_unsettled_last():
    decisions = {
        "judge on the x0 preview": {"shape": 7.0, "position": 0.6, "colour": 5.8, "size": 3.7, "texture": None},
        "SAE features": {"size": 3.4, "background": 16.8},
    }
    assert decision_order(decisions) == ["position", "size", "colour", "shape", "background", "texture"]
    figure = decided_figure(decisions, 25)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["position", "size", "colour", "shape", "background", "texture"]
