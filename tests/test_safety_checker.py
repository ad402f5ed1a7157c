"""A model that ships a safety checker keeps it: flagged images come back black and flagged."""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPImageProcessor

from concepts.hub import Source
from concepts.pipeline import load_pipeline
from concepts.sampling import GenerationRequest, generate


def save_with_tiny_checker(base: StableDiffusionPipeline, folder, flag_everything: bool) -> None:
    torch.manual_seed(0)
    tiny_clip = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(text_config={**tiny_clip, "vocab_size": 100}, vision_config={**tiny_clip, "image_size": 32, "patch_size": 8}, projection_dim=16)
    checker = StableDiffusionSafetyChecker(config)
    if flag_everything:  # every concept score exceeds its threshold
        checker.concept_embeds_weights.data.fill_(-10.0)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    StableDiffusionPipeline(
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet, scheduler=base.scheduler,
        safety_checker=checker, feature_extractor=extractor, requires_safety_checker=True,
    ).save_pretrained(folder)


def test_safety_checker_is_kept_and_applied(tiny_pipe, tmp_path):
    request = GenerationRequest("a red circle", seed=1, steps=2, height=64, width=64)
    save_with_tiny_checker(tiny_pipe, tmp_path / "lenient", flag_everything=False)
    save_with_tiny_checker(tiny_pipe, tmp_path / "strict", flag_everything=True)
    lenient = load_pipeline(Source(path=str(tmp_path / "lenient")), device="cpu")
    assert isinstance(lenient.safety_checker, StableDiffusionSafetyChecker)
    passed = generate(lenient, request)
    assert passed.nsfw == [False] and passed.pixels.abs().sum() > 0
    blocked = generate(load_pipeline(Source(path=str(tmp_path / "strict")), device="cpu"), request)
    assert blocked.nsfw == [True] and blocked.pixels.abs().sum() == 0
