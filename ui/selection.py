"""One chosen feature, shown everywhere in the Steer tab.

A feature id means something only with its SAE: feature 63 of the middle window's SAE is another
feature in the early window's. So choosing a row of the top-features table selects that feature for
the heatmap, the steering ids and the top images at once; choosing a search hit selects its concept
and its first feature (a place, "top left", also sets Where to that cell and its spatial β); and changing the block or the window clears steering ids that belonged to the
old SAE, with a note, instead of silently steering another feature.
"""

from __future__ import annotations

import gradio as gr

from concepts.steer.steering import CELLS


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
    """A search hit: its concept for steering, its first feature for the heatmap and the top images;
    a place (a cell's name) is steered in that cell."""
    row = _row(evt)
    if len(row) < 2 or not str(row[1]).strip():
        return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
    first = int(str(row[1]).split(",")[0])
    return row[0], "", first, first, (row[0] if row[0] in CELLS else gr.update())


def forget_features(feature_text: str | None):
    """When the block or window changes: the typed ids named features of the old SAE, so clear them."""
    if (feature_text or "").strip():
        gr.Info(f"Feature ids {feature_text.strip()} belonged to the previous block and window's SAE, so they were "
                "cleared: each SAE numbers its own features. Pick features of this one (a table row or a search hit).")
        return ""
    return gr.update()


def wire(*, top_table, found, block, window, heat_feature, feature_text, concept, top_feature, show_heatmap, where, strength) -> None:
    """Connect the selection events; `show_heatmap` is (fn, inputs, output) that draws the chosen feature,
    `strength` is (fn, inputs, output) that sets the β for a Where."""
    fn, inputs, output = show_heatmap
    beta_fn, beta_inputs, beta_output = strength
    top_table.select(pick_feature_row, outputs=[heat_feature, feature_text, top_feature], api_visibility="private").then(
        fn, inputs=inputs, outputs=output, api_visibility="private")
    picked = found.select(pick_concept_row, outputs=[concept, feature_text, heat_feature, top_feature, where], api_visibility="private")
    picked.then(fn, inputs=inputs, outputs=output, api_visibility="private")
    def place_beta(*args):  # only a place changes Where, so only a place resets β
        return beta_fn(*args[:-1]) if args[-1] in CELLS else gr.update()

    picked.then(place_beta, inputs=[*beta_inputs, concept], outputs=beta_output, api_visibility="private")
    for trigger in (block.input, window.input):  # a user's change, not a share link setting both
        trigger(forget_features, inputs=feature_text, outputs=feature_text, api_visibility="private")
