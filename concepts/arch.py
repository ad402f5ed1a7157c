"""Stable Diffusion v1.4's (and SDXL's) architecture built from config with random weights, at full
width or divided down, so hook points and speed can be checked without downloading 4 GB of weights.

The numbers are SD1.4's own configs (`unet/config.json`, `vae/config.json`,
`text_encoder/config.json` of CompVis/stable-diffusion-v1-4): UNet widths 320/640/1280/1280 with
two layers per block and 8 attention heads, cross-attention width 768, a 12-layer CLIP text
encoder, and a VAE of widths 128/256/512/512. `divisor` divides every width (norm groups follow),
so `divisor=1` is SD1.4's shape exactly and `divisor=8` runs on a laptop CPU.

SDXL's numbers are stabilityai/sdxl-turbo's `unet/config.json` (SDXL base's, at sample size 64):
widths 320/640/1280 with 1/2/10 transformer layers, no attention in the first down block, 2048-wide
cross-attention (both text encoders), and "text_time" added conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

from .tiny import TINY_WORDS, assemble, clip_text_encoder
from .tokenizer import build_tokenizer

SD14_UNET_CHANNELS = (320, 640, 1280, 1280)
SD14_VAE_CHANNELS = (128, 256, 512, 512)
SD14_TEXT_WIDTH = 768
SD14_TEXT_LAYERS = 12
SD14_HEADS = 8
# The paper's three hook points and the block widths d that SD1.4's SAEs read there (docs/paper.md).
SD14_HOOK_WIDTHS = {"down_blocks.2.attentions.1": 1280, "mid_block.attentions.0": 1280, "up_blocks.1.attentions.0": 1280}
# SAeUron's two blocks in SD1.4 (objects, styles), which it reads at the output.
SAEURON_HOOK_WIDTHS = {"up_blocks.1.attentions.1": 1280, "up_blocks.1.attentions.2": 1280}
# sdxl-unbox's four blocks in SDXL(-Turbo).
SDXL_UNBOX_HOOK_WIDTHS = {"down_blocks.2.attentions.1": 1280, "mid_block.attentions.0": 1280, "up_blocks.0.attentions.0": 1280, "up_blocks.0.attentions.1": 1280}
SDXL_UNET_CHANNELS = (320, 640, 1280)
SDXL_TRANSFORMER_LAYERS = (1, 2, 10)
SDXL_HEADS = (5, 10, 20)
SDXL_CROSS_WIDTH = 2048
SDXL_POOLED_WIDTH = 1280
SDXL_TIME_EMBED = 256


@dataclass(frozen=True)
class ArchConfig:
    divisor: int = 1
    """Every width is divided by this (1: SD1.4's shapes)."""
    seed: int = 0


def _widths(channels: tuple[int, ...], divisor: int) -> tuple[int, ...]:
    return tuple(max(32, c // divisor) for c in channels)


def sd14_unet(cfg: ArchConfig = ArchConfig()) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=_widths(SD14_UNET_CHANNELS, cfg.divisor),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=max(32, SD14_TEXT_WIDTH // cfg.divisor),
        attention_head_dim=SD14_HEADS,  # diffusers' name for the number of heads in SD1.x configs
        norm_num_groups=32 if cfg.divisor <= 2 else 8,
    )


def sd14_pipeline(cfg: ArchConfig = ArchConfig()) -> StableDiffusionPipeline:
    """A random-weight pipeline of SD1.4's architecture (fp32, CPU; move and cast as needed)."""
    torch.manual_seed(cfg.seed)
    text_width = max(32, SD14_TEXT_WIDTH // cfg.divisor)
    tokenizer = build_tokenizer(TINY_WORDS)
    heads = next(h for h in (12, 8, 4, 2, 1) if text_width % h == 0)
    text_encoder = clip_text_encoder(tokenizer, text_width, SD14_TEXT_LAYERS, heads=heads, intermediate=4 * text_width)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=_widths(SD14_VAE_CHANNELS, cfg.divisor),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32 if cfg.divisor <= 2 else 8,
        sample_size=512,
    )
    return assemble(vae, text_encoder, tokenizer, sd14_unet(cfg))


def sdxl_unet(cfg: ArchConfig = ArchConfig()) -> UNet2DConditionModel:
    """SDXL's UNet (random weights); `divisor` narrows every width but keeps the depth."""
    time_dim = max(8, SDXL_TIME_EMBED // cfg.divisor)
    pooled = max(32, SDXL_POOLED_WIDTH // cfg.divisor)
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=_widths(SDXL_UNET_CHANNELS, cfg.divisor),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=SDXL_TRANSFORMER_LAYERS,
        attention_head_dim=SDXL_HEADS,  # the number of heads, in diffusers' legacy naming
        use_linear_projection=True,
        cross_attention_dim=max(32, SDXL_CROSS_WIDTH // cfg.divisor),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + pooled,
        norm_num_groups=32 if cfg.divisor <= 2 else 8,
    )
