"""Share links: a panel's settings in the page URL, restored and run when the link is opened.

Why settings in the link, not Gradio's `gr.DeepLinkButton`: a deep link points at a snapshot stored
on the server, which a Space restart or a reinstall loses; a link that carries the settings re-runs
anywhere the app runs, and gives the same images (sampling is seeded). The cost is that a link
re-computes instead of replaying.

A link is `?tab=steer&model=toy-shapes&prompt=...&seed=3&...`. Opening one runs three steps:
1. the model: loaded as the model menu loads it (a world that cannot load says so, nothing else runs);
2. the fields: each parsed as a typed value would be (a bad value is named in a message and the
   panel does not run);
3. the panel's own handler, with the restored values.
A painted mask travels as 32 × 32 bits in hex (`mask=`): steering reads masks on the block's grid,
at most 16 × 16 in the paper's blocks, so this loses nothing a steering edit uses.
"""

from __future__ import annotations

import inspect
import math
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from concepts.errors import ConceptLabError, InvalidInputError, one_line

from .common import HEAVY, STATE_TTL_S, REGISTRY, user_error
from .models import choose_world
from .steer_inputs import painted_mask

MASK_CELLS = 32
MAX_TEXT = 2000
"""Longest text a link may carry in one field (a prompt is cut by its encoder far earlier)."""


@dataclass
class Field:
    """One linkable input: its name in the URL, its component and how a URL value becomes a value."""

    name: str
    component: Any
    parse: Callable[[str, Any], Any]
    """(text, world) → the component's value; raises InvalidInputError naming the field."""
    encode: Callable[[Any], str | None] = lambda value: None if value is None else str(value)


@dataclass
class Panel:
    name: str
    tab_id: str
    fields: list[Field]
    run: tuple[Callable, list, list] | None = None
    """(handler, inputs, outputs) run when a link to this panel is opened."""
    places: dict | None = None
    """The queue places that run waits for, as the panel's own button does (None: the long requests')."""
    link_box: Any = None
    copy_button: Any = None


PANELS: dict[str, Panel] = {}
"""Every panel that registered its linkable inputs, by name (the link's `tab`)."""


# ---- parsers: a URL value, checked as the panel checks a typed one ----

def text(name: str, limit: int = MAX_TEXT) -> Callable[[str, Any], str]:
    def parse(value: str, world) -> str:
        if len(value) > limit:
            raise InvalidInputError(name, f"is {len(value)} characters long in the link; at most {limit}")
        return value
    return parse


def integer(name: str, low: int, high: int) -> Callable[[str, Any], int]:
    def parse(value: str, world) -> int:
        try:
            number = int(value)
        except ValueError:
            raise InvalidInputError(name, f"{value[:40]!r} in the link is not a whole number") from None
        if not low <= number <= high:
            raise InvalidInputError(name, f"{number} in the link is outside {low}..{high}")
        return number
    return parse


def real(name: str, low: float, high: float) -> Callable[[str, Any], float]:
    def parse(value: str, world) -> float:
        try:
            number = float(value)
        except ValueError:
            raise InvalidInputError(name, f"{value[:40]!r} in the link is not a number") from None
        if not math.isfinite(number) or not low <= number <= high:
            raise InvalidInputError(name, f"{value[:40]} in the link is not a finite number in {low:g}..{high:g}")
        return number
    return parse


def choice(name: str, options: Callable[[Any], list[str]]) -> Callable[[str, Any], str]:
    def parse(value: str, world) -> str:
        allowed = options(world)
        if value not in allowed:
            shown = ", ".join(allowed[:12]) + (" ..." if len(allowed) > 12 else "")
            raise InvalidInputError(name, f"{value[:60]!r} in the link is not one of {shown}")
        return value
    return parse


def mask_to_text(painting: dict | None) -> str | None:
    """An ImageEditor value's painted pixels as MASK_CELLS² bits in hex (None when nothing is painted)."""
    try:
        painted = (painted_mask(painting) > 0).float()[None, None]
    except InvalidInputError:  # nothing painted: no mask in the link
        return None
    cells = F.adaptive_avg_pool2d(painted, MASK_CELLS)[0, 0] >= 0.5
    if not cells.any():
        return None
    bits = np.packbits(cells.numpy().astype(np.uint8).ravel())
    return bits.tobytes().hex()


def mask_from_text(name: str) -> Callable[[str, Any], dict]:
    def parse(value: str, world) -> dict:
        size = MASK_CELLS * MASK_CELLS // 4
        if len(value) != size or any(c not in "0123456789abcdef" for c in value.lower()):
            raise InvalidInputError(name, f"must be {size} hex digits ({MASK_CELLS} × {MASK_CELLS} cells), got {len(value)} characters")
        cells = np.unpackbits(np.frombuffer(bytes.fromhex(value), np.uint8))[: MASK_CELLS * MASK_CELLS].reshape(MASK_CELLS, MASK_CELLS)
        height, width = world.defaults.height, world.defaults.width
        pixels = F.interpolate(torch.from_numpy(cells).float()[None, None], size=(height, width), mode="nearest")[0, 0].numpy() > 0
        layer = np.zeros((height, width, 4), np.uint8)
        layer[pixels] = (0, 229, 255, 255)
        return {"background": None, "layers": [layer], "composite": None}
    return parse


