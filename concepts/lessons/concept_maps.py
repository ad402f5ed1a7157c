"""Lesson 2, "Where does the model see a concept?": SAE concept maps against the renderer's masks.

For each prompt, the mid block's features are read at every step. Its dictionaries say on which side
each feature fires (object or background), so the block's own "object here" map can be scored
against the true object mask (IoU), on the first step (the paper's setting) and over the middle
window. The grid ceiling is the true mask itself drawn on the block's 8 × 8 grid (each cell's covered
share, cut at the share best over the lesson's prompts): how well so coarse a grid can draw the object.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..evolve.evolution import run_evolution
from ..steps import StepWindow
from ..toy.evaluate_maps import PEAK_THRESHOLD, grid_ceiling, grid_ious, iou, upsampled
from ..toy.masks import object_mask
from ..toy.prompts import labelled_prompts, readable_label
from ..toy.world import ATTRIBUTES
from .reading import Bar, Example, LessonReading
from .toy_bench import LESSON_MODEL, ToyBench

PROMPTS = 8
BLOCK = "mid_block.attentions.0"
PAPER_MIOU = 0.26
PAPER = (f"The paper's concept maps reach a mean IoU of about {PAPER_MIOU} at the mid block on the first step, scored against "
         "Grounded-SAM segmentations of real images (a concept's map cut at 0.1 of its peak).")


def mask_picture(image: Image.Image, found: np.ndarray, truth: np.ndarray, size: int = 160) -> Image.Image:
    """The image, where the block says the object is (white), and where it really is (white)."""
    tiles = [image.convert("RGB"), Image.fromarray((found * 255).astype(np.uint8)).convert("RGB"),
             Image.fromarray((truth * 255).astype(np.uint8)).convert("RGB")]
    out = Image.new("RGB", (size * 3 + 16, size), "white")
    for k, tile in enumerate(tiles):
        out.paste(tile.resize((size, size), Image.NEAREST), (k * (size + 8), 0))
    return out


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    kept = [v for v in values if v is not None]
    return (round(float(np.mean(kept)), 3), round(float(np.std(kept)), 3)) if kept else (None, None)


def run(bench: ToyBench, seed: int) -> LessonReading:
    steps = bench.steps
    middle = [s for s in range(steps) if StepWindow.parse("middle", steps).contains(s)]
    scores: dict[str, list] = {"first step": [], "middle window": [], "ceiling": [], "concepts": []}
    examples = []
    grids: list[np.ndarray] = []
    scenes = labelled_prompts(PROMPTS, seed, "train")
    for i, (scene, prompt) in enumerate(scenes):
        evo = run_evolution(LESSON_MODEL, prompt, seed=seed + i, blocks=[BLOCK], with_previews=False)
        trace = evo.traces[BLOCK]
        truth = object_mask(scene)
        if not (trace.regions and trace.region_maps):
            raise RuntimeError(f"the {BLOCK} dictionaries of {LESSON_MODEL} do not say where features fire; rebuild them")
        side = trace.regions.index("object")
        found = {}
        for name, chosen in (("first step", [0]), ("middle window", middle)):
            regions = upsampled(np.mean([trace.region_maps[s] for s in chosen], axis=0))
            found[name] = regions.argmax(axis=0) == side
            scores[name].append(iou(found[name], truth))
        grids.append(grid_ious(scene, *trace.maps[0].shape[1:]))
        first = upsampled(trace.maps[0])  # the paper's concept IoU on the first step
        names = {readable_label(a, getattr(scene, a)): a for a in ATTRIBUTES}
        for row, label in enumerate(trace.labels):
            if label in names and first[row].max() > 0:
                where = ~truth if names[label] == "background" else truth
                scores["concepts"].append(iou(first[row] >= PEAK_THRESHOLD * first[row].max(), where))
        if i == 0:
            image = bench.draw([prompt], seed + i).images[0]
            examples.append(Example(mask_picture(image, found["middle window"], truth),
                                    "left: the image · middle: where the mid block's features say the object is (middle window) · right: where it is"))
    scores["ceiling"] = grid_ceiling(grids)[1]
    note = f"The first prompt: “{scenes[0][1]}”, seed {seed}."
    rows = {name: mean_sd(values) for name, values in scores.items()}
    bars = [Bar("object vs background, first step", "measured (mean IoU)", rows["first step"][0], spread=rows["first step"][1]),
            Bar("object vs background, middle window", "measured (mean IoU)", rows["middle window"][0], spread=rows["middle window"][1]),
            Bar("the true mask on the 8 × 8 grid", "measured (mean IoU)", rows["ceiling"][0], spread=rows["ceiling"][1]),
            Bar("concept maps, first step (the paper's mIoU)", "measured (mean IoU)", rows["concepts"][0], spread=rows["concepts"][1]),
            Bar("concept maps, first step (the paper's mIoU)", "paper", PAPER_MIOU, paper=True)]
    first_iou, middle_iou, ceiling = rows["first step"][0], rows["middle window"][0], rows["ceiling"][0]
    finding = (f"On the first step the mid block's features already separate object from background at IoU {first_iou:.2f}; "
               f"over the middle window {middle_iou:.2f}. The true mask itself, drawn on the block's coarse 8 × 8 grid, "
               f"scores {ceiling:.2f}: a grid that coarse cannot draw a small star, so no map of this block can score near 1. Single concepts' maps on the first step score {rows['concepts'][0]:.2f}, "
               f"the paper's measure ({PAPER_MIOU} on real images). IoU is overlap ÷ union of two masks: 1 is a perfect match, 0 no overlap.")
    names = {"first step": "object vs background, first step", "middle window": "object vs background, middle window",
             "ceiling": "the true mask on the 8 × 8 grid", "concepts": "concept maps, first step (the paper's mIoU)"}
    table = [{"reading": names[name], "mean IoU": m, "sd over prompts": s, "prompts": PROMPTS} for name, (m, s) in rows.items()]
    return LessonReading(
        lesson="concept-maps", title="Where does the model see a concept?", seed=seed,
        question=f"Do the mid block's concept maps point at the object? (IoU, mean over {PROMPTS} prompts)", y_label="IoU with the true mask",
        bars=bars, finding=finding, paper=PAPER, images_per_condition=PROMPTS, table=table, examples=examples, example_note=note,
        try_it={"tab": "evolution", "prompt": scenes[0][1], "seed": str(seed), "block": BLOCK},
    )
