"""One chosen feature, shown everywhere in the Steer tab.

A feature id means something only with its SAE: feature 63 of the middle window's SAE is another
feature in the early window's. So choosing a row of the top-features table selects that feature for
the heatmap, the steering ids and the top images at once; choosing a search hit selects its concept
and its first feature; and changing the block or the window clears steering ids that belonged to the
old SAE, with a note, instead of silently steering another feature.
"""

from __future__ import annotations

import gradio as gr


def _row(evt: gr.SelectData) -> list:
    return list(evt.row_value or [])


def pick_feature_row(evt: gr.SelectData):
    """A top-features row: its feature for the heatmap, the steering ids and the top images."""
    row = _row(evt)
    if not row:
        return gr.update(), gr.update(), gr.update()
    feature = int(row[0])
    return feature, str(feature), feature


def pick_concept_row(evt: gr.SelectData):
    """A search hit: its concept for steering, its first feature for the heatmap and the top images."""
    row = _row(evt)
    if len(row) < 2 or not str(row[1]).strip():
        return gr.update(), gr.update(), gr.update(), gr.update()
    first = int(str(row[1]).split(",")[0])
    return row[0], "", first, first


def forget_features(feature_text: str | None):
    """When the block or window changes: the typed ids named features of the old SAE, so clear them."""
    if (feature_text or "").strip():
        gr.Info(f"Feature ids {feature_text.strip()} belonged to the previous block and window's SAE, so they were "
                "cleared: each SAE numbers its own features. Pick features of this one (a table row or a search hit).")
        return ""
    return gr.update()


def wire(*, top_table, found, block, window, heat_feature, feature_text, concept, top_feature, show_heatmap) -> None:
    """Connect the selection events; `show_heatmap` is (fn, inputs, output) that draws the chosen feature."""
    fn, inputs, output = show_heatmap
    top_table.select(pick_feature_row, outputs=[heat_feature, feature_text, top_feature], api_visibility="private").then(
        fn, inputs=inputs, outputs=output, api_visibility="private")
    found.select(pick_concept_row, outputs=[concept, feature_text, heat_feature, top_feature], api_visibility="private").then(
        fn, inputs=inputs, outputs=output, api_visibility="private")
    for trigger in (block.input, window.input):  # a user's change, not a share link setting both
        trigger(forget_features, inputs=feature_text, outputs=feature_text, api_visibility="private")
