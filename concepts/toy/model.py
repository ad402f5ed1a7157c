"""The toy-shapes diffusion model: a tiny Stable-Diffusion-architecture pipeline, built from config.

AutoencoderKL (64×64 RGB → 16×16×4), a 2-layer CLIP text encoder over the toy vocabulary (one token
per word), and a UNet2DConditionModel with cross-attention at 16×16 and 8×8 (`down_blocks.N.
attentions.M`, `mid_block.attentions.0`, `up_blocks.N.attentions.M`, SD's names), with SD1.x's DDIM
scheduler settings. Saved with `save_pretrained`, it loads through the same code as SD1.4.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..tokenizer import BOS, EOS, build_tokenizer
from .captions import vocabulary

# The paper's three hook points, mirrored: a down-path block, the mid block, an up-path block.
HOOK_BLOCKS = {
    "down": "down_blocks.1.attentions.0",
    "mid": "mid_block.attentions.0",
    "up": "up_blocks.1.attentions.0",
}


@dataclass(frozen=True)
class ToyModelConfig:
    """Widths of the toy pipeline (sized for a 2-core CPU)."""

    unet_channels: tuple[int, int] = (32, 64)
    """UNet widths at 16×16 and 8×8 (the mid block runs at 8×8 with the second width)."""
    attention_heads: int = 2
    """Heads per attention layer (diffusers calls this `attention_head_dim`); few wide heads are
    faster on a CPU than SD's 8 narrow ones at these widths."""
    vae_channels: tuple[int, int, int] = (32, 64, 64)
    """VAE widths at 64, 32 and 16 px: three levels make the latent 4× smaller than the image."""
    vae_mid_attention: bool = False
    """SD's VAE has self-attention in its mid block; at 16×16 on simple shapes it costs time for nothing."""
    text_width: int = 64
    """Text-encoder width, also the UNet's cross-attention width."""
    text_layers: int = 2
    latent_channels: int = 4


# The longest caption is 13 words (+ BOS/EOS); a short context makes cross-attention cheap.
TOKEN_CONTEXT = 24


def build_tokenizer_for_toy() -> CLIPTokenizer:
    return build_tokenizer(vocabulary(), model_max_length=TOKEN_CONTEXT)


def build_vae(cfg: ToyModelConfig = ToyModelConfig()) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=cfg.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=16,
        sample_size=64,
        mid_block_add_attention=cfg.vae_mid_attention,
    )


def build_text_encoder(tokenizer: CLIPTokenizer, cfg: ToyModelConfig = ToyModelConfig()) -> CLIPTextModel:
    vocab = tokenizer.get_vocab()
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=cfg.text_width,
            intermediate_size=2 * cfg.text_width,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=4,
            max_position_embeddings=TOKEN_CONTEXT,
            bos_token_id=vocab[BOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
        )
    )


def build_unet(cfg: ToyModelConfig = ToyModelConfig()) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.attention_heads,
        norm_num_groups=16,
    )


NOISE_SCHEDULES = ("sd", "zero-snr-v")


def build_scheduler(schedule: str = "zero-snr-v") -> DDIMScheduler:
    """The toy's DDIM scheduler, written out so the pipeline has nothing to rewrite (docs/pitfalls.md).

    "sd" is SD1.x exactly (ε-prediction, "leading" steps). Its last training step still leaves
    √ᾱ ≈ 0.07 of the image in the input, enough for a 16×16 latent to show where the object is, so
    a model trained on it reads position from that leak and never from the prompt, and sampling
    (which starts from pure noise) puts objects anywhere. "zero-snr-v" rescales the same betas to
    zero terminal SNR, predicts v and starts sampling at t = 999 ("trailing"), as Lin et al. (2024,
    "Common diffusion noise schedules and sample steps are flawed") prescribe; the pipeline honours
    all three settings from the saved scheduler config.
    """
    if schedule not in NOISE_SCHEDULES:
        raise ValueError(f"noise schedule must be one of {NOISE_SCHEDULES}, not {schedule!r}")
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if schedule == "sd":
        return DDIMScheduler(**common)
    return DDIMScheduler(**common, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")


def assemble_pipeline(vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, unet: UNet2DConditionModel, schedule: str = "zero-snr-v") -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(schedule),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
