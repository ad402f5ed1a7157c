"""Picture helpers the lessons share: captioned examples, and one contact sheet of them for the tab.

Why one picture and not a gallery: a gallery crops each tile to its own square and cuts long
captions, so a wide preview strip or eight captioned images would not read at a glance.
"""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from .reading import Example

TILE = 192
FONT_SIZE = 15
GAP = 12


def row_examples(images: list[Image.Image], captions: list[str]) -> list[Example]:
    """One example per image, enlarged with crisp pixels so a 64-px toy image reads at a glance."""
    return [Example(image.convert("RGB").resize((TILE, TILE), Image.NEAREST), caption) for image, caption in zip(images, captions)]


def contact_sheet(examples: list[Example], per_row: int = 4, height: int = TILE) -> Image.Image | None:
    """The examples in rows of `per_row`, each scaled to `height` px (aspect kept) with its caption below."""
    if not examples:
        return None
    font = ImageFont.load_default(size=FONT_SIZE)
    tiles = []
    for e in examples:
        image = e.image.convert("RGB")
        image = image.resize((max(1, round(image.width * height / image.height)), height), Image.NEAREST)
        lines = textwrap.wrap(e.caption, max(16, image.width // 8))
        tiles.append((image, lines))
    rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
    line_height = FONT_SIZE + 4
    row_heights = [height + GAP + line_height * max(len(lines) for _, lines in row) for row in rows]
    width = max(sum(image.width for image, _ in row) + GAP * (len(row) - 1) for row in rows)
    sheet = Image.new("RGB", (width, sum(row_heights) + GAP * (len(rows) - 1)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for row, row_height in zip(rows, row_heights):
        x = 0
        for image, lines in row:
            sheet.paste(image, (x, y))
            for k, line in enumerate(lines):
                draw.text((x, y + height + 6 + k * line_height), line, fill=(30, 30, 30), font=font)
            x += image.width + GAP
        y += row_height + GAP
    return sheet
