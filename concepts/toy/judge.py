"""The judge: a small CNN that reads all six attributes of a toy image.

Every toy metric (prompt fidelity, steering success, erase success and retention) is the judge's
verdict on generated images, so it is trained only on rendered images, whose labels are exact, and
must reach ≥ 0.99 accuracy per attribute on fresh rendered test images. The head flattens an 8×8
feature map instead of pooling it, so position stays readable.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError
from .world import ATTRIBUTES, Scene, random_scene, render

log = logging.getLogger(__name__)

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.json", "model.safetensors", "metrics.json"


@dataclass(frozen=True)
class JudgeConfig:
    widths: tuple[int, int, int] = (16, 32, 64)
    """Channels of the three conv stages (64 → 32 → 16 → 8 px)."""
    hidden: int = 128
    """Width of the shared layer before the six heads."""


class Judge(nn.Module):
    def __init__(self, cfg: JudgeConfig = JudgeConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        channels = 3
        for width in cfg.widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.shared = nn.Sequential(nn.Flatten(), nn.Linear(channels * 8 * 8, cfg.hidden), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(cfg.hidden, len(values)) for name, values in ATTRIBUTES.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B, 3, 64, 64] in [0, 1] → logits per attribute [B, #values]."""
        hidden = self.shared(self.features(images * 2 - 1))
        return {name: head(hidden) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict_ids(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted value index per attribute, [B] each."""
        was_training = self.training
        self.eval()
        logits = self(images.to(next(self.parameters()).device, torch.float32))
        self.train(was_training)
        return {name: value.argmax(-1).cpu() for name, value in logits.items()}

    def predict(self, images: torch.Tensor) -> list[dict[str, str]]:
        """Predicted attribute values, one dict per image."""
        ids = self.predict_ids(images)
        return [{name: ATTRIBUTES[name][int(ids[name][i])] for name in ATTRIBUTES} for i in range(images.shape[0])]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, 64, 64, 3] → float [B, 3, 64, 64] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


class LabelledImages(NamedTuple):
    images: torch.Tensor
    """[N, 3, 64, 64] in [0, 1]"""
    labels: dict[str, torch.Tensor]
    """attribute → [N] value ids"""


def render_dataset(n: int, seed: int, split: str = "any", progress: bool = False) -> LabelledImages:
    """n random scenes rendered with jitter, and their labels."""
    rng = np.random.default_rng(seed)
    scenes: list[Scene] = [random_scene(rng, split) for _ in range(n)]
    images = np.stack([render(s, rng) for s in tqdm(scenes, desc="render", disable=not progress)])
    labels = {name: torch.tensor([s.label_ids()[name] for s in scenes]) for name in ATTRIBUTES}
    return LabelledImages(to_tensor(images), labels)


@torch.no_grad()
def accuracy(judge: Judge, data: LabelledImages, batch_size: int = 512) -> dict[str, float]:
    """Share of images whose attribute the judge reads right, per attribute."""
    correct = {name: 0 for name in ATTRIBUTES}
    for start in range(0, data.images.shape[0], batch_size):
        ids = judge.predict_ids(data.images[start : start + batch_size])
        for name in ATTRIBUTES:
            correct[name] += int((ids[name] == data.labels[name][start : start + batch_size]).sum())
    return {name: correct[name] / data.images.shape[0] for name in ATTRIBUTES}


def save_judge(judge: Judge, folder: str | Path, metrics: dict | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in judge.state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps({**asdict(judge.cfg), "attributes": ATTRIBUTES}, indent=1))
    if metrics is not None:
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return folder


def load_judge(folder: str | Path, device: str | torch.device = "cpu") -> Judge:
    """Load the shipped judge; refuses one trained on other attribute values."""
    folder = Path(folder)
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text())
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except FileNotFoundError as exc:
        raise CheckpointError(f"judge checkpoint incomplete in {folder}: {exc.filename} is missing; run python -m concepts.toy.train_judge") from None
    except Exception as exc:
        raise CheckpointError(f"judge checkpoint in {folder} is unreadable ({exc})") from None
    if {k: tuple(v) for k, v in raw.get("attributes", {}).items()} != ATTRIBUTES:
        raise CheckpointError(f"{folder / CONFIG_FILE}: the judge was trained on other attribute values; retrain it")
    judge = Judge(JudgeConfig(widths=tuple(raw["widths"]), hidden=int(raw["hidden"])))
    try:
        judge.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} does not fit its config ({exc})") from None
    return judge.to(device).eval()


@dataclass
class JudgeTraining:
    """Recipe for the judge (CPU-sized: a few minutes on 2 cores)."""

    train_images: int = 20000
    test_images: int = 2000
    steps: int = 2500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def train_judge(recipe: JudgeTraining, out: str | Path, progress: bool = True) -> dict:
    """Render, train, test on fresh images of a different seed, save; returns the metrics."""
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    train = render_dataset(recipe.train_images, seed=recipe.seed, progress=progress)
    test = render_dataset(recipe.test_images, seed=recipe.seed + 1_000_003, progress=progress)
    judge = Judge()
    opt = torch.optim.AdamW(judge.parameters(), lr=recipe.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(recipe.seed)
    judge.train()
    bar = tqdm(range(recipe.steps), desc="train judge", disable=not progress)
    for step in bar:
        idx = torch.randint(0, recipe.train_images, (recipe.batch_size,), generator=gen)
        logits = judge(train.images[idx])
        loss = sum(loss_fn(logits[name], train.labels[name][idx]) for name in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss):.3f}")
    judge.eval()
    metrics = {
        "test_accuracy": accuracy(judge, test),
        "train_accuracy": accuracy(judge, LabelledImages(train.images[:2000], {k: v[:2000] for k, v in train.labels.items()})),
        "recipe": asdict(recipe),
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
    }
    save_judge(judge, out, metrics)
    log.info("judge test accuracy %s", metrics["test_accuracy"])
    return metrics
