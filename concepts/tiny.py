"""Tiny Stable-Diffusion-architecture pipelines built from config, as diffusers' own tests build them.

They have SD1.x's module naming (`down_blocks.N.attentions.M`, `mid_block.attentions.0`,
`up_blocks.N.attentions.M`, no attentions in `up_blocks.0`) at a width that runs in milliseconds,
so tests exercise the real loading, hooking and sampling code with no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from .tokenizer import BOS, EOS, build_tokenizer

TINY_WORDS = ("a", "red", "green", "blue", "circle", "square", "triangle", "on", "the", "left", "right", "background")


@dataclass(frozen=True)
class TinyConfig:
    """Widths of a tiny SD pipeline; defaults give a ~1M-parameter UNet with 64 px images."""

    unet_channels: tuple[int, ...] = (32, 64)
    """Block widths: the attention widths of the down/up blocks and of the mid block."""
    vae_channels: tuple[int, ...] = (16, 32)
    """VAE widths; the latent is 2**(len−1) times smaller than the image."""
    text_width: int = 32
    """CLIP text encoder width, also the UNet's cross-attention width."""
    text_layers: int = 2
    layers_per_block: int = 1
    """2 gives the up blocks three attentions, as SD1.x has (SAeUron hooks `up_blocks.1.attentions.1` and `.2`)."""
    sample_size: int = 64
    """Default image size in pixels."""
    seed: int = 0
    """Seeds the random weights."""


def build_tiny_pipeline(config: TinyConfig = TinyConfig()) -> StableDiffusionPipeline:
    """A randomly initialised SD-architecture pipeline (CPU, fp32, DDIM, no safety checker)."""
    torch.manual_seed(config.seed)
    down = ("CrossAttnDownBlock2D",) * (len(config.unet_channels) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(config.unet_channels) - 1)
    vae_scale = 2 ** (len(config.vae_channels) - 1)
    unet = UNet2DConditionModel(
        sample_size=config.sample_size // vae_scale,
        in_channels=4,
        out_channels=4,
        block_out_channels=config.unet_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=config.text_width,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=config.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(config.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(config.vae_channels),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=config.sample_size,
    )
    tokenizer = build_tokenizer(TINY_WORDS)
    text_encoder = clip_text_encoder(tokenizer, config.text_width, config.text_layers, heads=4, intermediate=2 * config.text_width)
    return assemble(vae, text_encoder, tokenizer, unet)


def clip_text_encoder(tokenizer, width: int, layers: int, heads: int, intermediate: int, projection_dim: int | None = None) -> CLIPTextModel:
    """A random CLIP text encoder over `tokenizer`'s vocabulary, with SD1.x's 77-token context; with
    `projection_dim`, the projected variant SDXL uses as its second encoder (pooled `text_embeds`)."""
    vocab = tokenizer.get_vocab()
    model_class = CLIPTextModel if projection_dim is None else CLIPTextModelWithProjection
    extra = {} if projection_dim is None else {"projection_dim": projection_dim}
    return model_class(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=width,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            bos_token_id=vocab[BOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
            **extra,
        )
    )


def assemble(vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer, unet: UNet2DConditionModel) -> StableDiffusionPipeline:
    """An SD pipeline from parts, with SD1.x's DDIM settings written out so the pipeline has nothing
    to rewrite (docs/pitfalls.md), and no safety checker."""
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def build_tiny_sdxl_pipeline(seed: int = 0, levels: int = 2):
    """A random SDXL-architecture pipeline as diffusers' SDXL tests build one: two text encoders
    (the second projected and pooled), "text_time" added conditioning, linear projections, no
    attention in the first down block and the last up block, so attentions sit in `down_blocks.1`,
    `mid_block` and `up_blocks.0` as in SDXL; `levels=3` adds SDXL's third level, so every block
    sdxl-unbox hooks (`down_blocks.2.attentions.1`, `up_blocks.0.attentions.1`, ...) exists."""
    from diffusers import StableDiffusionXLPipeline  # only here: importing it makes transformers warn

    torch.manual_seed(seed)
    text_width, time_dim = 32, 8
    if levels not in (2, 3):
        raise ValueError(f"levels must be 2 or 3, got {levels}")
    widths = (32, 64, 64)[:levels]
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=widths,
        layers_per_block=2,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        transformer_layers_per_block=(1, 2, 2)[:levels],
        attention_head_dim=(2, 4, 4)[:levels],
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + text_width,
        cross_attention_dim=2 * text_width,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    tokenizer = build_tokenizer(TINY_WORDS)
    tokenizer_2 = build_tokenizer(TINY_WORDS)
    text_encoder = clip_text_encoder(tokenizer, text_width, 2, heads=4, intermediate=2 * text_width)
    text_encoder_2 = clip_text_encoder(tokenizer_2, text_width, 2, heads=4, intermediate=2 * text_width, projection_dim=text_width)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing")
    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                                     unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False)


def save_tiny_pipeline(folder: str | Path, config: TinyConfig = TinyConfig()) -> Path:
    """Write a tiny pipeline with `save_pretrained` (safetensors) and return its folder."""
    folder = Path(folder)
    build_tiny_pipeline(config).save_pretrained(folder, safe_serialization=True)
    return folder


if __name__ == "__main__":  # python -m concepts.tiny OUT_DIR
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m concepts.tiny OUT_DIR")
    print(save_tiny_pipeline(sys.argv[1]))
