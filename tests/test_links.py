"""Share links: each URL value parsed as a typed one would be, and a painted mask that survives the trip."""

from __future__ import annotations

import numpy as np
import pytest

from concepts.errors import InvalidInputError
from concepts.registry import load_registry
from ui import links

TOY = load_registry().get("toy-shapes")


def painting(mask: np.ndarray) -> dict:
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (0, 229, 255, 255)
    return {"background": None, "layers": [layer], "composite": None}


def test_a_painted_mask_survives_the_link():
    mask = np.zeros((64, 64), bool)
    mask[40:60, 8:30] = True  # bottom left, on the 2-px grid the link keeps
    text = links.mask_to_text(painting(mask))
    assert len(text) == links.MASK_CELLS**2 // 4
    back = links.mask_from_text("mask")(text, TOY)["layers"][0][..., 3] > 0
    assert np.array_equal(back, mask)
    assert links.mask_to_text(painting(np.zeros((64, 64), bool))) is None and links.mask_to_text(None) is None


@pytest.mark.parametrize("parse, value, field", [
    (links.integer("seed", 0, 2**63 - 1), "abc", "seed"),
    (links.integer("seed", 0, 2**63 - 1), "-1", "seed"),
    (links.integer("steps", 1, 100), "1e9", "steps"),
    (links.real("strength", -1e4, 1e4), "nan", "strength"),
    (links.real("strength", -1e4, 1e4), "1e400", "strength"),
    (links.choice("block", lambda world: world.blocks), "../../etc/passwd", "block"),
    (links.text("prompt"), "x" * 5000, "prompt"),
    (links.mask_from_text("mask"), "zz", "mask"),
    (links.mask_from_text("mask"), "g" * 256, "mask"),
])
def test_a_bad_link_value_is_named(parse, value, field):
    with pytest.raises(InvalidInputError) as raised:
        parse(value, TOY)
    assert raised.value.field == field


def test_good_values_parse():
    assert links.integer("seed", 0, 10)("7", TOY) == 7
    assert links.real("guidance", 0, 20)("4.5", TOY) == 4.5
    assert links.choice("block", lambda world: world.blocks)("mid_block.attentions.0", TOY) == "mid_block.attentions.0"
