"""toy-shapes: a world of rendered shapes whose concepts are known exactly (docs/toy.md)."""

from ..registry import CHECKPOINTS_DIR

TOY_DIR = CHECKPOINTS_DIR / "toy-shapes"
"""The shipped toy world: pipeline, judge/, saes/, model card."""
