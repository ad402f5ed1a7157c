"""Lesson 5, "Erasing a concept, and what else goes": CAD, UCE and random weights on one colour.

Each method edits the model for this request only (the edit is undone when the images are drawn).
The colour's own prompts show whether it went; the same scenes in every other colour show the
ripple: which neighbours changed with it. A random ablation of as many weights as CAD zeroes is the
baseline CAD's attribution must beat.
"""

from __future__ import annotations

from ..edit import AblationHooks
from ..edit.checks import random_plan
from ..edit.service import EditSpec
from ..toy.captions import caption
from ..toy.prompts import scenes_showing, with_value
from ..toy.world import ATTRIBUTES
from .pictures import row_examples
from .reading import Bar, LessonReading, rate_text, share
from .toy_bench import ToyBench

CONCEPT = "red"
PROMPTS = 8
PAPER = ("CAD's authors erase objects and styles by zeroing the top-attributed feed-forward weights and report that other "
         "concepts are mostly kept; erasure papers call what else changes the ripple effect (neighbouring concepts go too).")


def others_of(concept: str) -> list[str]:
    return [c for c in ATTRIBUTES["colour"] if c != concept]


def plans(bench: ToyBench, concept: str, seed: int) -> tuple[dict, bool]:
    """The three edits of the lesson (CAD and UCE at the model's defaults, and random weights), and
    whether CAD's scores came from a cache."""
    cad_scores, cad = bench.edit(EditSpec(concept))
    _, uce = bench.edit(EditSpec(concept, method="uce", keep=tuple(others_of(concept)), scenes=8))
    return {"CAD": cad, "UCE": uce, "random weights": random_plan(bench.pipe.unet, cad.count, seed=seed, like=cad)}, cad_scores.cached


def run(bench: ToyBench, seed: int, concept: str = CONCEPT) -> LessonReading:
    scenes = scenes_showing(concept, PROMPTS, seed)
    others = others_of(concept)
    own = [caption(s) for s in scenes]
    swapped = [with_value(s, others[i % len(others)]) for i, s in enumerate(scenes)]  # the same scenes, every other colour in turn
    neighbours = [caption(s) for s in swapped]
    edits, cad_cached = plans(bench, concept, seed)
    rows, bars, weights, example_images = {}, [], {}, []
    for method, plan in [("before", None), *edits.items()]:
        result = bench.draw(own + neighbours, seed, None if plan is None else (lambda plan=plan: [AblationHooks(bench.pipe.unet, plan)]))
        reads = bench.read(result)
        hits = sum(r["colour"] == concept for r in reads[:PROMPTS])
        kept = {c: [reads[PROMPTS + i]["colour"] == c for i, s in enumerate(swapped) if s.colour == c] for c in others}
        rest = sum(r[a] == getattr(s, a) for r, s in zip(reads[:PROMPTS], scenes) for a in ATTRIBUTES if a != "colour")
        rows[method] = (hits, kept, rest)
        bars.append(Bar(method, f"{concept} on {concept} prompts", share(hits, PROMPTS), count=PROMPTS))
        bars.append(Bar(method, "other colours still right", share(sum(sum(v) for v in kept.values()), PROMPTS), count=PROMPTS))
        weights[method] = "" if plan is None else f"{plan.count:,}"
        example_images += [result.images[0], result.images[PROMPTS]]
    # One row per reading, one column per edit: the ripple reads down a column.
    table = [{"judged": f"{concept} on its {PROMPTS} prompts", **{m: rate_text(rows[m][0], PROMPTS) for m in rows}}]
    table += [{"judged": f"{c} kept (same scene in {c})", **{m: rate_text(sum(rows[m][1][c]), len(rows[m][1][c])) for m in rows}} for c in others]
    table.append({"judged": f"rest of the {concept} images (shape, size …) right", **{m: rate_text(rows[m][2], PROMPTS * (len(ATTRIBUTES) - 1)) for m in rows}})
    table.append({"judged": "weights edited", **weights})
    hardest = min(others, key=lambda c: sum(rows["CAD"][1][c]) / max(1, len(rows["CAD"][1][c])))
    finding = (f"{concept.capitalize()} was read on its own prompts " + ", ".join(f"{rate_text(rows[m][0], PROMPTS)} {m}" for m in rows)
               + ". Other colours (the same scenes, recoloured) still right: "
               + ", ".join(f"{rate_text(sum(sum(v) for v in rows[m][1].values()), PROMPTS)} {m}" for m in rows) + ". "
               f"Under CAD the colour that suffered most was {hardest} "
               f"({rate_text(sum(rows['CAD'][1][hardest]), len(rows['CAD'][1][hardest]))}). "
               "Random weights are the control: as many weights as CAD zeroes, chosen at random.")
    labels = ["before", *edits]
    examples = row_examples(example_images[0::2] + example_images[1::2],
                            [f"{m}, {concept} prompt" for m in labels] + [f"{m}, {swapped[0].colour} prompt" for m in labels])
    return LessonReading(
        lesson="erase-ripple", title="Erasing a concept, and what else goes", seed=seed,
        question=f"Erase {concept}: is it gone, and what else went? ({PROMPTS} prompts per bar)",
        y_label="share of prompts", bars=bars, finding=finding, paper=PAPER, images_per_condition=PROMPTS, table=table, examples=examples,
        example_note=f"Top row: “{own[0]}”; bottom row: the same scene in {swapped[0].colour}. Seed {seed}.",
        try_it={"tab": "erase", "concept": concept, "method": "cad", "action": "erase", "seed": str(seed), "kept": "\n".join(neighbours[:2])},
        extra={"cad_scores_from_cache": cad_cached},
    )
