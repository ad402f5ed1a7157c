"""The Lessons tab (the first one): the paper's findings as six short live experiments on toy-shapes.

Each lesson is a story, one Run (a small experiment the judge scores), a chart of what it measured
beside what the paper reports, the example images, and a link that opens the matching panel set up
for it. The experiments themselves live in `concepts.lessons`, shared with the CLI.
"""

from __future__ import annotations

import gradio as gr

from concepts.lessons import LESSONS, lesson_figure, run_lesson
from concepts.lessons.pictures import contact_sheet
from concepts.lessons.toy_bench import LESSON_MODEL

from . import experiment, links, texts
from .common import LESSON_PLACES, STATE_TTL_S, REGISTRY, as_int, gpu, progress_callback, user_errors

PANEL_NAMES = {"steer": "Steer", "evolution": "Evolution", "erase": "Erase / amplify"}
CHOICES = [(f"{i}. {lesson.title}", name) for i, (name, lesson) in enumerate(LESSONS.items(), start=1)]
FIRST = next(iter(LESSONS))


def story(name: str) -> str:
    lesson = LESSONS.get(name)
    return f"### {lesson.title}\n{lesson.story}" if lesson else ""


def try_it_link(settings: dict[str, str]) -> str:
    """A markdown link that opens the lesson's panel with its settings (a share link, run on open)."""
    panel = PANEL_NAMES.get(settings.get("tab", ""), settings.get("tab", ""))
    query = links.settings_query(settings["tab"], LESSON_MODEL, {k: v for k, v in settings.items() if k != "tab"})
    return f"**Try it yourself:** [open the {panel} tab set up like the lesson's first prompt](?{query}) (it runs when it opens)."


def cleared():
    """Empty outputs, for when another lesson is chosen."""
    return None, gr.Image(value=None, label="Example images"), "", "", gr.Dataframe(value=[], headers=None), "", None


@gpu
@user_errors
def run_lesson_tab(name: str, seed: float, progress: gr.Progress = gr.Progress()):
    """Run one lesson; returns (chart, example images, what it found, the paper, the table, the try-it link, its JSON)."""
    reading = run_lesson(name, seed=as_int(seed, "seed"), registry=REGISTRY, progress=progress_callback(progress))
    rows = reading.table
    headers = list(dict.fromkeys(k for row in rows for k in row))
    table = gr.Dataframe(value=[[row.get(h, "") for h in headers] for row in rows], headers=headers)
    finding = (f"**What the judge measured** (seed {reading.seed}, {reading.images_per_condition} images per condition, "
               f"{reading.seconds:.1f} s): {reading.finding}\n\nOne seed is one draw of prompts and noise: change it to see the spread.")
    sheet = gr.Image(value=contact_sheet(reading.examples), label=f"Example images. {reading.example_note}")
    return (lesson_figure(reading), sheet, finding,
            f"**What the paper reports:** {reading.paper}", table, try_it_link(reading.try_it), reading.to_json())


def build() -> None:
    """The tab's layout and events (inside the app's Blocks)."""
    with gr.Tab("Lessons", id="lessons", elem_id="lessons-tab"):
        gr.Markdown(
            "Six short lessons on what happens inside a text-to-image model, each a small live experiment on the toy model. "
            "Pick a lesson, read its story and press **Run**: a judge that knows the truth of every toy image counts what "
            "happened, and the chart puts it beside what the paper found on Stable Diffusion (hollow bars)."
        )
        texts.glossary()
        with gr.Row():
            with gr.Column(scale=2):
                lesson = gr.Radio(CHOICES, value=FIRST, label="Lesson", elem_id="lesson-choice")
                seed = gr.Number(value=LESSONS[FIRST].default_seed, precision=0, label="Seed", minimum=0, elem_id="lesson-seed",
                                 info="Which prompts and noise the experiment draws; another seed is another draw")
                run = gr.Button("Run", variant="primary", elem_id="lesson-run")
            with gr.Column(scale=3):
                text = gr.Markdown(story(FIRST), elem_id="lesson-story")
        chart = gr.Plot(label="What was measured, beside the paper", elem_id="lesson-chart")
        finding = gr.Markdown(elem_id="lesson-finding")
        paper = gr.Markdown(elem_id="lesson-paper")
        examples = gr.Image(label="Example images", type="pil", format="png", elem_id="lesson-examples", buttons=[], interactive=False)
        table = gr.Dataframe(label="Every count behind the chart", interactive=False, elem_id="lesson-table")
        try_it = gr.Markdown(elem_id="lesson-try-it")
        measured = gr.State(None, time_to_live=STATE_TTL_S)  # the last reading's JSON, for the experiment zip
        outputs = [chart, examples, finding, paper, table, try_it, measured]
        links.panel("lessons", "lessons", [
            links.Field("lesson", lesson, links.choice("lesson", lambda world: list(LESSONS))),
            links.Field("seed", seed, links.integer("seed", 0, 2**63 - 1)),
        ], run=(run_lesson_tab, [lesson, seed], outputs), places=LESSON_PLACES)
        download, experiment_file = experiment.download_row("lesson")
    download.click(experiment.lesson_experiment, inputs=[measured, examples], outputs=experiment_file, api_visibility="private")
    lesson.change(story, inputs=lesson, outputs=text, api_visibility="private")
    lesson.input(cleared, outputs=outputs, api_visibility="private")  # a student picking another lesson: its chart under this story would mislead (not on a link's restore, whose run may already have answered)
    run.click(run_lesson_tab, inputs=[lesson, seed], outputs=outputs, api_name="lesson", **LESSON_PLACES)
