"""Lessons: the paper's findings as six short live experiments on toy-shapes (the first tab, and
`python -m concepts lesson`)."""

from .catalog import LESSONS, Lesson, check_lesson, lesson_names, run_lesson
from .chart import lesson_figure
from .reading import Bar, Example, LessonReading

__all__ = ["LESSONS", "Bar", "Example", "Lesson", "LessonReading", "check_lesson", "lesson_figure", "lesson_names", "run_lesson"]
