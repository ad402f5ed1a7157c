"""Lesson 4, "Style in the middle": global texture steering in each denoising window.

The features the dictionary labels with another texture (striped, dotted, outlined, solid) are
added at every position with the global edit, at the same strength in every window. Success: the
judge reads the new texture; a clean success also keeps every other attribute and adds no stray paint.
"""

from __future__ import annotations

from ..steps import STAGES
from ..toy.prompts import labelled_prompts
from ..toy.world import ATTRIBUTES
from .pictures import row_examples
from .reading import Bar, LessonReading, rate_text, share
from .toy_bench import ToyBench
from .window_steering import BLOCK, Goal, steer_by_window

PROMPTS = 8
STRENGTH = 1000.0
PAPER_MIDDLE = 0.93
PAPER = (f"The paper imposes a style with middle-window global edits (success {PAPER_MIDDLE:.2f}); early ones also change "
         "the composition, final ones only the texture.")


def other_texture(concepts: dict | None, current: str, turn: int) -> tuple[str, tuple[int, ...]] | None:
    """Another texture this SAE's dictionary labels, rotating with the prompt; None when it labels none."""
    table = (concepts or {}).get("concepts", {})
    options = [(value, tuple(table[value])) for value in ATTRIBUTES["texture"] if value != current and table.get(value)]
    return options[turn % len(options)] if options else None


def run(bench: ToyBench, seed: int) -> LessonReading:
    scenes = labelled_prompts(PROMPTS, seed, "train")
    prompts = [p for _, p in scenes]

    def goal(i, before, maps, loaded):
        found = other_texture(loaded.concepts, scenes[i][0].texture, i)
        return None if found is None else Goal("texture", found[0], found[1], None)

    _, baseline_images, tallies = steer_by_window(bench, prompts, seed, STRENGTH, goal)
    bars, table = [], []
    for window in STAGES:
        t = tallies[window]
        bars.append(Bar(window, "texture changed to the target", share(t.success, t.trials), count=t.trials))
        bars.append(Bar(window, "clean (the rest kept)", share(t.clean, t.trials), count=t.trials))
        table.append({"window": window, "texture changed": rate_text(t.success, t.trials), "clean": rate_text(t.clean, t.trials),
                      "prompts without a labelled texture feature": t.no_goal})
    bars.append(Bar("middle", "paper: style imposed", PAPER_MIDDLE, paper=True))
    rates = {w: share(tallies[w].success, tallies[w].trials) for w in STAGES}
    best = max((w for w in STAGES if rates[w] is not None), key=lambda w: rates[w], default=None)
    finding = ("The judge read the target texture in " + ", ".join(f"{rate_text(tallies[w].success, tallies[w].trials)} {w}" for w in STAGES)
               + " (clean: " + ", ".join(f"{rate_text(tallies[w].clean, tallies[w].trials)} {w}" for w in STAGES) + "). ")
    if best == "middle":
        finding += "As in the paper, the middle window is where style takes best. "
    elif best is not None:
        finding += f"Here the {best} window does best, not the middle one as in the paper. "
    top = max((r for r in rates.values() if r is not None), default=0.0)
    if top < PAPER_MIDDLE - 0.2:
        finding += f"In every window far fewer prompts change than the paper's {PAPER_MIDDLE:.0%}: the toy's texture features are weak handles."
    first = tallies["middle"].goals[0] if tallies["middle"].goals else None
    examples = row_examples([baseline_images[0], *(tallies[w].images[0] for w in STAGES if tallies[w].images)],
                            ["baseline", *(f"{tallies[w].goals[0].target} added in the {w} window" if tallies[w].goals[0] else f"{w} window: no texture feature to add"
                                                          for w in STAGES if tallies[w].images)])
    return LessonReading(
        lesson="style-window", title="Style in the middle", seed=seed,
        question=f"Add another texture everywhere: in which window does it take? ({PROMPTS} prompts per bar, strength {STRENGTH:g})",
        y_label="share of prompts", bars=bars, finding=finding, paper=PAPER, images_per_condition=PROMPTS, table=table, examples=examples, example_note=f"The first prompt: “{prompts[0]}”, seed {seed}.",
        try_it={"tab": "steer", "prompt": prompts[0], "seed": str(seed), "block": BLOCK, "window": "middle", "where": "global",
                **({"concept": first.target} if first else {}), "strength": f"{STRENGTH:g}"},
    )
