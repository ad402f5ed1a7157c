"""The toy world renders exactly what its scene says, and captions name it in natural order."""

from __future__ import annotations

import numpy as np
import pytest

from concepts.toy.captions import caption, random_caption, vocabulary
from concepts.toy.world import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    IMAGE_SIZE,
    POSITIONS,
    Scene,
    all_scenes,
    random_scene,
    render,
)
from concepts.tokenizer import build_tokenizer


def scene(**overrides) -> Scene:
    values = dict(shape="square", colour="red", size="large", position="center", background="black", texture="solid")
    values.update(overrides)
    return Scene(**values)


def object_mask(image: np.ndarray, background: str) -> np.ndarray:
    return np.abs(image.astype(int) - np.array(BACKGROUNDS[background])).sum(-1) > 30


def test_exact_colours_background_and_antialiased_edges():
    image = render(scene())
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == BACKGROUNDS["black"]
    assert tuple(image[32, 32]) == COLOURS["red"]
    circle = render(scene(shape="circle"))
    assert len({tuple(p) for p in circle.reshape(-1, 3)}) > 2  # edge pixels blend object and background


@pytest.mark.parametrize("position", list(POSITIONS))
def test_object_sits_at_its_position_and_never_touches_the_border(position):
    rng = np.random.default_rng(1)
    for size in ("small", "large"):
        for _ in range(5):
            image = render(scene(position=position, size=size, shape="circle"), rng)
            ys, xs = np.nonzero(object_mask(image, "black"))
            cx, cy = POSITIONS[position]
            assert abs(xs.mean() - cx) <= 3 and abs(ys.mean() - cy) <= 3
            assert xs.min() > 0 and ys.min() > 0 and xs.max() < IMAGE_SIZE - 1 and ys.max() < IMAGE_SIZE - 1


def test_sizes_have_the_specified_bounding_boxes():
    for size, box in (("small", 14), ("large", 24)):
        ys, xs = np.nonzero(object_mask(render(scene(size=size, shape="circle")), "black"))
        assert abs((xs.max() - xs.min() + 1) - box) <= 2 and abs((ys.max() - ys.min() + 1) - box) <= 2


def test_textures_cover_different_shares_of_the_shape():
    coverage = {t: object_mask(render(scene(texture=t)), "black").sum() for t in ATTRIBUTES["texture"]}
    assert coverage["solid"] > coverage["striped"] > coverage["outlined"] > 0
    assert coverage["solid"] > coverage["dotted"] > 0
    striped = object_mask(render(scene(texture="striped")), "black")
    assert not striped[20:44, 32].all() and striped[20:44, 32].any()  # rows alternate


def test_shapes_differ():
    masks = {s: object_mask(render(scene(shape=s)), "black") for s in ATTRIBUTES["shape"]}
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert (masks[a] != masks[b]).sum() > 20, (a, b)
    triangle = masks["triangle"]
    rows = np.nonzero(triangle.any(1))[0]
    assert triangle[rows[0]].sum() < triangle[rows[-1]].sum()  # apex up


def test_splits_hold_out_the_named_combinations():
    rng = np.random.default_rng(0)
    train = [random_scene(rng, "train") for _ in range(500)]
    held = [random_scene(rng, "held_out") for _ in range(50)]
    assert not any((s.colour, s.shape) in HELD_OUT for s in train)
    assert all((s.colour, s.shape) in HELD_OUT for s in held)
    assert sum(1 for _ in all_scenes()) == 5 * 6 * 2 * 9 * 3 * 4


def test_bad_scene_names_the_attribute():
    with pytest.raises(ValueError, match="colour"):
        scene(colour="teal")


def test_captions_in_natural_order_with_drops_and_empties():
    s = scene(shape="star", size="small", texture="striped", position="top left")
    assert caption(s) == "a small red striped star at the top left on a black background"
    assert caption(s, keep={"colour", "position"}) == "a red shape at the top left"
    rng = np.random.default_rng(0)
    captions = [random_caption(s, rng) for _ in range(400)]
    assert 0.05 < captions.count("") / 400 < 0.15
    assert any("small" not in c and c for c in captions) and caption(s) in captions


def test_every_caption_word_is_one_token_of_the_toy_tokenizer():
    tokenizer = build_tokenizer(vocabulary())
    text = caption(scene(shape="triangle", position="bottom right", background="white", texture="outlined", colour="purple"))
    assert len(tokenizer(text).input_ids) == len(text.split()) + 2


def test_prompts_showing_a_concept_name_it_and_every_other_attribute():
    from concepts.toy.prompts import attribute_of, prompts_showing

    for concept, attribute in (("red", "colour"), ("star", "shape"), ("top left", "position"), ("black background", "background"), ("Striped ", "texture")):
        prompts = prompts_showing(concept, 12, seed=3)
        assert len(prompts) == 12 and len(set(prompts)) > 1, concept
        for prompt in prompts:
            assert concept.strip().lower() in prompt and " shape " not in f"{prompt} ", prompt  # every attribute named
            assert "on a" in prompt and any(s in prompt for s in ATTRIBUTES["shape"])
        assert attribute_of(concept) == (attribute, concept.strip().lower().removesuffix(" background"))
    held_out = {(c, s) for c, s in HELD_OUT}
    for prompt in prompts_showing("red", 40, 0) + prompts_showing("triangle", 40, 0):  # never a held-out pair
        words = prompt.split()
        assert not any(c in words and s in words for c, s in held_out), prompt
    assert prompts_showing("red", 4, 1) == prompts_showing("red", 4, 1) != prompts_showing("red", 4, 2)  # seeded
    for unknown in ("dog", "red star", "", "backgrounds"):
        assert prompts_showing(unknown, 4, 0) is None and attribute_of(unknown) is None
