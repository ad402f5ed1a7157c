"""Test set-up: offline Hub with a private cache, tiny SD pipelines built from config.

`HF_HUB_OFFLINE` and the cache location are read by huggingface_hub at import time (docs/pitfalls.md),
so they are set here, before anything imports it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_HUB_HOME = Path(tempfile.mkdtemp(prefix="concept-lab-hf-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_HUB_HOME)
os.environ["HF_HUB_CACHE"] = str(_HUB_HOME / "hub")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("CONCEPT_LAB_CACHE", str(_HUB_HOME / "concept-lab-cache"))  # never the user's score cache
# Gradio names its copy of a returned file by the file's hash, and a server deletes its copies when it
# closes: with one shared folder, a test process whose app closed deleted the pictures that another
# process's page was still showing (the same deterministic image, the same name).
os.environ["GRADIO_TEMP_DIR"] = str(_HUB_HOME / "gradio")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
import torch  # noqa: E402

# pytest-xdist runs the suite in several processes (pytest.ini): the cores are shared among them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="session")
def hub_cache() -> Path:
    """The Hub cache folder that huggingface_hub uses in this test session."""
    path = Path(os.environ["HF_HUB_CACHE"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_pipe():
    """A tiny random SD pipeline (do not modify it in a test: it is shared)."""
    from concepts.thread_safe_tokenizer import shared_safely
    from concepts.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    # Shared by threads in some tests, as the app's cached pipelines are: encode one call at a time, as
    # `pipeline.load_pipeline_from_folder` makes them (a concurrent-hooks test once saw the plain
    # thread's prompt encoded with the other thread's padding, and its image moved by 0.29).
    shared_safely(pipe.tokenizer)
    return pipe


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """The tiny pipeline saved with save_pretrained."""
    from concepts.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))
