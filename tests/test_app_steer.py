"""The Steer tab's handlers: explore, heatmaps, search, steer, icons, top images, and bad input."""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import ui.common
import ui.features
import ui.concept_search
import ui.steer
from concepts.dictionary import named_entries
from concepts.generation import SHARED_PIPELINES
from concepts.hooks import transformer_blocks

MODEL = "toy-shapes"
MID = "mid_block.attentions.0"
DOWN = "down_blocks.1.attentions.0"
PROMPT = "a large red solid square at the top left on a white background"


def unet_state():
    pipe = SHARED_PIPELINES.get(ui.common.REGISTRY.get(MODEL), ui.common.DEVICE)
    return pipe.unet, {k: v.clone() for k, v in pipe.unet.state_dict().items()}


def test_explore_shows_image_top_features_and_heatmap():
    image, rows, heat, first, state, info, editor = ui.steer.explore_image(MODEL, PROMPT, 2, 10, 4.0, MID, "middle")
    assert image.size == (64, 64) and heat.size == (256 + 56, 256)  # the map and its colour bar
    assert rows and first == rows[0][0] and "middle" in info
    names = {label for _, label, _, _ in rows if label}
    assert names and all(name in info for name in names)  # the info line says which concepts were named
    assert editor["background"] is image  # the painter shows the explored image
    other = ui.steer.feature_heatmap(state, rows[-1][0])
    assert not np.array_equal(np.asarray(heat), np.asarray(other))
    with pytest.raises(gr.Error, match="feature"):
        ui.steer.feature_heatmap(state, 10_000)
    with pytest.raises(gr.Error, match="explore an image first"):
        ui.steer.feature_heatmap(None, 0)


def test_concept_picker_and_search_read_the_dictionary():
    update = ui.concept_search.concept_choices(MODEL, MID, "middle", 25)
    assert "large" in update["choices"]
    found = ui.steer.find_concepts(MODEL, MID, "middle", 25, "larg")
    assert found[0][0] == "large" and found[0][1]
    shown = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gr, "Warning", shown.append)
        every = ui.steer.find_concepts(MODEL, MID, "middle", 25, "purple elephant")
    assert "no label contains" in shown[0] and {row[0] for row in every} == set(ui.concept_search.concept_choices(MODEL, MID, "middle", 25)["choices"])


def test_a_value_no_feature_stands_for_is_explained_not_just_missing():
    """'yellow' has no feature, group or read-out at the mid block's early window; the search says how
    near the nearest feature comes and which windows of the block find it."""
    early, _ = ui.common.sae_dictionary(MODEL, MID, "early", 25)
    middle, _ = ui.common.sae_dictionary(MODEL, MID, "middle", 25)
    final, _ = ui.common.sae_dictionary(MODEL, MID, "final", 25)
    assert "yellow" not in {name for name, _, _ in named_entries(early.concepts)}
    assert "yellow" in middle.concepts["readouts"] and "yellow" in final.concepts["readouts"]
    nearest = early.concepts["closest"]["yellow"]
    shown = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gr, "Warning", shown.append)
        ui.steer.find_concepts(MODEL, MID, "early", 25, "Yellow")
    message = shown[0]
    assert f"feature {nearest['feature']}" in message and f"{nearest['precision']:.0%}" in message
    assert "weighed against others" in message and "found in the middle, final windows" in message


def test_a_value_found_only_as_a_group_is_searched_picked_and_explained():
    """No feature of the mid block stands for "triangle" alone; in the early window a few do together.
    The search marks the hit as a group and the picker offers it."""
    early, _ = ui.common.sae_dictionary(MODEL, MID, "early", 25)
    assert "triangle" not in early.concepts["concepts"] and early.concepts["groups"]["triangle"]["held_out_precision"] >= 0.8
    found = ui.steer.find_concepts(MODEL, MID, "early", 25, "triangle")
    assert [row[0] for row in found] == ["triangle"] and "a group" in found[0][2]
    assert found[0][1] == ", ".join(map(str, early.concepts["groups"]["triangle"]["features"]))
    assert "triangle" in ui.concept_search.concept_choices(MODEL, MID, "early", 25)["choices"]


