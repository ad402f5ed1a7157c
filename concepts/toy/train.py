"""`python -m concepts.toy.train`: train the toy-shapes pipeline (VAE, then UNet + text encoder).

Seeded and resumable: each stage checkpoints into the run folder (`--run`) every `--save-every`
steps and at its time limit (`--minutes`), and a rerun continues from there. Losses go to the log
(`--run/train.log`) and a progress bar. The finished pipeline (EMA weights) is written with
`save_pretrained` to `--out` (the registry's `toy-shapes` entry).

Data: scenes of the training split (held-out colour/shape pairs never appear) rendered once and
kept in the run folder; each step draws a fresh caption for every image (attributes dropped at
random, some captions empty for classifier-free guidance).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import TOY_DIR
from ..sampling import denoising_target
from .captions import random_caption, vocabulary
from .model import NOISE_SCHEDULES, ToyModelConfig, assemble_pipeline, build_scheduler, build_text_encoder, build_tokenizer_for_toy, build_unet, build_vae
from .world import ATTRIBUTES, POSITIONS, Scene, random_scene, render

log = logging.getLogger("concepts.toy.train")


@dataclass
class ToyRecipe:
    """Everything that fixes a training run (recorded in the model card)."""

    images: int = 30000
    vae_steps: int = 3400
    vae_batch: int = 32
    vae_crop: int = 32
    """The VAE is fully convolutional: training on 32×32 crops around the object is 4× cheaper than whole images."""
    vae_lr: float = 5e-4
    vae_kl_weight: float = 1e-6
    vae_object_weight: float = 10.0
    """Loss weight of object pixels against background pixels."""
    vae_grad_weight: float = 1.0
    """Weight of the image-gradient loss that keeps stripes and dots sharp."""
    unet_steps: int = 5000
    unet_batch: int = 32
    unet_lr: float = 6e-4
    ema_decay: float = 0.999
    caption_drop: float = 0.2
    caption_empty: float = 0.1
    noise_schedule: str = "zero-snr-v"
    """`model.NOISE_SCHEDULES`: "zero-snr-v" (v-prediction, zero terminal SNR) or SD1.x's "sd"."""
    high_noise_share: float = 0.0
    """Share of each batch whose timesteps come from the noisiest quarter, where layout is decided
    (useful when a model moves to a new schedule)."""
    seed: int = 0
    init_from: str = ""
    """A saved toy pipeline to continue from: its VAE is kept as trained, its UNet and text encoder
    (EMA weights) start a fresh UNet schedule. Lets a CPU-trained model be trained further in legs."""


