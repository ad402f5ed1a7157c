"""Our native SAE format, which is sparsify's: a folder with `cfg.json` and `sae.safetensors`.

`sae.safetensors` holds exactly `encoder.weight [n, d]`, `encoder.bias [n]`, `W_dec [n, d]`,
`b_dec [d]`; `cfg.json` holds `SAEConfig.to_dict()` (sparsify's keys, `d_in` included, plus ours).
An optional `concepts.json` beside them is the concept dictionary. Loading checks the key set and
every shape against cfg.json, so a wrong or damaged file is named instead of crashing later.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .config import SAEConfig
from .topk import TopKSAE

CFG_FILE, WEIGHTS_FILE, CONCEPTS_FILE = "cfg.json", "sae.safetensors", "concepts.json"


def expected_shapes(cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
    n, d = cfg.num_latents, cfg.d_in
    return {"encoder.weight": (n, d), "encoder.bias": (n,), "W_dec": (n, d), "b_dec": (d,)}


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_native(sae: TopKSAE, folder: str | Path, concepts: dict[str, Any] | None = None) -> Path:
    """Write cfg.json + sae.safetensors (+ concepts.json) into `folder`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous().cpu() for name, t in sae.state_dict().items()}
    _write_atomic(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
    _write_atomic(folder / CFG_FILE, lambda p: p.write_text(json.dumps(sae.cfg.to_dict(), indent=1)))
    if concepts is not None:
        _write_atomic(folder / CONCEPTS_FILE, lambda p: p.write_text(json.dumps(concepts, indent=1)))
    return folder


def read_config(folder: str | Path) -> SAEConfig:
    path = Path(folder) / CFG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not an SAE folder in our (sparsify) format")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-download or re-save the SAE") from None
    return SAEConfig.from_dict(data, source=str(path))


def load_native(folder: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TopKSAE:
    """Load an SAE folder; CheckpointError names the file, key or shape at fault. The SAE runs in fp32
    whatever its file stores (as its writers run it: fp16 changes which latents make the top k and
    overflows the explained variance), unless `dtype` says otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"SAE folder {folder} does not exist")
    cfg = read_config(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the SAE folder holds a config but no weights")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is corrupt or truncated ({exc}); re-download or re-save the SAE") from None
    shapes = expected_shapes(cfg)
    missing, unexpected = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")
    for name, shape in shapes.items():
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{path}: {name} has shape {list(tensors[name].shape)}, cfg.json implies {list(shape)}")
    sae = TopKSAE(cfg, device="meta")
    sae.load_state_dict(tensors, assign=True)
    return sae.to(device=device or "cpu", dtype=dtype or torch.float32)


def load_concepts(folder: str | Path) -> dict[str, Any] | None:
    """The concept dictionary beside an SAE, or None when there is none; the names search finds
    (`concepts`, `places`, `groups`, `readouts`) are checked, so a damaged file is named, not a crash later."""
    path = Path(folder) / CONCEPTS_FILE
    if not path.is_file():
        return None
    try:
        dictionary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    problem = _searchable_problem(dictionary)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return dictionary


def _ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)


def _weights(value: Any, ids: list[int]) -> bool:
    """A list of finite numbers, one per feature id."""
    return (isinstance(value, list) and len(value) == len(ids)
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in value))


def _readout_ok(readout: Any) -> bool:
    """A read-out's features for and against the value, each list with its weights; a rival read-out
    (`concepts.rival_readouts`) also each contest's features, weights and bias."""
    return (isinstance(readout, dict) and _ids(readout.get("features")) and _ids(readout.get("against", []))
            and _weights(readout.get("weights"), readout["features"])
            and _weights(readout.get("against_weights", []), readout.get("against", []))
            and _contests_ok(readout.get("rivals", {})))


def _contests_ok(rivals: Any) -> bool:
    """Each contest of a rival read-out: its feature ids, one finite weight each, a finite bias."""
    return isinstance(rivals, dict) and all(
        isinstance(c, dict) and _ids(c.get("features")) and _weights(c.get("weights"), c["features"])
        and isinstance(c.get("bias"), (int, float)) and math.isfinite(c["bias"]) for c in rivals.values())


def _searchable_problem(dictionary: Any) -> str | None:
    """What is wrong with a dictionary's searchable names, or None."""
    if not isinstance(dictionary, dict):
        return "is not a JSON object"
    for key in ("concepts", "places"):
        table = dictionary.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(name, str) and _ids(ids) for name, ids in table.items()):
            return f"{key!r} must map names to lists of feature ids"
    groups = dictionary.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(g, dict) and _ids(g.get("features")) for g in groups.values()):
        return "'groups' must map names to objects with a 'features' list of feature ids"
    readouts = dictionary.get("readouts", {})
    if not isinstance(readouts, dict) or not all(_readout_ok(r) for r in readouts.values()):
        return "'readouts' must map names to objects with 'features' and 'against' lists of feature ids and their 'weights' and 'against_weights' (and any 'rivals', each with 'features', 'weights' and a finite 'bias')"
    meta = dictionary.get("meta")
    cut = meta.get("region_cut") if isinstance(meta, dict) else None
    if cut is not None and not (isinstance(cut, dict) and isinstance(cut.get("region"), str)
                                and isinstance(cut.get("share"), (int, float)) and 0 < cut["share"] < 1):
        return "'meta.region_cut' must be an object with a 'region' name and a 'share' between 0 and 1"
    return None
