"""Lay out files in the Hugging Face Hub's own cache format, to test the real loading code offline.

The format (as `huggingface_hub` writes it): `<cache>/models--<owner>--<name>/` (`datasets--...` for
a dataset repo) holding
`blobs/<sha256>` (file contents), `snapshots/<commit>/<path>` (relative symlinks to the blobs) and
`refs/<revision>` (the commit hash of a branch).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


REPO_TYPE_PREFIX = {"model": "models--", "dataset": "datasets--", "space": "spaces--"}


def repo_folder(cache: Path, repo_id: str, repo_type: str = "model") -> Path:
    return cache / (REPO_TYPE_PREFIX[repo_type] + repo_id.replace("/", "--"))


def add_to_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes | Path], revision: str = "main", repo_type: str = "model") -> Path:
    """Store `files` (repo path → bytes or a local file) as one commit of `repo_id`; return its snapshot folder."""
    root = repo_folder(cache, repo_id, repo_type)
    contents = {path: (data.read_bytes() if isinstance(data, Path) else data) for path, data in files.items()}
    commit = hashlib.sha1(repr(sorted((p, hashlib.sha256(c).hexdigest()) for p, c in contents.items())).encode()).hexdigest()
    snapshot = root / "snapshots" / commit
    for path, data in contents.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    return snapshot


def add_folder_to_hub_cache(cache: Path, repo_id: str, folder: Path, prefix: str = "") -> Path:
    """Store every file under `folder` (optionally under `prefix/` in the repo)."""
    files = {
        (f"{prefix}/" if prefix else "") + str(p.relative_to(folder)): p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return add_to_hub_cache(cache, repo_id, files)