def test_a_value_found_as_a_read_out_is_searched_picked_and_steered():
    """No feature or group of the mid block stands for "circle"; weighed against the other shapes'
    features, its codes read it on held-out images. The search marks it as a read-out, the picker
    offers it, and steering it adds its features that count for circle."""
    middle, _ = ui.common.sae_dictionary(MODEL, MID, "middle", 25)
    readout = middle.concepts["readouts"]["circle"]
    assert "circle" not in middle.concepts["concepts"] and "circle" not in middle.concepts["groups"]
    assert readout["held_out_precision"] >= 0.8 and readout["against"]
    found = ui.steer.find_concepts(MODEL, MID, "middle", 25, "circle")
    assert [row[0] for row in found] == ["circle"] and "a read-out" in found[0][2]
    assert found[0][1] == ", ".join(map(str, readout["features"]))
    assert "circle" in ui.concept_search.concept_choices(MODEL, MID, "middle", 25)["choices"]
    baseline, steered, _, info = ui.steer.steer_image(MODEL, PROMPT, 3, 10, 4.0, MID, "middle", "circle", "", "global", None, 20.0, "cond")
    assert not np.array_equal(np.asarray(baseline), np.asarray(steered)), "steering the read-out's features changes the image"


def test_steering_a_painted_region_changes_the_image_there():
    base, _, _, _, _, _, editor = ui.steer.explore_image(MODEL, PROMPT, 3, 10, 4.0, MID, "early")
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[40:, 40:] = (255, 48, 48, 255)  # paint the bottom right corner
    painting = {"background": np.asarray(base), "layers": [layer], "composite": None}
    rows = ui.steer.explore_image(MODEL, PROMPT, 3, 10, 4.0, MID, "early")[1]
    features = ", ".join(str(r[0]) for r in rows[:8])
    baseline, steered, diff, info = ui.steer.steer_image(MODEL, PROMPT, 3, 10, 4.0, MID, "early", None, features, ui.steer.PAINTED, painting, 8.0, "cond")
    assert np.array_equal(np.asarray(baseline), np.asarray(base))  # same seed, same baseline
    change = np.abs(np.asarray(steered, dtype=float) - np.asarray(baseline, dtype=float)).mean(-1)
    assert change.mean() > 1.0, "steering did not change the image"
    assert "spatial" in info and "painted mask" in info and diff.size == (256 + 56, 256)


def test_global_steering_by_concept_changes_the_image():
    beta = ui.steer.steer_strength(MODEL, "middle", "global")  # the model's calibrated global β
    baseline, steered, _, info = ui.steer.steer_image(MODEL, PROMPT, 1, 10, 4.0, MID, "middle", "dotted", "", "global", None, beta, "both")
    assert np.abs(np.asarray(steered, dtype=float) - np.asarray(baseline, dtype=float)).mean() > 1.0
    assert "dotted" in info and "global" in info and "branch both" in info


@pytest.mark.parametrize(
    "concept,features,where,painting,strength,window,field",
    [
        ("no such concept", "", "global", None, 10.0, "middle", "concept"),
        (None, "", "global", None, 10.0, "middle", "concept"),
        (None, "3, x", "global", None, 10.0, "middle", "features"),
        (None, "9999", "global", None, 10.0, "middle", "features"),
        (None, "3", ui.steer.PAINTED, None, 10.0, "middle", "mask"),
        (None, "3", ui.steer.PAINTED, {"background": None, "layers": [np.zeros((64, 64, 4), np.uint8)]}, 10.0, "middle", "mask"),
        (None, "3", "global", None, math.nan, "middle", "strength"),
        (None, "3", "global", None, math.inf, "middle", "strength"),
        (None, "3", "global", None, 1e9, "middle", "strength"),
        (None, "3", "global", None, 10.0, "20:40", "window"),
        (None, "3", "upper middle", None, 10.0, "middle", "region"),
    ],
)
def test_bad_steering_input_is_a_message_and_leaves_the_model_alone(concept, features, where, painting, strength, window, field):
    unet, before = unet_state()
    with pytest.raises(gr.Error) as info:
        ui.steer.steer_image(MODEL, PROMPT, 0, 10, 4.0, MID, window, concept, features, where, painting, strength, "cond")
    assert field in str(info.value.message)
    assert all(not m._forward_hooks for m in transformer_blocks(unet).values())
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())


def test_icon_gallery_and_top_images():
    icons = ui.features.icon_gallery(MODEL, MID, "middle", 25, 4)
    assert len(icons) == 4 and all(isinstance(i, Image.Image) for i, _ in icons)
    assert icons[0][1].startswith("#")
    labelled = int(icons[0][1].split()[0][1:])
    tops = ui.features.top_image_gallery(MODEL, MID, "middle", 25, labelled)
    assert tops and all(img.size == (64, 64) for img, _ in tops)
    values = [float(caption.split(" · ")[0]) for _, caption in tops]
    assert values == sorted(values, reverse=True)
    with pytest.raises(gr.Error, match="icons"):
        ui.features.icon_gallery(MODEL, MID, "middle", 25, 500)


