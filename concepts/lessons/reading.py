"""What a lesson measured: bars for its chart, example pictures, and the sentences that say it.

One reading is one draw (one seed: its prompts and noise). The CLI prints it as JSON with the same
numbers the tab draws; docs/lessons.md gives the spread over several seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from PIL import Image


@dataclass
class Bar:
    """One bar of a lesson's chart: a measured value (or the paper's) in one group."""

    group: str
    """Where on the x axis: a window, a method, an attribute."""
    series: str
    """Which bar of the group, named in the legend (e.g. "position-open prompts", "paper")."""
    value: float | None
    """None: not measurable here (e.g. no feature to steer), drawn as a gap with a note."""
    count: int | None = None
    """How many images the value is a share of (shown as k/n); None for means."""
    spread: float | None = None
    """Standard deviation over the images, drawn as an error bar (means only)."""
    paper: bool = False
    """The paper's number, drawn hollow beside the measured ones."""


@dataclass
class Example:
    image: Image.Image
    caption: str


@dataclass
class LessonReading:
    lesson: str
    title: str
    seed: int
    question: str
    """The chart's title: what the lesson asks."""
    y_label: str
    bars: list[Bar]
    finding: str
    """What this draw shows, in sentences built from its numbers."""
    paper: str
    """What the paper reports, for comparison."""
    images_per_condition: int
    try_it: dict[str, str]
    """The panel and settings the "try it yourself" link opens (tab, then the panel's link fields)."""
    y_max: float | None = 1.0
    bands: list[tuple[float, float, str]] = field(default_factory=list)
    """Shaded ranges of the value axis with a name (the denoising windows, for step charts)."""
    table: list[dict] = field(default_factory=list)
    """Extra rows the tab shows as a table (and the JSON carries)."""
    examples: list[Example] = field(default_factory=list)
    example_note: str = ""
    """What the example images are of (their prompt), shown above them."""
    extra: dict = field(default_factory=dict)
    """Facts about how it was measured (e.g. whether CAD's scores came from the cache)."""
    seconds: float = 0.0

    def to_json(self) -> dict:
        """Everything but the pictures (the CLI's --json)."""
        data = asdict(self)
        data.pop("examples")
        data["examples"] = [e.caption for e in self.examples]
        data["bands"] = [list(b) for b in self.bands]
        return data


def reading_from_json(data: dict) -> LessonReading:
    """A reading back from `to_json` (without its pictures): enough to draw its chart again."""
    fields = {k: v for k, v in data.items() if k not in ("examples", "bars", "bands")}
    return LessonReading(**fields, bars=[Bar(**b) for b in data["bars"]], bands=[tuple(b) for b in data.get("bands", [])])


def share(hits: int, total: int) -> float | None:
    return round(hits / total, 3) if total else None


def rate_text(hits: int, total: int) -> str:
    return f"{hits}/{total}" if total else "none"