# -- data ---------------------------------------------------------------------------------------
def load_or_render_data(run: Path, recipe: ToyRecipe) -> tuple[torch.Tensor, list[Scene]]:
    """uint8 images [N, 64, 64, 3] of training-split scenes, rendered once and cached in the run."""
    path = run / "data.safetensors"
    names = list(ATTRIBUTES)
    if path.is_file():
        tensors = load_file(str(path))
        scenes = [Scene(**{n: ATTRIBUTES[n][int(i)] for n, i in zip(names, row)}) for row in tensors["labels"].tolist()]
        return tensors["images"], scenes
    rng = np.random.default_rng(recipe.seed)
    scenes = [random_scene(rng, "train") for _ in range(recipe.images)]
    images = np.stack([render(s, rng) for s in tqdm(scenes, desc="render")])
    labels = torch.tensor([[s.label_ids()[n] for n in names] for s in scenes], dtype=torch.int16)
    save_file({"images": torch.from_numpy(images), "labels": labels}, str(path))
    return torch.from_numpy(images), scenes


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 64, 64, 3] → float [B, 3, 64, 64] in [−1, 1], as the VAE expects."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def object_crops(images: torch.Tensor, scenes: list[Scene], size: int, gen: torch.Generator) -> torch.Tensor:
    """One `size`-pixel square per image [B, H, W, C], placed so the object's centre lies in its middle
    half (a random crop of a 64 px scene is mostly background, and a VAE trained on those learns to
    forget the objects), at offsets on the latent grid (multiples of 4)."""
    limit = images.shape[1] - size
    if limit <= 0:
        return images
    crops = []
    for image, scene in zip(images, scenes):
        cx, cy = POSITIONS[scene.position]
        offsets = []
        for centre in (cy, cx):
            low, high = max(0, centre - 3 * size // 4), min(limit, centre - size // 4)
            choices = list(range((low + 3) // 4 * 4, high + 1, 4)) or [min(limit, max(0, centre - size // 2)) // 4 * 4]
            offsets.append(choices[int(torch.randint(0, len(choices), (1,), generator=gen))])
        y, x = offsets
        crops.append(image[y : y + size, x : x + size])
    return torch.stack(crops)


def object_weights(images: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights [B, H, W, 1]: `weight` where a pixel differs from the background (the
    corner colour; objects never touch the border), 1 elsewhere, so small objects count."""
    background = images[:, :1, :1, :].float()
    differs = (images.float() - background).abs().amax(dim=-1, keepdim=True) > 25
    return 1.0 + (weight - 1.0) * differs.float()


def edge_loss(error: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted L1 of the error's horizontal and vertical differences (= error in image gradients)."""
    dx = (error[..., :, 1:] - error[..., :, :-1]).abs() * weights[..., :, 1:]
    dy = (error[..., 1:, :] - error[..., :-1, :]).abs() * weights[..., 1:, :]
    return dx.sum() / (weights[..., :, 1:].sum() * 3) + dy.sum() / (weights[..., 1:, :].sum() * 3)


# -- checkpoints --------------------------------------------------------------------------------
def save_state(folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, step: int, extra: dict | None = None) -> None:
    """Weights, optimizer and step into `folder`, atomically (written beside it, then renamed)."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(tmp / f"{name}.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **(extra or {})}))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)


def load_state(folder: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> dict:
    for name, module in modules.items():
        module.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
    # Our own optimizer file from this run: tensors and numbers, so weights_only is enough (numpy
    # scalars are allowed for files written before learning rates were cast to float).
    with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, type(np.dtype("float64"))]):
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text())


def pipeline_weights(pipeline_dir: Path, part: str) -> dict[str, torch.Tensor]:
    """The safetensors weights of one part (`unet`, `vae`, `text_encoder`) of a saved pipeline."""
    files = sorted((pipeline_dir / part).glob("*.safetensors"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .safetensors file in {pipeline_dir / part}, found {len(files)}")
    return load_file(str(files[0]))


def seed_vae_from_pipeline(run: Path, recipe: ToyRecipe) -> None:
    """Start the run with the saved pipeline's VAE marked as fully trained (no VAE steps are redone)."""
    folder = run / "vae"
    if (folder / "state.json").is_file():
        return
    vae = build_vae(ToyModelConfig())
    vae.load_state_dict(pipeline_weights(Path(recipe.init_from), "vae"))
    save_state(folder, {"vae": vae}, torch.optim.AdamW(vae.parameters()), recipe.vae_steps)


# -- stage 1: VAE -------------------------------------------------------------------------------
def train_vae(run: Path, recipe: ToyRecipe, images: torch.Tensor, scenes: list[Scene], deadline: float) -> bool:
    """Train the autoencoder; returns True when it has done all its steps."""
    torch.manual_seed(recipe.seed)
    vae = build_vae(ToyModelConfig())
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    folder = run / "vae"
    step = load_state(folder, {"vae": vae}, opt)["step"] if (folder / "state.json").is_file() else 0
    if 0 < step < recipe.vae_steps:
        log.info("resuming vae at step %d", step)
    gen = torch.Generator().manual_seed(recipe.seed + step)
    bar = tqdm(total=recipe.vae_steps, initial=step, desc="vae")
    while step < recipe.vae_steps and time.time() < deadline:
        lr = float(recipe.vae_lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + np.cos(np.pi * step / recipe.vae_steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(images), (recipe.vae_batch,), generator=gen)
        batch = images[idx]
        with_weights = torch.cat([batch.float(), object_weights(batch, recipe.vae_object_weight)], dim=-1)
        cropped = object_crops(with_weights, [scenes[i] for i in idx.tolist()], recipe.vae_crop, gen)
        x, weights = to_model_range(cropped[..., :3]), cropped[..., 3:].permute(0, 3, 1, 2)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        error = recon - x
        rec_loss = (weights * (error.abs() + error**2)).sum() / (weights.sum() * 3)
        if recipe.vae_grad_weight:  # blur costs little in L1/L2 but kills stripes and dots: match edges too
            rec_loss = rec_loss + recipe.vae_grad_weight * edge_loss(error, weights)
        kl = posterior.kl().mean()
        loss = rec_loss + recipe.vae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(rec=f"{float(rec_loss):.4f}", kl=f"{float(kl):.1f}")
            log.info("vae step %d rec %.5f kl %.2f lr %.2e", step, float(rec_loss), float(kl), lr)
        if step % 500 == 0:
            save_state(folder, {"vae": vae}, opt, step)
    save_state(folder, {"vae": vae}, opt, step)
    bar.close()
    return step >= recipe.vae_steps


def trained_vae(run: Path):
    vae = build_vae(ToyModelConfig())
    vae.load_state_dict(load_file(str(run / "vae" / "vae.safetensors")))
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_dataset(run: Path, images: torch.Tensor) -> torch.Tensor:
    """Posterior means of every image, cached; the latent scaling factor is 1/std (SD's convention)."""
    path = run / "latents.safetensors"
    if path.is_file():
        return load_file(str(path))["latents"]
    vae = trained_vae(run)
    latents = torch.cat([vae.encode(to_model_range(images[i : i + 256])).latent_dist.mean for i in range(0, len(images), 256)])
    save_file({"latents": latents.contiguous()}, str(path))
    return latents


# -- stage 2: UNet + text encoder ---------------------------------------------------------------
def train_unet(run: Path, recipe: ToyRecipe, latents: torch.Tensor, scenes: list[Scene], deadline: float) -> bool:
    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer_for_toy()
    cfg = ToyModelConfig()
    unet, text_encoder = build_unet(cfg), build_text_encoder(tokenizer, cfg)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=1e-2)
    modules = {"unet": unet, "text_encoder": text_encoder, "ema_unet": ema_unet, "ema_text_encoder": ema_text}
    folder = run / "unet"
    step = load_state(folder, modules, opt)["step"] if (folder / "state.json").is_file() else 0
    if 0 < step < recipe.unet_steps:
        log.info("resuming unet at step %d", step)
    elif step == 0 and recipe.init_from:
        log.info("unet and text encoder start from %s", recipe.init_from)
        for module, part in ((unet, "unet"), (text_encoder, "text_encoder"), (ema_unet, "unet"), (ema_text, "text_encoder")):
            module.load_state_dict(pipeline_weights(Path(recipe.init_from), part))
    scale = 1.0 / float(latents.std())
    scheduler = build_scheduler(recipe.noise_schedule)
    top_quarter = scheduler.config.num_train_timesteps * 3 // 4
    rng = np.random.default_rng(recipe.seed + step)
    gen = torch.Generator().manual_seed(recipe.seed + step)
    token_cache: dict[str, torch.Tensor] = {}

    def tokens(text: str) -> torch.Tensor:
        if text not in token_cache:
            token_cache[text] = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids[0]
        return token_cache[text]

    bar = tqdm(total=recipe.unet_steps, initial=step, desc="unet")
    while step < recipe.unet_steps and time.time() < deadline:
        # Warm up, then cosine down to a tenth: the last steps settle the weights EMA averages.
        lr = float(recipe.unet_lr * min(1.0, (step + 1) / 500) * (0.55 + 0.45 * np.cos(np.pi * step / recipe.unet_steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(latents), (recipe.unet_batch,), generator=gen)
        x0 = latents[idx] * scale
        ids = torch.stack([tokens(random_caption(scenes[i], rng, recipe.caption_drop, recipe.caption_empty)) for i in idx.tolist()])
        t = torch.randint(0, scheduler.config.num_train_timesteps, (recipe.unet_batch,), generator=gen)
        high = torch.rand(recipe.unet_batch, generator=gen) < recipe.high_noise_share
        t = torch.where(high, torch.randint(top_quarter, scheduler.config.num_train_timesteps, (recipe.unet_batch,), generator=gen), t)
        noise = torch.randn(x0.shape, generator=gen)
        noisy = scheduler.add_noise(x0, noise, t)
        target = denoising_target(scheduler, x0, noise, t)
        pred = unet(noisy, t, text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(recipe.ema_decay, (1 + step) / (10 + step))
            for ema, live in ((ema_unet, unet), (ema_text, text_encoder)):
                for pe, pl in zip(ema.parameters(), live.parameters()):
                    pe.lerp_(pl, 1 - decay)
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}")
            log.info("unet step %d loss %.5f lr %.2e", step, float(loss), lr)
        if step % 500 == 0:
            save_state(folder, modules, opt, step, {"latent_scale": scale})
    save_state(folder, modules, opt, step, {"latent_scale": scale})
    bar.close()
    return step >= recipe.unet_steps


def export_pipeline(run: Path, out: Path) -> Path:
    """Assemble the EMA weights into a pipeline and `save_pretrained` it (fp32 safetensors)."""
    tokenizer = build_tokenizer_for_toy()
    cfg = ToyModelConfig()
    unet, text_encoder = build_unet(cfg), build_text_encoder(tokenizer, cfg)
    unet.load_state_dict(load_file(str(run / "unet" / "ema_unet.safetensors")))
    text_encoder.load_state_dict(load_file(str(run / "unet" / "ema_text_encoder.safetensors")))
    vae = trained_vae(run)
    vae.register_to_config(scaling_factor=json.loads((run / "unet" / "state.json").read_text())["latent_scale"])
    pipe = assemble_pipeline(vae, text_encoder, tokenizer, unet, json.loads((run / "recipe.json").read_text()).get("noise_schedule", "sd"))
    pipe.save_pretrained(out, safe_serialization=True)
    write_training_record(run, Path(out), pipe)
    return out


def write_training_record(run: Path, out: Path, pipe) -> None:
    """`training.json` beside the pipeline: recipe, sizes, hardware and the log's stage times (the
    model card is written from it). Fields already there (a hand-written history) are kept."""
    import platform

    path = out / "training.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    cfg = ToyModelConfig()
    log_lines = (run / "train.log").read_text().splitlines() if (run / "train.log").is_file() else []
    stages = {}
    for stage in ("vae", "unet"):
        lines = [line for line in log_lines if f" {stage} step " in line]
        if lines:
            stages[stage] = {"first_log": lines[0][:19], "last_log": lines[-1][:19], "last": lines[-1][24:]}
    record.update({
        "recipe": json.loads((run / "recipe.json").read_text()),
        "model": {"unet_channels": list(cfg.unet_channels), "vae_channels": list(cfg.vae_channels), "text_width": cfg.text_width, "text_layers": cfg.text_layers, "token_context": pipe.tokenizer.model_max_length},
        "parameters": {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("unet", "vae", "text_encoder")},
        "vocabulary": len(vocabulary()),
        "stages": stages,
    })
    record.setdefault("hardware", f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, no GPU")
    record.setdefault("note", "")
    record.setdefault("history", "one uninterrupted run of the recipe above")
    path.write_text(json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/toy-shapes", help="working folder (data, checkpoints, log); rerun to resume")
    parser.add_argument("--out", default=str(TOY_DIR), help="where the finished pipeline is saved")
    parser.add_argument("--minutes", type=float, default=600.0, help="stop (with a checkpoint) after this long")
    parser.add_argument("--export-partial", action="store_true", help="export the pipeline even if the UNet has steps left")
    parser.add_argument("--export-only", action="store_true", help="only export the run's latest checkpoint (to look at a run in progress)")
    for name, value in asdict(ToyRecipe()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    recipe = ToyRecipe(**{name: getattr(args, name) for name in asdict(ToyRecipe())})
    if recipe.noise_schedule not in NOISE_SCHEDULES:
        parser.error(f"--noise-schedule must be one of {', '.join(NOISE_SCHEDULES)}")
    if not 0.0 <= recipe.high_noise_share <= 1.0:
        parser.error("--high-noise-share must be between 0 and 1")
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=run / "train.log", level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.export_only:  # the run's recipe.json stays the one it was trained with
        print(json.dumps({"stage": "export", "out": str(export_pipeline(run, Path(args.out)))}))
        return
    (run / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    deadline = time.time() + 60 * args.minutes
    images, scenes = load_or_render_data(run, recipe)
    if recipe.init_from:
        seed_vae_from_pipeline(run, recipe)
    if not train_vae(run, recipe, images, scenes, deadline):
        print(json.dumps({"stage": "vae", "done": False, "run": str(run)}))
        return
    latents = encode_dataset(run, images)
    done = train_unet(run, recipe, latents, scenes, deadline)
    if done or args.export_partial:
        export_pipeline(run, Path(args.out))
    print(json.dumps({"stage": "unet", "done": done, "run": str(run), "out": args.out if done or args.export_partial else None}))


if __name__ == "__main__":
    main()