def sampling_fields(prompt, seed, steps, guidance) -> list[Field]:
    """The four inputs every panel shares."""
    return [Field("prompt", prompt, text("prompt")), Field("seed", seed, integer("seed", 0, 2**63 - 1)),
            Field("steps", steps, integer("steps", 1, 100)), Field("guidance", guidance, real("guidance", 0.0, 20.0))]


# ---- registering panels (each tab's build) and wiring (app.py) ----

def panel(name: str, tab_id: str, fields: list[Field], run: tuple[Callable, list, list] | None = None,
          places: dict | None = None) -> Panel:
    """Register a panel's linkable inputs and add its "Copy link" row (call inside the tab's layout);
    `places`: the queue its run waits in when a link is opened (the panel's own button's)."""
    entry = Panel(name, tab_id, fields, run, places)
    with gr.Row():
        entry.copy_button = gr.Button("Copy link to these settings", size="sm", elem_id=f"{name}-copy-link", scale=0)
        entry.link_box = gr.Textbox(label="Share link (opens this panel with these settings and runs it)", interactive=False,
                                    buttons=["copy"], elem_id=f"{name}-link", scale=4)
    PANELS[name] = entry
    return entry


def settings_query(tab: str, model: str, settings: dict[str, str | None]) -> str:
    """A link's query from settings as text (empty ones left out): a copied link, or a lesson's "try it yourself"."""
    return urllib.parse.urlencode([("tab", tab), ("model", model), *((k, v) for k, v in settings.items() if v not in (None, ""))])


def _query(panel_name: str, model: str, *values) -> str:
    return settings_query(panel_name, model, {f.name: f.encode(value) for f, value in zip(PANELS[panel_name].fields, values)})


COPY_JS = """(q) => { if (!q) return q; const url = window.location.origin + window.location.pathname + '?' + q;
  if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {}); return url; }"""


def wire(demo: gr.Blocks, tabs: gr.Tabs, menu, active, note) -> None:
    """The copy buttons, and restoring a link when the page opens."""
    for entry in PANELS.values():
        entry.copy_button.click(lambda model, *values, _n=entry.name: _query(_n, model, *values), inputs=[active, *[f.component for f in entry.fields]],
                     outputs=entry.link_box, api_visibility="private").then(None, inputs=entry.link_box, outputs=entry.link_box, js=COPY_JS)
    state = gr.State(None, time_to_live=STATE_TTL_S)
    all_fields = [f for entry in PANELS.values() for f in entry.fields]
    load = demo.load(restore_world, inputs=active, outputs=[menu, active, note, state], api_visibility="private")
    step = load.then(restore_fields, inputs=[state, active], outputs=[state, tabs, *[f.component for f in all_fields]], api_visibility="private")
    for entry in PANELS.values():
        if entry.run is not None:
            handler, inputs, outputs = entry.run
            step.then(_runner(entry.name, handler, len(outputs)), inputs=[state, *inputs], outputs=outputs, api_visibility="private",
                      **(entry.places or HEAVY))


def restore_world(active: str, request: gr.Request):
    """Step 1: the link's model, loaded as the menu loads one. Returns the link (or None) as state."""
    query = dict(request.query_params) if request is not None else {}
    if "tab" not in query:
        return gr.update(), active, gr.update(), None
    try:
        if query["tab"] not in PANELS:
            raise InvalidInputError("tab", f"{query['tab'][:40]!r} in the link is not one of {', '.join(PANELS)}")
        model = query.get("model", active)
        if model not in REGISTRY.names:
            raise InvalidInputError("model", f"{model[:60]!r} in the link is not one of {', '.join(REGISTRY.names)}")
    except ConceptLabError as exc:
        gr.Warning(f"This link cannot be opened: {one_line(exc)}")
        user_error(exc)  # the one log line
        return gr.update(), active, gr.update(), None
    menu_update, now_active, note = choose_world(model, active)
    if now_active != model:  # the model could not load: the note says why; nothing else runs
        return menu_update, now_active, note, None
    return gr.update(value=model), now_active, note, {"query": query, "ok": False}


def restore_fields(state: dict | None, active: str):
    """Step 2: every field of the linked panel, parsed; a bad value is named and nothing runs."""
    all_fields = [f for entry in PANELS.values() for f in entry.fields]
    keep = [gr.update()] * len(all_fields)
    if not state:
        return None, gr.update(), *keep
    query, entry = state["query"], PANELS[state["query"]["tab"]]
    world = REGISTRY.get(active)
    updates = list(keep)
    try:
        for f in entry.fields:
            if f.name in query:
                updates[all_fields.index(f)] = gr.update(value=f.parse(query[f.name], world))
    except ConceptLabError as exc:
        gr.Warning(f"This link cannot be opened: {one_line(exc)}")
        user_error(exc)
        return None, gr.update(selected=entry.tab_id), *keep
    return {**state, "ok": True}, gr.update(selected=entry.tab_id), *updates


def _runner(name: str, handler: Callable, outputs: int) -> Callable:
    """Step 3: the panel's handler, only for the panel the link names and only when it parsed. The
    student's request is handed on to a handler that takes one, as the panel's own button does: an
    evolution's downloads then go in the student's folder, deleted when their page closes."""
    takes_request = "request" in inspect.signature(handler).parameters

    def run(request: gr.Request, state: dict | None, *inputs):
        if not state or not state.get("ok") or state["query"]["tab"] != name:
            return tuple(gr.update() for _ in range(outputs)) if outputs > 1 else gr.update()
        return handler(*inputs, request=request) if takes_request else handler(*inputs)
    return run
