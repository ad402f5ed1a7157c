"""Tiny stand-ins for the published worlds (`sd14-saeuron`, `sdxl-turbo-unbox`), laid out in the Hub
cache under the shipped registry entries' own hook names, subfolders and formats.

The registry written here is the shipped one with only the repos swapped for tiny ones and the
image size made small, so code that works here works on the real entries.
"""

from __future__ import annotations

import json
from pathlib import Path

from hubcache import add_folder_to_hub_cache
from test_real_models import saeuron_folder
from test_sae_formats import write_unbox

from concepts.registry import DEFAULT_REGISTRY
from concepts.tiny import TinyConfig, build_tiny_pipeline, build_tiny_sdxl_pipeline

WORLDS = ("sd14-saeuron", "sdxl-turbo-unbox")
STAND_IN_REPOS = {"CompVis/stable-diffusion-v1-4": "lab/tiny-sd14", "bcywinski/SAeUron": "lab/tiny-saeuron",
                  "stabilityai/sdxl-turbo": "lab/tiny-sdxl-turbo", "surokpro2/sdxl-saes": "lab/tiny-sdxl-saes"}
PROMPTS = [f"a {colour} {shape} on the {side}" for colour in ("red", "green", "blue") for shape in ("circle", "square", "triangle") for side in ("left", "right")]


def build_stand_ins(cache: Path, root: Path, default: str = WORLDS[0]) -> Path:
    """Put the tiny pipelines and SAEs in the Hub cache; return a registry file naming them."""
    shipped = json.loads(DEFAULT_REGISTRY.read_text())["models"]
    sd = root / "sd14"
    build_tiny_pipeline(TinyConfig(layers_per_block=2)).save_pretrained(sd, safe_serialization=True)
    add_folder_to_hub_cache(cache, "lab/tiny-sd14", sd)
    saeuron = root / "saeuron"
    for entry in shipped["sd14-saeuron"]["saes"]:
        saeuron_folder(saeuron / entry["subfolder"], d=32, expansion=4, k=4)
    add_folder_to_hub_cache(cache, "lab/tiny-saeuron", saeuron)
    sdxl = root / "sdxl"
    build_tiny_sdxl_pipeline(levels=3).save_pretrained(sdxl, safe_serialization=True)
    add_folder_to_hub_cache(cache, "lab/tiny-sdxl-turbo", sdxl)
    unbox = root / "unbox"
    for entry in shipped["sdxl-turbo-unbox"]["saes"]:
        write_unbox(unbox / entry["subfolder"], n=128, d=64)
    add_folder_to_hub_cache(cache, "lab/tiny-sdxl-saes", unbox)
    models = {}
    for name in WORLDS:
        spec = json.loads(json.dumps(shipped[name]))
        spec["pipeline"] = {"repo": STAND_IN_REPOS[spec["pipeline"]["repo"]]}
        for entry in spec["saes"]:
            entry["repo"] = STAND_IN_REPOS[entry["repo"]]
        spec["defaults"].update(height=64, width=64, steps=min(spec["defaults"]["steps"], 4))
        models[name] = spec
    registry = root / "registry.json"
    registry.write_text(json.dumps({"default": default, "models": models}, indent=1))
    return registry


def write_prompts(path: Path) -> Path:
    path.write_text("\n".join(PROMPTS) + "\n")
    return path
