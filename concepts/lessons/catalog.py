"""The six lessons, in order, and running one: `run_lesson("moving-objects", seed=3)`.

Each lesson is a few sentences of story and one small live experiment on toy-shapes (at most 8
images per condition) whose numbers come from the judge; the tab, the CLI (`python -m concepts
lesson`) and the benchmark (`benchmarks/bench_lessons.py`) all call `run_lesson`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from ..errors import InvalidInputError, UnknownNameError
from ..progress import ProgressFn, counting_steps
from ..registry import Registry
from ..sampling import MAX_SEED
from . import concept_maps, erase_ripple, labels_weights, layout_first, moving_objects, style_window
from .reading import LessonReading
from .toy_bench import ToyBench, toy_bench


@dataclass(frozen=True)
class Lesson:
    name: str
    title: str
    story: str
    """What a student reads before pressing Run: the question, what the experiment does, what to look at."""
    run: Callable[[ToyBench, int], LessonReading]
    denoising_steps: int
    """Its generations' denoising steps in all, whatever the seed (each generation's step counts once,
    however many images it holds; `tests/test_lessons.py` counts them): the length of Run's progress bar."""
    default_seed: int = 0


LESSONS: dict[str, Lesson] = {lesson.name: lesson for lesson in (
    Lesson("layout-first", "The layout comes first",
           "A diffusion model starts from noise and removes a little of it at every step. At each step it also has a guess of the "
           "final image (the x0 preview). Which things does it settle first: where the object goes, its colour, its texture? "
           "**Run** follows 8 prompts through their 25 steps; the judge reads every preview, and an attribute counts as decided "
           "at the step from which its reading no longer changes.", layout_first.run, 200),
    Lesson("concept-maps", "Where does the model see a concept?",
           "Each feature of a sparse autoencoder (SAE) fires at some positions of a UNet block: its map. On toy-shapes we know "
           "where the object really is, so we can check those maps. **Run** draws 8 prompts and compares where the mid block's "
           "object features fire with the renderer's true mask (IoU: overlap ÷ union, 1 is perfect).", concept_maps.run, 225),
    Lesson("moving-objects", "When can you still move an object?",
           "Steering sets an object's own SAE features into another place while the image is being made. The paper found that "
           "this moves objects only in the early steps. **Run** tries it in the early, middle and final windows on 8 prompts that "
           "leave the position open and 8 that name it, and counts a move as clean only if nothing else changed.", moving_objects.run, 200),
    Lesson("style-window", "Style in the middle",
           "A global edit adds a feature everywhere, to change how things look rather than where they are. The paper found that "
           "style takes in the middle steps. **Run** adds another texture's features to 8 prompts in each window, at the same "
           "strength, and the judge reads the texture.", style_window.run, 100),
    Lesson("erase-ripple", "Erasing a concept, and what else goes",
           "Erasing a concept edits the model's weights for one request. A good erase removes the concept and nothing else. "
           "**Run** erases red with CAD (zero the weights most responsible for red), with UCE (a closed-form edit of the "
           "cross-attention) and with as many random weights, then checks red's own prompts and the same scenes in the other "
           "colours.", erase_ripple.run, 100),
    Lesson("labels-weights", "Labels mark, weights draw",
           "Some SAE features carry a label, such as “striped”, because when they fire the object is striped. Is switching them "
           "off a way to erase stripes? **Run** counts on how many striped scenes those features fire (and on the same scenes with "
           "another texture), then draws the striped prompts with the features switched off, and with CAD's weight erase.", labels_weights.run, 75),
)}


def lesson_names() -> list[str]:
    return list(LESSONS)


def check_lesson(name: str) -> Lesson:
    key = (name or "").strip().lower()
    if key not in LESSONS:
        raise UnknownNameError("lesson", name, lesson_names())
    return LESSONS[key]


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInputError("seed", f"must be a whole number in 0..{MAX_SEED}, got {seed!r}")
    return seed


READINGS_KEPT = 32
"""Lesson readings kept in memory, least recently used first out: a class that opens the teacher's
link runs the same lesson with the same seed, and all but the first student get it at once."""
_READINGS: OrderedDict[tuple, LessonReading] = OrderedDict()
_READINGS_LOCK = threading.Lock()
_RUN_LOCKS = tuple(threading.Lock() for _ in range(16))


def run_lesson(name: str, seed: int | None = None, registry: Registry | None = None, cached: bool = True,
               progress: ProgressFn | None = None) -> LessonReading:
    """Run one lesson's experiment on toy-shapes (or return the same lesson and seed's reading, when
    kept); every hook and weight edit is undone when it returns. Two requests for the same reading
    at once compute it once. `progress` hears each of its generations' denoising steps."""
    lesson = check_lesson(name)
    seed = check_seed(lesson.default_seed if seed is None else seed)
    bench = toy_bench(registry)
    key = (lesson.name, seed, bench.world.name, str(bench.world.base_dir))
    with _RUN_LOCKS[hash(key) % len(_RUN_LOCKS)] if cached else contextlib.nullcontext():
        with _READINGS_LOCK:
            if cached and key in _READINGS:
                _READINGS.move_to_end(key)
                return _READINGS[key]
        started = time.perf_counter()
        with counting_steps(progress, lesson.denoising_steps, "the lesson's generations"):
            reading = lesson.run(bench, seed)
        reading.seconds = round(time.perf_counter() - started, 2)
        with _READINGS_LOCK:
            _READINGS[key] = reading
            while len(_READINGS) > READINGS_KEPT:
                _READINGS.popitem(last=False)
    return reading
