"""Who holds the interpreter lock in a busy server: a summary of a `py-spy record --gil` profile.

    py-spy record --gil -r 50 -d 90 -f raw -o PROFILE -p <the app's pid>   # while a class runs
    python benchmarks/gil_profile.py PROFILE[.gz] --rate 50 --seconds 90 [--out FILE]

With `--gil`, py-spy keeps only the samples in which some thread held the lock, so the samples kept ÷
(rate × seconds) is the share of the time the lock was held. Each kept sample is put to one library
by the innermost frame in one (matplotlib, torch, diffusers, the app's `concepts/` and `ui/`, gradio,
asyncio, ...), and the samples whose stack passes through matplotlib are split by use: Gradio drawing
a figure into a PNG for the page (`encode_plot_to_base64`), `tight_layout`, or building figures; the
app's own samples are split by the file of their innermost frame in it.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402

LIBRARIES = ("matplotlib", "PIL", "gradio", "uvicorn", "starlette", "fastapi", "anyio", "asyncio", "concepts", "ui", "torch",
             "diffusers", "transformers", "numpy", "json", "pydantic", "httpx", "safetensors")


def library_of(frames: list[str]) -> str:
    """The library of the innermost frame whose file lies in one of LIBRARIES ("other" if none):
    py-spy names a file by its path under site-packages or the app's root, "torch/nn/modules/module.py"."""
    for frame in reversed(frames):
        path = frame.rsplit("(", 1)[-1]
        for name in LIBRARIES:
            if path.startswith(name + "/"):
                return name
    return "other"


def matplotlib_use(frames: list[str]) -> str:
    if any("encode_plot_to_base64" in f for f in frames):
        return "gradio drawing a figure into a PNG"
    if any("tight_layout" in f for f in frames):
        return "tight_layout"
    return "building figures"


def summary(lines: list[str], rate: float, seconds: float) -> dict:
    samples, libraries, matplotlib, leaves, app_files = 0, Counter(), Counter(), Counter(), Counter()
    for line in lines:
        stack, count = line.rstrip("\n").rsplit(" ", 1)
        n, frames = int(count), stack.split(";")
        samples += n
        library = library_of(frames)
        libraries[library] += n
        if library in ("concepts", "ui"):  # the app's own code: by the file of its innermost frame there
            app_files[next(f.rsplit("(", 1)[-1].split(":")[0] for f in reversed(frames) if f.rsplit("(", 1)[-1].startswith(library + "/"))] += n
        if any("(matplotlib/" in f for f in frames):
            matplotlib[matplotlib_use(frames)] += n
        leaves[frames[-1]] += n
    share = lambda n: round(n / samples, 3)  # noqa: E731
    return {"samples_with_the_lock_held": samples, "lock_held_share_of_time": round(samples / (rate * seconds), 3),
            "by_library": {name: share(n) for name, n in libraries.most_common()},
            "through_matplotlib_by_use": {name: share(n) for name, n in matplotlib.most_common()},
            "app_code_by_file": {name: share(n) for name, n in app_files.most_common(8)},
            "top_frames": {name: share(n) for name, n in leaves.most_common(12)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--rate", type=float, required=True, help="py-spy's -r")
    parser.add_argument("--seconds", type=float, required=True, help="py-spy's -d")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    opener = gzip.open if args.profile.endswith(".gz") else open
    with opener(args.profile, "rt") as raw:
        lines = [line for line in raw if line.strip()]
    emit({"what": "who holds the interpreter lock (py-spy --gil)", "profile": Path(args.profile).name, "rate": args.rate,
          "seconds": args.seconds, **summary(lines, args.rate, args.seconds)}, args.out)


if __name__ == "__main__":
    main()
