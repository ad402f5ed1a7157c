"""The dry-run plan of the paper's collection: SD1.4, 200,000 prompts, on 8 GPUs and on 2 machines.

    python benchmarks/plan_paper_scale.py [--prompts 200000] [--out FILE]

Runs `python -m concepts.train --dry-run --num-processes N --num-machines M` for real, on a folder
holding what a dry run reads of a pipeline (model_index.json, the UNet's and VAE's configs and a
tokenizer), with SD1.4's UNet and VAE configs as `concepts/arch.py` builds them (the Hub's configs
give the same shapes; no weights are written), and a synthetic list of distinct short prompts (the
plan depends on their number only). The paper's recipe is the CLI's default: three blocks, three
windows, cond, 512 px, 50 DDIM steps, fp16 activations, k = 10, n = 4d. No time is estimated here:
that needs `--measure` on the GPU the run will use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import emit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SETUPS = {"8 GPUs on one machine": (8, 1), "16 GPUs on two machines": (16, 2)}


def light_sd14_folder(folder: Path) -> Path:
    """model_index.json, unet/ and vae/ configs and a tokenizer, shaped as SD1.4 (no weights)."""
    from concepts.arch import SD14_VAE_CHANNELS, sd14_unet
    from concepts.tiny import TINY_WORDS
    from concepts.tokenizer import build_tokenizer

    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    sd14_unet().save_config(folder / "unet")
    (folder / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "block_out_channels": list(SD14_VAE_CHANNELS),
                                                            "latent_channels": 4, "sample_size": 512}))
    build_tokenizer(TINY_WORDS).save_pretrained(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                                                         "vae": ["diffusers", "AutoencoderKL"]}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    plans = {}
    with tempfile.TemporaryDirectory(prefix="plan-sd14-") as scratch:
        folder = light_sd14_folder(Path(scratch) / "sd14")
        prompts = Path(scratch) / "prompts.txt"
        prompts.write_text("\n".join(f"a photo of thing {i}" for i in range(args.prompts)) + "\n")
        for name, (processes, machines) in SETUPS.items():
            done = subprocess.run([sys.executable, "-m", "concepts.train", "--pipeline", str(folder), "--prompts", str(prompts),
                                   "--out", str(Path(scratch) / "run"), "--dry-run", "--num-processes", str(processes),
                                   "--num-machines", str(machines)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            result = json.loads(done.stdout)
            plans[name] = {"processes": result["processes"], "disk": {k: result["plan"][k] for k in ("prompts", "rows", "activation_bytes", "sae_bytes", "total_bytes", "total")},
                           "per_sae": [{k: f[k] for k in ("block", "window", "grid_positions", "rows", "d", "activations")} for f in result["plan"]["per_sae"]]}
    emit({"model": "SD1.4 architecture (concepts/arch.py configs)", "prompts": args.prompts, "plans": plans}, args.out)


if __name__ == "__main__":
    main()
