"""The model menu: what each world needs, whether it is here, and no broken tabs when it is not.

Choosing a world first loads its pipeline (a Hub world downloads it on first use). Only when that
works does the choice reach the tabs, through the hidden `active` field they all listen to; when it
fails (no network, no disk, a broken checkpoint) the menu goes back to the last world that worked and
the note beside it says why, once, instead of every tab showing an error.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import gradio as gr

from concepts.errors import ConceptLabError
from concepts.generation import SHARED_PIPELINES
from concepts.registry import ModelWorld

from .common import DEVICE, REGISTRY

log = logging.getLogger("concept_lab")


def cached_here(world: ModelWorld) -> str:
    """Whether the world's pipeline is on this machine already (embedded, or in the Hub cache)."""
    if world.pipeline.path is not None:
        return "on disk"
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(world.pipeline.repo, "model_index.json", revision=world.pipeline.revision)
    except Exception:  # an unreadable cache is the same as no cache for this note
        found = None
    return "in the Hub cache" if isinstance(found, str) else "not downloaded yet"


def world_note(world: ModelWorld, problem: str | None = None) -> str:
    """One line under the menu: what the world needs and whether it is here."""
    needs = world.needs or "no notes"
    text = f"**{world.title}** · needs: {needs} · pipeline {cached_here(world)}"
    if problem:
        text += f"\n\n⚠️ {problem}"
    return text


def choose_world(chosen: str, active: str):
    """Load the chosen world; on success it becomes active, else the menu returns to the active one."""
    world = REGISTRY.get(chosen)
    if chosen == active:  # also the menu's own return after a failed choice: keep the note that says why
        return gr.update(), active, gr.update()
    try:
        SHARED_PIPELINES.get(world, DEVICE)
    except ConceptLabError as exc:
        log.info("user error: %s cannot load: %s", chosen, exc)
        problem = f"{world.title} cannot load here: {str(exc).rstrip('.')}. Staying on {REGISTRY.get(active).title}."
        return gr.update(value=active), active, world_note(world, problem)
    return gr.update(), chosen, world_note(world)


class ModelMenu(NamedTuple):
    menu: gr.Dropdown
    active: gr.Textbox
    """Hidden: the world every tab reads and follows."""
    note: gr.Markdown


def build(default: ModelWorld) -> ModelMenu:
    """The menu, its note and the hidden field holding the active world (the tabs' input)."""
    menu = gr.Dropdown(choices=[(REGISTRY.get(n).title, n) for n in REGISTRY.names], value=default.name, label="Model", elem_id="model")
    note = gr.Markdown(world_note(default), elem_id="model-note")
    active = gr.Textbox(value=default.name, visible=False, elem_id="active-model")
    menu.change(choose_world, inputs=[menu, active], outputs=[menu, active, note], api_visibility="private")
    return ModelMenu(menu, active, note)
