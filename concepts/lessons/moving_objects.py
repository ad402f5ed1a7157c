"""Lesson 3, "When can you still move an object?": spatial steering in the early, middle and final windows.

The object's own features (those firing more in its cell than elsewhere, in the baseline) are set
into the diagonally opposite cell and switched off elsewhere, at the same strength in every window,
so only the timing differs. Two kinds of prompt: ones that leave the position open (the paper's
setting, "a photo of a dog") and ones that name it (the edit then fights the prompt).
"""

from __future__ import annotations

from ..steer.steering import region_mask
from ..steps import STAGES
from ..toy.captions import caption
from ..toy.evaluate_steer import object_features, target_cell
from ..toy.prompts import labelled_prompts
from ..toy.world import ATTRIBUTES
from .pictures import row_examples
from .reading import Bar, LessonReading, rate_text, share
from .toy_bench import ToyBench
from .window_steering import BLOCK, Goal, steer_by_window

PROMPTS = 8
STRENGTH = 8.0
MOVED_FEATURES = 8
PAPER_EARLY = 0.80
PAPER = (f"The paper moves objects with early edits (success {PAPER_EARLY:.2f} in a quadrant test, against 0.25 for random "
         "features) and finds that middle and final edits cannot move them; its prompts leave the position open.")


def run(bench: ToyBench, seed: int) -> LessonReading:
    scenes = labelled_prompts(PROMPTS, seed, "train")
    kinds = {"position-open prompts": [caption(s, keep=set(ATTRIBUTES) - {"position"}) for s, _ in scenes],
             "prompts naming the position": [p for _, p in scenes]}
    bars, table, examples, counts, first_goal = [], [], [], {}, None
    for kind, prompts in kinds.items():
        named = kind != "position-open prompts"

        def goal(i, before, maps, loaded, _named=named):
            here = scenes[i][0].position if _named else before["position"]  # an open prompt's object is where it was drawn
            moving = object_features(maps.numpy(), here, MOVED_FEATURES)
            target = target_cell(here)
            return Goal("position", target, tuple(moving), region_mask(target, 64, 64)) if moving else None

        _, baseline_images, tallies = steer_by_window(bench, prompts, seed, STRENGTH, goal)
        for window in STAGES:
            t = tallies[window]
            counts[(kind, window)] = t
            bars.append(Bar(window, f"{kind}: object in the target cell", share(t.success, t.trials), count=t.trials))
            bars.append(Bar(window, f"{kind}: clean scene", share(t.clean, t.trials), count=t.trials))
            table.append({"prompts": kind, "window": window, "object in target cell": rate_text(t.success, t.trials),
                          "clean scene": rate_text(t.clean, t.trials), "nothing to move": t.no_goal})
        if not named:
            first_goal = tallies["early"].goals[0]
            examples = row_examples([baseline_images[0], *(tallies[w].images[0] for w in STAGES if tallies[w].images)],
                                    ["baseline", *(f"steered in the {w} window" for w in STAGES if tallies[w].images)])
    bars.append(Bar("early", "paper: moved", PAPER_EARLY, paper=True))
    open_ = {w: counts[("position-open prompts", w)] for w in STAGES}
    named_ = {w: counts[("prompts naming the position", w)] for w in STAGES}
    finding = ("On position-open prompts the judge read the object in the target cell in "
               + ", ".join(f"{rate_text(open_[w].success, open_[w].trials)} {w}" for w in STAGES)
               + "; a **clean scene** (the object moved, everything else as before, nothing left behind) in "
               + ", ".join(f"{rate_text(open_[w].clean, open_[w].trials)} {w}" for w in STAGES) + ". "
               + "On prompts naming the position: clean in " + ", ".join(f"{rate_text(named_[w].clean, named_[w].trials)} {w}" for w in STAGES) + ". ")
    clean_rate = {w: share(open_[w].clean, open_[w].trials) or 0.0 for w in STAGES}
    if clean_rate["early"] > max(clean_rate["middle"], clean_rate["final"]):
        finding += ("As in the paper, only early edits move the object cleanly. Later, the layout is already set: the judge may still "
                    "find the object's colour in the target cell, but as a blob painted over the old scene, so counting only "
                    "“target read” would hide the paper's pattern.")
    else:
        finding += ("In this draw the toy does not show the paper's pattern: the early window is not the cleanest. "
                    "Try other seeds; docs/lessons.md gives the spread over several.")
    return LessonReading(
        lesson="moving-objects", title="When can you still move an object?", seed=seed,
        question=f"Move the object to the opposite cell: how often does it work? ({PROMPTS} prompts per bar, strength {STRENGTH:g})",
        y_label="share of prompts", bars=bars, finding=finding, paper=PAPER, images_per_condition=PROMPTS, table=table, examples=examples,
        example_note=f"The first position-open prompt: “{kinds['position-open prompts'][0]}”, seed {seed}.",
        try_it={"tab": "steer", "prompt": kinds["position-open prompts"][0], "seed": str(seed), "block": BLOCK, "window": "early",
                **({"features": ", ".join(map(str, first_goal.features)), "where": first_goal.target} if first_goal else {}),
                "strength": f"{STRENGTH:g}"},
    )
