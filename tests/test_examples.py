"""Examples that work where they are shown: every example prompt of toy-shapes is drawn with what it
names (read by the judge, on the seeds a visitor gets first), and each world's chips are its own."""

from __future__ import annotations

import pytest

from concepts.generation import run_generation
from concepts.registry import load_registry
from concepts.sampling import to_pil
from concepts.toy.prompts import attribute_of
from concepts.toy.world import ATTRIBUTES
from concepts.world import read_images

REGISTRY = load_registry()
TOY = REGISTRY.get("toy-shapes")


def named_values(prompt: str) -> dict[str, str]:
    """The attribute values a toy caption names ("top left", "black background" as two words)."""
    text = " ".join(prompt.lower().replace(" on a ", " ").split())
    named = {}
    for attribute, values in ATTRIBUTES.items():
        for value in sorted(values, key=len, reverse=True):  # "top left" before "left"
            phrase = f"{value} background" if attribute == "background" else value
            if f" {phrase} " in f" {text} " and attribute not in named:
                named[attribute] = value
                text = text.replace(phrase, " ")
    return named


@pytest.mark.parametrize("prompt", TOY.examples)
def test_every_toy_example_shows_what_it_names(prompt):
    reader = TOY.knowledge.reader()
    named = named_values(prompt)
    assert len(named) >= 3, named
    for seed in (0, 1):
        image = to_pil(run_generation("toy-shapes", prompt, seed=seed).result.pixels)[0]
        read = read_images(reader, [image])[0]
        wrong = {a: (v, read[a]) for a, v in named.items() if read[a] != v}
        assert not wrong, f"{prompt!r}, seed {seed}: asked vs read {wrong}"


def test_erase_chips_are_concepts_of_their_own_world():
    assert all(attribute_of(c) is not None for c in TOY.concept_examples)  # toy values only
    for name in ("sd14", "sd14-saeuron"):
        assert "dog" in REGISTRY.get(name).concept_examples and "red" not in REGISTRY.get(name).concept_examples


@pytest.mark.parametrize("concept", TOY.concept_examples)
def test_every_erase_chip_opens_on_before_images_that_show_it(concept):
    """The Erase tab's default images of a chip's concept (4 images, seed 0, as the tab opens) show
    the concept before anything is edited, read by the judge: an erase cannot be seen on a smudge."""
    from concepts.edit.service import EditSpec, concept_image_prompts
    from concepts.generation import SHARED_PIPELINES
    from concepts.sampling import GenerationRequest, generate

    prompts = concept_image_prompts(TOY, EditSpec(concept, "erase"), "unused", 4, 0)
    d = TOY.defaults
    request = GenerationRequest(prompts, seed=0, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width)
    images = generate(SHARED_PIPELINES.get(TOY, "cpu"), request).images  # the before images, as the tab draws them
    attribute, value = attribute_of(concept)
    read = [r[attribute] for r in read_images(TOY.knowledge.reader(), images)]
    assert read == [value] * 4, f"{concept}: the judge reads {read} on {prompts}"
