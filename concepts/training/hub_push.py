"""Publish a training run's SAEs, dictionaries and model card to a Hub model repo.

Only the release files go up: `README.md`, `registry-entry.json` and, per SAE folder
`saes/<block>/<window>/<branch>/`, `cfg.json`, `sae.safetensors` and `concepts.json`. Activations
and the trainer's resumable checkpoints stay local (they are large and only useful to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CheckpointError, HubUnavailableError
from ..hub import validate_repo_id, validate_revision
from ..sae.native_format import CFG_FILE, CONCEPTS_FILE, WEIGHTS_FILE
from .model_card import CARD_FILE, ENTRY_FILE

SAE_FILES = (CFG_FILE, WEIGHTS_FILE, CONCEPTS_FILE)


def release_files(out: Path) -> list[str]:
    """Repo-relative paths of the files to upload, sorted; skips the trainers' checkpoint folders."""
    files = [name for name in (CARD_FILE, ENTRY_FILE) if (out / name).is_file()]
    saes = out / "saes"
    for cfg in sorted(saes.rglob(CFG_FILE)) if saes.is_dir() else []:
        folder = cfg.parent
        if any(part.startswith("checkpoint") for part in folder.relative_to(saes).parts):
            continue
        files += [(folder / name).relative_to(out).as_posix() for name in SAE_FILES if (folder / name).is_file()]
    return files


def push_to_hub(out: Path, repo: str, private: bool = False, revision: str | None = None, commit_message: str | None = None) -> dict[str, Any]:
    """Create `repo` (if needed) and upload the release files of `out` in one commit."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    validate_repo_id(repo, field="push_to_hub")
    validate_revision(revision)
    files = release_files(out)
    if not any(f.endswith(WEIGHTS_FILE) for f in files):
        raise CheckpointError(f"{out}/saes holds no trained SAE to push")
    api = HfApi()
    fix = "check your connection and that you are logged in (`hf auth login` or HF_TOKEN) with write access"
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo,
            folder_path=str(out),
            repo_type="model",
            revision=revision,
            allow_patterns=files,
            commit_message=commit_message or f"Concept Lab SAEs ({len([f for f in files if f.endswith(WEIGHTS_FILE)])} SAEs)",
        )
    except OfflineModeIsEnabled as exc:
        raise HubUnavailableError(f"cannot push to {repo}: HF_HUB_OFFLINE is set; unset it and retry") from exc
    except HfHubHTTPError as exc:
        raise HubUnavailableError(f"pushing to {repo} failed: {exc}; {fix}") from exc
    except OSError as exc:
        raise HubUnavailableError(f"pushing to {repo} failed: {type(exc).__name__}: {exc}; {fix}") from exc
    except Exception as exc:  # httpx connection errors and the like
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise HubUnavailableError(f"could not reach the Hub to push {repo} ({type(exc).__name__}); {fix}") from exc
        raise
    url = getattr(commit, "commit_url", None) or str(commit)
    return {"repo": repo, "revision": revision or "main", "private": private, "files": files, "commit": url}