def test_a_heatmap_carries_its_colour_scale():
    """The bar beside the map runs from the peak's colour at the top to 0's at the bottom."""
    from concepts.heatmaps import heatmap_with_scale

    image = Image.new("RGB", (64, 64), "white")
    fmap = np.zeros((8, 8), np.float32)
    fmap[2, 3] = 2.5
    shown = np.asarray(heatmap_with_scale(image, fmap), dtype=float)
    assert shown.shape == (256, 256 + 56, 3)
    top, bottom = shown[14, 256 + 12], shown[256 - 14, 256 + 12]
    assert top.sum() > bottom.sum() + 300  # inferno: bright yellow at the peak, near black at 0


def test_choosing_a_table_row_selects_the_feature_everywhere_and_a_window_change_clears_ids():
    import ui.selection

    class Row:
        row_value = [63, "large", 0.5, 4.0]

    assert ui.selection.pick_feature_row(Row()) == (63, "63", 63)

    class Hit:
        row_value = ["large", "377, 460"]

    assert ui.selection.pick_concept_row(Hit()) == ("large", "", 377, 377, gr.update())

    class Place:
        row_value = ["bottom right", "12, 40"]

    assert ui.selection.pick_concept_row(Place()) == ("bottom right", "", 12, 12, "bottom right")  # Where follows a place
    assert ui.selection.forget_features("63") == ""
    assert ui.selection.forget_features("  ") == gr.update()


def test_a_searched_place_moves_the_object_there():
    """A position has no feature of its own; searching "bottom right" finds it as a place (the object's
    features), and steering it in the early window with Where left on global moves the object there,
    as the judge reads it."""
    from concepts.world import read_images

    found = ui.steer.find_concepts(MODEL, MID, "early", 25, "bottom right")
    assert [row[0] for row in found] == ["bottom right"] and found[0][1] and "a place" in found[0][2]
    assert "a place" not in ui.steer.find_concepts(MODEL, MID, "early", 25, "large")[0][2]
    beta = ui.steer.steer_strength(MODEL, "early", "bottom right")
    reader = ui.common.REGISTRY.get(MODEL).knowledge.reader()
    moved = 0
    for seed in (0, 1, 2):
        baseline, steered, _, info = ui.steer.steer_image(MODEL, PROMPT, seed, 25, 4.0, MID, "early", "bottom right", "", "global", None, beta, "cond")
        before, after = read_images(reader, [baseline, steered])
        assert before["position"] == "top left"
        moved += after["position"] == "bottom right"
    assert "a place is the object's features" in info and "spatial" in info
    assert moved >= 2, f"the object reached the bottom right in {moved} of 3 seeds"


def test_a_search_the_window_cannot_answer_points_to_the_windows_and_blocks_that_can():
    """The mid block carries colour weakly (docs/evolution.md): its early window finds no "orange",
    and the search there names the block's windows and the other blocks whose dictionaries do;
    "hexagon", found nowhere, names none."""
    def finding(block: str) -> list[str]:
        return [w for w in ("early", "middle", "final")
                if "orange" in {name for name, _, _ in named_entries(ui.common.sae_dictionary(MODEL, block, w, 25)[0].concepts)}]

    assert "early" not in finding(MID) and finding(MID), "the mid block finds orange in a later window only"
    assert finding(DOWN), "the down block finds orange in some window"
    shown = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gr, "Warning", shown.append)
        ui.steer.find_concepts(MODEL, MID, "early", 25, "orange")
        ui.steer.find_concepts(MODEL, MID, "early", 25, "hexagon")
    assert f"found in the {', '.join(finding(MID))} window" in shown[0]
    assert f"{DOWN} ({', '.join(finding(DOWN))})" in shown[0]
    assert "found at" not in shown[1] and "found in the" not in shown[1]


def test_orange_is_found_at_the_mid_block_as_a_read_out_against_each_rival():
    """Orange lies between red and yellow at the mid block (docs/evolution.md): no feature, group or
    one weighing finds it there, and search finds it as a rival read-out that names its rivals."""
    rows = ui.steer.find_concepts(MODEL, MID, "middle", 25, "orange")
    assert [row[0] for row in rows] == ["orange"]
    assert "against each rival in turn (blue, green, purple, red, yellow)" in rows[0][2]
    entry = ui.common.sae_dictionary(MODEL, MID, "middle", 25)[0].concepts["readouts"]["orange"]
    assert rows[0][1] == ", ".join(map(str, entry["features"])) and entry["held_out_precision"] >= 0.8
