"""Concept Lab — the Gradio app and Hugging Face Space entry point.

This file only assembles the page: the model menu, one tab per panel (each in its own module under
`ui/`, its handlers beside its layout), the theme, the queue and the launch. Every error a user can
cause is shown as a message (`gr.Error`), never a traceback; models are shared read-only across users
and per-user data lives in `gr.State`, never in module globals.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported: no import-time advice

import gradio as gr  # noqa: E402

from concepts.quiet import quiet_libraries  # noqa: E402
from concepts.torch_threads import one_thread_rule, short_turns, use_threads  # noqa: E402
from ui import cancellation, erase, evolution, generate, lessons, links, memory, models, queue_pace, steer, temp_files  # noqa: E402
from ui.common import REGISTRY  # noqa: E402
from ui.style import CSS  # noqa: E402

quiet_libraries()
if __name__ == "__main__" and one_thread_rule():
    use_threads(1)  # served: the main thread never holds torch threads (concepts/torch_threads.py)


def build_app() -> gr.Blocks:
    """The page: a title, the model menu shared by every tab, and the tabs."""
    default = REGISTRY.get()
    # Gradio's copies of returned files: swept every 5 minutes, deleted once 15 minutes old.
    with gr.Blocks(title="Concept Lab", delete_cache=(300, 900)) as demo:
        gr.Markdown(
            "# Concept Lab\nSee, steer and erase the concepts inside a text-to-image diffusion model. "
            "The default model is tiny and runs on a CPU in seconds."
        )
        menu = models.build(default)
        model = menu.active  # the active world: what every tab reads and follows
        with gr.Tabs() as tabs:
            lessons.build()
            generate.build(model, default)
            steer.build(model, default, demo)
            evolution.build(model, default, demo)
            erase.build(model, default)
        links.wire(demo, tabs, menu.menu, menu.active, menu.note)  # share links: settings in the URL
        demo.unload(temp_files.release)  # a closed page's files go at once
        demo.unload(cancellation.session_closed)  # and its running requests stop at the next step
    return demo


demo = build_app()


def launch_style() -> dict:
    """Look of the page, given at launch in Gradio 6 (tests and benchmarks launch with it too)."""
    # At most this many sessions keep state; the oldest go first (Gradio's default is 10,000).
    return {"theme": gr.themes.Soft(), "css": CSS, "state_session_capacity": 100}


if __name__ == "__main__":
    # The app's own log (one line per user error) on the console; other libraries keep their level.
    (handler := logging.StreamHandler()).setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.getLogger("concept_lab").addHandler(handler)
    logging.getLogger("concept_lab").setLevel(logging.INFO)
    memory.keep_memory_returned()  # freed pages go back to the system (ui/memory.py)
    short_turns()  # the UNet worker waits 0.1 ms, not 5 ms, for the interpreter after each op (concepts/torch_threads.py)
    queue_pace.paced(demo.queue(default_concurrency_limit=2)).launch(  # its queue looks for work every 10 ms (ui/queue_pace.py)
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **launch_style(),
    )
