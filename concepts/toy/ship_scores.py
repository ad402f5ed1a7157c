"""`python -m concepts.toy.ship_scores CONCEPT ...`: compute the toy's CAD scores for these concepts
at its defaults and store them beside its weights (`checkpoints/toy-shapes/cad-scores/`).

Why: the lessons and the Erase tab's suggestions erase red and striped; shipping their scores lets a
fresh Space answer at once instead of attributing for about 12 s first. The files are what
`scores_for` computes (tests/test_shipped_scores.py recomputes one and compares).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from ..edit.cache import load_scores, score_key, score_path, shipped_path
from ..edit.attribution import AttributionConfig
from ..edit.service import settled_mode
from ..generation import SHARED_PIPELINES
from ..quiet import quiet_libraries
from ..registry import load_registry

TOY_MODEL = "toy-shapes"
SHIPPED_CONCEPTS = ("red", "striped")


def key_for(world, pipe, concept: str, objective: str = "erase") -> dict:
    d = world.defaults
    mode = settled_mode(world, None)
    cfg = AttributionConfig(objective=objective, mode=mode, steps=d.steps, guidance=d.guidance, height=d.height, width=d.width,  # type: ignore[arg-type]
                            images=d.attribution_images[mode])
    return score_key(world, pipe.unet, d.concept_template.format(concept=concept), cfg)


def ship(concepts: tuple[str, ...] = SHIPPED_CONCEPTS, model: str = TOY_MODEL) -> list[str]:
    from ..edit.service import scores_for

    world = load_registry().get(model)
    pipe = SHARED_PIPELINES.get(world, "cpu")
    written = []
    for concept in concepts:
        prompt = world.defaults.concept_template.format(concept=concept)
        scores_for(world, pipe, prompt, "erase", None)  # computed into the user cache (or already there)
        key = key_for(world, pipe, concept)
        source, target = score_path(key), shipped_path(world, key)
        if load_scores(source) is None or target is None:
            raise SystemExit(f"no scores for {concept!r} at {source}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(str(target))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concepts.toy.ship_scores", description=__doc__.splitlines()[0])
    parser.add_argument("concepts", nargs="*", default=list(SHIPPED_CONCEPTS))
    args = parser.parse_args(argv)
    quiet_libraries()
    print(json.dumps({"written": ship(tuple(args.concepts))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
