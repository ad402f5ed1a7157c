"""Pictures of an `Evolution`: emergence curves, steps × concepts heatmaps, composition maps, the
decision-step chart, and the exports (GIF, PNG strip, JSON). Matplotlib runs headless (Agg)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ..heatmaps import heatmap_overlay  # noqa: E402
from ..steps import step_t  # noqa: E402
from .evolution import (  # noqa: E402
    NO_CONCEPT,
    BlockTrace,
    Evolution,
    decided_by_features,
    decided_by_reader,
)

PALETTE = [tuple(int(255 * c) for c in colormaps["tab20"](i)[:3]) for i in range(20)]


def shown_steps(count: int, most: int = 10) -> list[int]:
    """Up to `most` step indices spread over the run, always the first and the last."""
    if count <= most:
        return list(range(count))
    return sorted({int(round(x)) for x in np.linspace(0, count - 1, most)})


def default_concepts(evo: Evolution, block: str, count: int = 6) -> list[str]:
    """The concepts strongest at the final step of a block."""
    trace = evo.traces[block]
    final = trace.maps[-1].mean(axis=(1, 2)) if trace.maps else np.zeros(0)
    order = np.argsort(-final)[:count]
    return [trace.labels[i] for i in order if final[i] > 0]


def emergence_figure(evo: Evolution, concepts: list[str] | None = None) -> Figure:
    """Each concept's score over the steps, one panel per block."""
    blocks = list(evo.traces)
    fig = Figure(figsize=(4.2 * len(blocks), 3.2))  # not pyplot's: a server would keep every request's figure
    axes = fig.subplots(1, len(blocks), squeeze=False, sharex=True)
    for ax, block in zip(axes[0], blocks):
        trace = evo.traces[block]
        curves = trace.curves()
        for label in concepts or default_concepts(evo, block):
            if label in trace.labels:
                ax.plot(range(len(curves)), curves[:, trace.labels.index(label)], label=label, linewidth=1.8)
        ax.set_title(block, fontsize=10)
        if not ax.get_legend_handles_labels()[0]:
            ax.text(0.5, 0.5, "no labelled concept\nof this block fires here", transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.35")
        ax.set_xlabel("denoising step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("concept score (mean of its map)")
    fig.tight_layout()
    return fig


FONT_SIZE = 16
"""Text drawn into figure images: readable when the figure is shown about 1300 px wide."""


def _font(size: int = FONT_SIZE):
    return ImageFont.load_default(size=size)


def heatmap_grid(evo: Evolution, block: str, concepts: list[str], most_steps: int = 10, cell: int = 112) -> Image.Image:
    """Rows: concepts; columns: steps; each cell the concept's map over that step's preview (each
    map scaled to its own peak, so brightness compares positions, not cells)."""
    trace = evo.traces[block]
    steps = shown_steps(len(trace.maps), most_steps)
    rows = [c for c in concepts if c in trace.labels]
    label_width, header = 170, 26
    grid = Image.new("RGB", (label_width + cell * len(steps), header + cell * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(grid)
    font = _font()
    for j, s in enumerate(steps):
        draw.text((label_width + j * cell + 6, 4), f"step {s}", fill="black", font=font)
    if not rows:
        draw.text((8, header + 8), "no labelled concept of this block fires in this generation", fill="black", font=font)
    for i, label in enumerate(rows):
        draw.text((6, header + i * cell + cell // 2 - FONT_SIZE // 2), label[:18], fill="black", font=font)
        for j, s in enumerate(steps):
            fmap = trace.maps[s][trace.labels.index(label)]
            grid.paste(heatmap_overlay(evo.previews[s], fmap, size=cell), (label_width + j * cell, header + i * cell))
    return grid


def composition_image(evo: Evolution, block: str, step: int, size: int = 256, opacity: float = 0.55) -> Image.Image:
    """The dominant concept per position as colour over the step's preview (see `composition_legend`)."""
    trace = evo.traces[block]
    best = trace.composition(step)
    colours = np.zeros((*best.shape, 3), np.float32)
    for index in np.unique(best):
        if index >= 0:
            colours[best == index] = PALETTE[index % len(PALETTE)]
    layer = Image.fromarray(colours.astype(np.uint8)).resize((size, size), Image.NEAREST)
    alpha = Image.fromarray(((best >= 0) * int(255 * opacity)).astype(np.uint8)).resize((size, size), Image.NEAREST)
    # The preview underneath in light gray: the overlay's colours name concepts, and a red object under
    # a red-coded concept would read as one.
    gray = evo.previews[step].convert("L").resize((size, size), Image.NEAREST).point(lambda v: 128 + v // 2)
    return Image.composite(layer, gray.convert("RGB"), alpha)


def composition_strip(evo: Evolution, block: str, most_steps: int = 10, cell: int = 128) -> Image.Image:
    """Composition maps of spread-out steps side by side, with the colour legend underneath."""
    trace = evo.traces[block]
    steps = shown_steps(len(trace.maps), most_steps)
    present = sorted({int(i) for s in steps for i in np.unique(trace.composition(s)) if i >= 0})
    per_row, line, header = 5, FONT_SIZE + 8, 26
    rows = max(1, (len(present) + per_row - 1) // per_row)
    strip = Image.new("RGB", (max(cell * len(steps), 5 * 220), header + cell + 6 + line * rows), "white")
    draw = ImageDraw.Draw(strip)
    font = _font()
    for j, s in enumerate(steps):
        draw.text((j * cell + 6, 4), f"step {s}", fill="black", font=font)
        strip.paste(composition_image(evo, block, s, size=cell), (j * cell, header))
    if not present:
        draw.text((6, header + cell + 6), "no labelled concept names a position in these steps", fill="black", font=font)
    for k, index in enumerate(present):
        x, y = (k % per_row) * 220 + 6, header + cell + 6 + (k // per_row) * line
        draw.rectangle([x, y + 3, x + 14, y + 17], fill=PALETTE[index % len(PALETTE)], outline="black")
        draw.text((x + 20, y), trace.labels[index], fill="black", font=font)
    return strip


def composition_legend(trace: BlockTrace, step: int) -> list[tuple[str, str]]:
    """(label, #rrggbb) for the concepts present in a step's composition map."""
    present = [int(i) for i in np.unique(trace.composition(step)) if i >= 0]
    return [(trace.labels[i], "#%02x%02x%02x" % PALETTE[i % len(PALETTE)]) for i in present] or [(NO_CONCEPT, "#ffffff")]


def decided_figure(decisions: dict[str, dict[str, float | None]], steps: int, title: str = "When is it decided?") -> Figure:
    """Horizontal bars: per attribute, the step from which each source reads its final value. Rows run
    top-down in the first source's decision order (layout before texture reads off the figure); what
    that source never settled goes last, alphabetically."""
    sources = list(decisions)
    attributes = decision_order(decisions)
    fig = Figure(figsize=(6.0, 0.45 * max(3, len(attributes)) + 1.2))
    ax = fig.subplots()
    offset = 0.6 / max(1, len(sources))
    for k, source in enumerate(sources):
        ys = [i + k * offset for i in range(len(attributes))]
        points = [(y, decisions[source].get(a)) for y, a in zip(ys, attributes) if decisions[source].get(a) is not None]
        colour = f"C{k}"
        ax.hlines([y for y, _ in points], 0, [v for _, v in points], colors=colour, linewidth=2.5, alpha=0.6)
        ax.scatter([v for _, v in points], [y for y, _ in points], color=colour, s=40, label=source, zorder=3)
        for y, v in points:
            ax.annotate(str(v), (v, y), xytext=(6, -4), textcoords="offset points", fontsize=7)
    ax.set_yticks([i + 0.3 - offset / 2 for i in range(len(attributes))], attributes)
    ax.set_xlim(-0.5, steps)
    ax.set_xlabel(f"denoising step (of {steps}) from which the reading stays final")
    ax.set_title(title, fontsize=10, pad=24)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def decision_order(decisions: dict[str, dict[str, float | None]]) -> list[str]:
    """Every attribute any source read, earliest first by the first source's step; unsettled ones last."""
    first = next(iter(decisions.values()), {})
    names = sorted({a for d in decisions.values() for a in d})
    return sorted(names, key=lambda a: (first.get(a) is None, first.get(a) or 0.0))


def decisions(evo: Evolution, block: str) -> dict[str, dict[str, int | None]]:
    """Decision steps by source: the judge on the previews (when there is one) and the block's features."""
    out: dict[str, dict[str, int | None]] = {}
    if evo.readings:
        out["judge on the x0 preview"] = decided_by_reader(evo.readings)
    out[f"SAE features ({block})"] = decided_by_features(evo.traces[block])
    return out


def save_gif(previews: list[Image.Image], path: Path, size: int = 192, ms_per_step: int = 160) -> Path:
    frames = [p.convert("RGB").resize((size, size), Image.NEAREST) for p in previews]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_step, loop=0)
    return path


def save_strip(previews: list[Image.Image], path: Path, most: int = 13) -> Path:
    steps = shown_steps(len(previews), most)
    w, h = previews[0].size
    strip = Image.new("RGB", (w * len(steps), h))
    for j, s in enumerate(steps):
        strip.paste(previews[s], (j * w, 0))
    strip.save(path)
    return path


def evolution_record(evo: Evolution, preview_paths: list[str], top: int = 5) -> dict:
    """The per-step data as JSON-ready values."""
    n = len(evo.previews)
    return {
        "model": evo.world.name,
        "prompt": evo.request.prompt,
        "seed": evo.request.seed,
        "guidance": evo.request.guidance,
        "steps": [
            {
                "index": i,
                "t": round(step_t(i, n), 4),
                "timestep": evo.timesteps[i],
                "preview": preview_paths[i],
                "top_concepts": [{"label": c.label, "score": round(c.score, 5), "block": c.block} for c in evo.top_concepts(i, top)],
                **({"judge": evo.readings[i]} if evo.readings else {}),
            }
            for i in range(n)
        ],
        "curves": {block: {label: [round(float(v), 5) for v in trace.curves()[:, j]] for j, label in enumerate(trace.labels)} for block, trace in evo.traces.items()},
    }


def save_json(data: dict, path: Path) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path
