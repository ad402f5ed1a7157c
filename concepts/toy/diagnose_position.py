"""`python -m concepts.toy.diagnose_position`: why does the toy model put objects in the wrong place?

Position is the one toy attribute that needs the UNet to know where a latent cell is: every other
attribute looks the same wherever the object sits. The UNet has no positional encoding; only its
convolutions' zero padding tell a cell where it is. Three numbers per cross-attention block, each at
the first sampling step (t = T, pure noise, where layout is decided):

- **probe**: accuracy of a ridge probe reading the cell's 3×3 region (top left … bottom right) from
  the block's input features, one noise sample at a time (chance 1/9). High: the block *can* know.
- **attention lift**: mean cross-attention weight of the position words inside the region they
  name, over their mean weight everywhere (1.0: the block attends to "left" the same everywhere).
- **x0 lift** (whole model): how much of the change in the predicted x0 that each position prompt
  causes (against the mean over the nine) falls inside the named region, over its area share
  (1.0: position words do not move the predicted object).

Prints one JSON object. Reads nothing from the judge; a few seconds on the CPU.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import torch

from ..pipeline import PipelineCache
from ..registry import load_registry
from ..sampling import fresh_scheduler
from .captions import POSITION_PHRASES
from .world import POSITIONS

BLOCKS = ("down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.0", "up_blocks.1.attentions.0")


@dataclass
class PositionDiagnosis:
    noise_samples: int = 16
    seed: int = 0
    prompt: str = "a large red solid square {position} on a black background"


def region_of_cells(side: int) -> torch.Tensor:
    """[side, side] index 0…8 of the 3×3 region (row-major, top left first) each cell lies in."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return (ys * 3 // side) * 3 + xs * 3 // side


def ridge_probe_accuracy(features: torch.Tensor, labels: torch.Tensor, ridge: float = 1e-2) -> float:
    """Held-out accuracy of a one-vs-rest ridge probe (first 3/4 fit, last 1/4 scored)."""
    x = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    fit = torch.arange(len(x)) < len(x) * 3 // 4
    targets = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).double()
    w = torch.linalg.solve(x[fit].T @ x[fit] + ridge * torch.eye(x.shape[1], dtype=x.dtype), x[fit].T @ targets[fit])
    return float(((x[~fit] @ w).argmax(1) == labels[~fit]).double().mean())


class CrossAttentionRecorder:
    """Records the head-averaged cross-attention probabilities [B, cells, tokens] of one attn2."""

    def __init__(self, attention) -> None:
        self.attention, self.probabilities = attention, None
        self.handle = attention.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        context = kwargs.get("encoder_hidden_states")
        heads = module.heads
        q = module.to_q(hidden).unflatten(-1, (heads, -1)).transpose(1, 2)
        k = module.to_k(context).unflatten(-1, (heads, -1)).transpose(1, 2)
        self.probabilities = torch.softmax(q @ k.transpose(-1, -2) * module.scale, -1).mean(1)

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def diagnose(pipe, cfg: PositionDiagnosis = PositionDiagnosis()) -> dict:
    unet, tokenizer, text_encoder = pipe.unet, pipe.tokenizer, pipe.text_encoder
    scheduler = fresh_scheduler(pipe)
    scheduler.set_timesteps(25)
    t = scheduler.timesteps[0]
    n = cfg.noise_samples
    noise = torch.randn(n, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size, generator=torch.Generator().manual_seed(cfg.seed))

    def encode(prompts: list[str]) -> tuple[torch.Tensor, list[list[str]]]:
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        return text_encoder(ids)[0], [tokenizer.convert_ids_to_tokens(row) for row in ids]

    blocks = [b for b in BLOCKS if _has(unet, b)]
    inputs: dict[str, torch.Tensor] = {}
    handles = [unet.get_submodule(b).register_forward_pre_hook(lambda m, a, k, b=b: inputs.__setitem__(b, a[0] if a else k["hidden_states"]), with_kwargs=True) for b in blocks]
    recorders = {b: CrossAttentionRecorder(unet.get_submodule(b + ".transformer_blocks.0.attn2")) for b in blocks}
    try:
        empty, _ = encode([""] * n)
        unet(noise, t, empty)
        probe = {}
        for b in blocks:
            f = inputs[b]
            side = f.shape[-1]
            probe[b] = round(ridge_probe_accuracy(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]), region_of_cells(side).flatten().repeat(n)), 3)
        attention_lift = {b: [] for b in blocks}
        x0 = {}
        for index, position in enumerate(POSITIONS):
            context, tokens = encode([cfg.prompt.format(position=POSITION_PHRASES[position])] * n)
            out = unet(noise, t, context).sample
            x0[position] = scheduler.step(out, t, noise).pred_original_sample.mean(0)
            words = set(position.split())
            columns = [i for i, tok in enumerate(tokens[0]) if tok.replace("</w>", "") in words]
            for b in blocks:
                weights = recorders[b].probabilities[..., columns].sum(-1).mean(0)  # [cells]
                side = int(weights.numel() ** 0.5)
                inside = region_of_cells(side).flatten() == index
                attention_lift[b].append(float(weights[inside].mean() / weights.mean()))
    finally:
        for h in handles:
            h.remove()
        for r in recorders.values():
            r.remove()
    mean_x0 = torch.stack(list(x0.values())).mean(0)
    x0_lift = []
    for index, position in enumerate(POSITIONS):
        energy = ((x0[position] - mean_x0) ** 2).sum(0)  # [H, W]
        inside = region_of_cells(energy.shape[-1]) == index
        x0_lift.append(float(energy[inside].sum() / energy.sum().clamp_min(1e-12) / inside.double().mean()))
    return {
        "timestep": int(t),
        "probe_accuracy": probe,
        "probe_chance": round(1 / 9, 3),
        "attention_lift": {b: round(sum(v) / len(v), 3) for b, v in attention_lift.items()},
        "x0_lift": round(sum(x0_lift) / len(x0_lift), 3),
        "x0_lift_per_position": {p: round(v, 2) for p, v in zip(POSITIONS, x0_lift)},
    }


def _has(module, name: str) -> bool:
    try:
        module.get_submodule(name + ".transformer_blocks.0.attn2")
        return True
    except AttributeError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy-shapes")
    parser.add_argument("--noise-samples", type=int, default=16)
    args = parser.parse_args()
    pipe = PipelineCache().get(load_registry().get(args.model), device="cpu")
    print(json.dumps(diagnose(pipe, PositionDiagnosis(noise_samples=args.noise_samples)), indent=1))


if __name__ == "__main__":
    main()
