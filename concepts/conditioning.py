"""Text conditioning as the UNet takes it, for SD1.x and SDXL pipelines alike.

SD1.x's UNet takes one tensor of text hidden states. SDXL's also takes `added_cond_kwargs`: the
pooled embedding of its second text encoder (`text_embeds`) and six "micro-conditioning" numbers
per image (`time_ids`: original size, crop corner, target size). Both come from the pipeline's own
`encode_prompt` and `_get_add_time_ids`, so the noise predictions are the ones its `__call__` makes.
Under classifier-free guidance every tensor is batched `[uncond, cond]`, like the latents.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .errors import ConceptLabError
from .devices import execution_device


class TextConditioning(NamedTuple):
    """What the UNet is called with besides the latents and the timestep."""

    hidden: torch.Tensor
    """Text hidden states [B, 77, cross_attention_dim]."""
    added: dict[str, torch.Tensor] | None
    """SDXL's `added_cond_kwargs` ({"text_embeds": [B, p], "time_ids": [B, 6]}); None for SD1.x."""

    def unet_kwargs(self) -> dict:
        kwargs: dict = {"encoder_hidden_states": self.hidden}
        if self.added is not None:
            kwargs["added_cond_kwargs"] = self.added
        return kwargs


def is_sdxl(pipe: object) -> bool:
    """True for SDXL pipelines (two text encoders, added conditioning); by attribute, so the SDXL
    class need not be imported (see pipeline.py)."""
    return hasattr(pipe, "text_encoder_2")


@torch.no_grad()
def encode_conditioning(pipe, prompts: list[str], negative_prompt: str, images_per_prompt: int, cfg: bool, height: int, width: int) -> TextConditioning:
    """The conditioning of a batch of prompts: [uncond; cond] under CFG, else cond only."""
    device = execution_device(pipe)
    # No negative prompt is passed as None, as the pipelines' own __call__ does: SDXL then uses zeros
    # for the uncond branch (`force_zeros_for_empty_prompt`); SD1.x encodes "" either way.
    negatives = [negative_prompt] * len(prompts) if cfg and negative_prompt else None
    if not is_sdxl(pipe):
        cond, uncond = pipe.encode_prompt(prompts, device, images_per_prompt, cfg, negative_prompt=negatives)
        return TextConditioning(torch.cat([uncond, cond]) if cfg else cond, None)
    cond, uncond, pooled, pooled_uncond = pipe.encode_prompt(
        prompts, device=device, num_images_per_prompt=images_per_prompt, do_classifier_free_guidance=cfg, negative_prompt=negatives
    )
    projection = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else int(pooled.shape[-1])
    time_ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), dtype=cond.dtype, text_encoder_projection_dim=projection)
    time_ids = time_ids.to(device).repeat(cond.shape[0], 1)
    if cfg:
        return TextConditioning(
            torch.cat([uncond, cond]),
            {"text_embeds": torch.cat([pooled_uncond, pooled]), "time_ids": torch.cat([time_ids, time_ids])},
        )
    return TextConditioning(cond, {"text_embeds": pooled, "time_ids": time_ids})


def require_sd1(pipe, what: str) -> None:
    """Refuse, with a message a user can act on, a feature that calls the UNet itself in SD1.x's way."""
    if is_sdxl(pipe):
        raise ConceptLabError(f"{what} supports Stable Diffusion 1.x pipelines; this model is SDXL. Pick an SD1.x model (e.g. sd14 or toy-shapes).")
