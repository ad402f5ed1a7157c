"""`python -m concepts.toy.train_judge [--out DIR] [--steps N]`: train and save the toy judge."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from . import TOY_DIR
from .judge import JudgeTraining, train_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(TOY_DIR / "judge"))
    for f in fields(JudgeTraining):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args()
    recipe = JudgeTraining(**{f.name: getattr(args, f.name) for f in fields(JudgeTraining)})
    print(json.dumps(train_judge(recipe, args.out), indent=1))


if __name__ == "__main__":
    main()
