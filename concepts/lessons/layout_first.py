"""Lesson 1, "The layout comes first": in what order does the model decide what it draws?

Each prompt is followed through its denoising steps; the judge reads every step's x0 preview (the
model's current guess of the final image), and an attribute counts as decided at the first step
from which that reading stays what the final image shows.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..evolve.evolution import decided_by_reader, run_evolution
from ..steps import STAGES, StepWindow
from ..toy.prompts import labelled_prompts
from ..toy.world import ATTRIBUTES
from .reading import Bar, Example, LessonReading
from .toy_bench import LESSON_MODEL, ToyBench

PROMPTS = 8
BLOCK = "mid_block.attentions.0"
PAPER = ("The paper reads the layout from SAE features at the very first step (t = 1), finds that style is imposed in the "
         "middle steps and that the final steps change only texture and detail.")


def preview_strip(previews: list[Image.Image], shown: int = 9, size: int = 96) -> Image.Image:
    """A row of x0 previews spread over the run, first and last included."""
    picks = sorted({int(round(x)) for x in np.linspace(0, len(previews) - 1, min(shown, len(previews)))})
    strip = Image.new("RGB", (size * len(picks), size), "white")
    for k, i in enumerate(picks):
        strip.paste(previews[i].convert("RGB").resize((size, size), Image.NEAREST), (k * size, 0))
    return strip


def run(bench: ToyBench, seed: int) -> LessonReading:
    steps = bench.steps
    found: dict[str, list[int]] = {a: [] for a in ATTRIBUTES}
    never: dict[str, int] = {a: 0 for a in ATTRIBUTES}
    examples = []
    scenes = labelled_prompts(PROMPTS, seed, "train")
    for i, (_, prompt) in enumerate(scenes):
        evo = run_evolution(LESSON_MODEL, prompt, seed=seed + i, blocks=[BLOCK], reader=bench.judge)
        for attribute, step in decided_by_reader(evo.readings).items():
            if step is None:
                never[attribute] += 1
            else:
                found[attribute].append(step)
        if i == 0:
            examples.append(Example(preview_strip(evo.previews), f"the x0 preview at 9 of its {steps} steps, left to right"))
    means = {a: float(np.mean(v)) for a, v in found.items() if v}
    order = sorted(means, key=means.get)
    bars = [Bar(a, "mean decision step (judge on the x0 preview)", round(means[a], 2) if a in means else None,
                spread=round(float(np.std(found[a])), 2) if found[a] else None) for a in order + [a for a in ATTRIBUTES if a not in means]]
    bands = [(StepWindow.parse(w, steps).start - 0.5, StepWindow.parse(w, steps).end + 0.5, f"{w} window") for w in STAGES]
    early = StepWindow.parse("early", steps)
    in_early = [a for a in order if means[a] <= early.end]
    finding = (f"Over {PROMPTS} prompts, **{order[0]}** was decided first (mean step {means[order[0]]:.1f} of {steps}) and "
               f"**{order[-1]}** last (step {means[order[-1]]:.1f}). "
               f"Decided on average inside the early window (steps 0–{early.end}): {', '.join(in_early) or 'none'}. "
               "Each bar is a mean over the prompts; the line through it is ± one standard deviation.")
    if any(never.values()):
        finding += " Never settled before the last step: " + ", ".join(f"{a} on {n} prompt{'s' * (n > 1)}" for a, n in never.items() if n) + "."
    table = [{"attribute": a, "mean step": round(means[a], 2), "sd": round(float(np.std(found[a])), 2),
              "decided at step 0": f"{sum(s == 0 for s in found[a])}/{len(found[a])}"} for a in order]
    return LessonReading(
        lesson="layout-first", title="The layout comes first", seed=seed,
        question=f"When is each attribute decided? (mean over {PROMPTS} prompts)", y_label=f"denoising step (of {steps})",
        bars=bars, finding=finding, paper=PAPER, images_per_condition=PROMPTS, y_max=float(steps), bands=bands, table=table,
        examples=examples, example_note=f"The first prompt: “{scenes[0][1]}”, seed {seed}.",
        try_it={"tab": "evolution", "prompt": scenes[0][1], "seed": str(seed), "block": BLOCK},
    )
