"""One experiment, taken home: a zip with its settings, the command that reproduces it, its images,
what was measured, and the versions and weights it came from.

`command.sh` runs the same computation through `python -m concepts` (same seed, same code path, and
the same number of CPU threads, since torch splits its sums by thread), so on the same machine and
versions it gives the same images; `versions.json` says which those were, and `weights_digest`
which weights (`concepts.weights_digest`).
"""

from __future__ import annotations

import io
import json
import platform
import shlex
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .weights_digest import weights_digest

PACKAGES = ("torch", "diffusers", "transformers", "huggingface_hub", "safetensors", "gradio", "numpy")
ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str | None:
    """The commit of this checkout (read from .git without running git), or None outside a clone."""
    head = ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (ROOT / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def versions(unet=None) -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version(), "concept_lab_commit": code_version(), "torch_threads": torch.get_num_threads()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    if unet is not None:
        found["unet_weights_digest"] = weights_digest(unet.named_parameters())
    return found


def experiment_zip(settings: dict[str, Any], command: list[str], images: dict[str, Image.Image], measured: dict[str, Any],
                   unet=None, files: dict[str, bytes] | None = None) -> bytes:
    """The zip's bytes: settings.json, command.sh, images/<name>.png, measured.json, versions.json
    and any extra `files` (e.g. a painted mask the command reads)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("settings.json", json.dumps(settings, indent=1))
        archive.writestr("command.sh", "#!/usr/bin/env bash\n# Reproduces this experiment: run it in the unzipped folder, with this repository on PYTHONPATH.\n"
                         "# CPU sums are split by thread, so the same thread count gives the same pixels.\n"
                         f"export OMP_NUM_THREADS={torch.get_num_threads()}\n" + shlex.join(command) + "\n")
        for name, image in images.items():
            png = io.BytesIO()
            image.save(png, format="PNG")
            archive.writestr(f"images/{name}.png", png.getvalue())
        archive.writestr("measured.json", json.dumps(measured, indent=1))
        archive.writestr("versions.json", json.dumps(versions(unet), indent=1))
        for name, data in (files or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()
