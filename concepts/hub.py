"""Resolve checkpoints to local folders: a path as it is, or a Hub repo through `huggingface_hub`.

Everything downloaded goes through `snapshot_download` (the Hub cache, `HF_HUB_OFFLINE`, revisions),
narrowed with `allow_patterns` so a 4 GB repo is not fetched for one SAE. User-typed repo ids and
subfolders are validated first so no name can point outside the cache. Every failure becomes a
`CheckpointError` (or `HubUnavailableError`) that names the repo, the file and the fix.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from .errors import CheckpointError, HubUnavailableError, InvalidInputError

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,199}$")


def validate_repo_id(repo_id: str, field: str = "repo") -> str:
    """An "owner/name" Hub id with no path tricks ("..", leading dots, slashes beyond one)."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise InvalidInputError(field, f"{repo_id!r} is not a Hub repo id like 'owner/name'")
    return repo_id


def validate_subfolder(subfolder: str | None, field: str = "subfolder") -> str | None:
    """A relative path inside a repo: no absolute path, no '..', no backslashes."""
    if subfolder in (None, ""):
        return None
    path = PurePosixPath(subfolder)
    if "\\" in subfolder or path.is_absolute() or any(part in ("..", "") for part in subfolder.split("/")):
        raise InvalidInputError(field, f"{subfolder!r} must be a relative folder inside the repo, without '..'")
    return str(path)


def member_path(folder: Path, name: object, field: str) -> Path:
    """`folder / name` for a file name read from a checkpoint's own index (third-party data): only a
    relative path below `folder` is allowed, so a crafted index cannot make us read outside the cache.
    The check is on the name, not the resolved path: Hub snapshots are symlinks into the blob store."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"{folder}: {field} names no file ({name!r})")
    path = PurePosixPath(name)
    if "\\" in name or path.is_absolute() or any(part in ("..", "") for part in name.split("/")):
        raise CheckpointError(f"{folder}: {field} {name!r} points outside the checkpoint folder; the file is refused")
    return folder / path


def validate_revision(revision: str | None) -> str | None:
    if revision is None:
        return None
    if not _REVISION.match(revision) or ".." in revision:
        raise InvalidInputError("revision", f"{revision!r} is not a branch, tag or commit hash")
    return revision


@dataclass(frozen=True)
class Source:
    """Where a checkpoint lives: a Hub repo (+ subfolder, revision) or a local path."""

    repo: str | None = None
    """Hub repo id, e.g. "CompVis/stable-diffusion-v1-4"."""
    path: str | None = None
    """Local folder; relative paths are resolved against the registry's folder."""
    subfolder: str | None = None
    """Folder inside the repo or path holding this checkpoint."""
    revision: str | None = None
    """Branch, tag or commit of the repo (default: main)."""

    def __post_init__(self) -> None:
        if (self.repo is None) == (self.path is None):
            raise InvalidInputError("source", "give exactly one of 'repo' or 'path'")
        if self.repo is not None:
            validate_repo_id(self.repo)
        validate_subfolder(self.subfolder)
        validate_revision(self.revision)

    def describe(self) -> str:
        where = f"Hub repo {self.repo}" if self.repo else f"folder {self.path}"
        if self.subfolder:
            where += f", subfolder {self.subfolder}"
        if self.revision:
            where += f" @ {self.revision}"
        return where


def resolve(
    source: Source,
    required: Sequence[str],
    base_dir: Path | None = None,
    allow_patterns: Sequence[str] | None = None,
    ignore_patterns: Sequence[str] | None = None,
) -> Path:
    """Return the local folder of `source` (its subfolder, if any) after checking `required` files exist.

    Hub repos go through `snapshot_download`; with `allow_patterns` None only the subfolder (or
    everything, without one) is fetched. Offline with a warm cache this touches no network.
    """
    if source.path is not None:
        root = Path(source.path)
        if not root.is_absolute() and base_dir is not None:
            root = base_dir / root
        folder = root / source.subfolder if source.subfolder else root
        if not folder.is_dir():
            raise CheckpointError(f"checkpoint folder {folder} does not exist; check the path in the registry")
    else:
        root = _snapshot(source, allow_patterns, ignore_patterns)
        folder = root / source.subfolder if source.subfolder else root
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{source.describe()} lacks {', '.join(missing)}: the checkpoint is incomplete or of another format"
            + ("; download it again (delete the cached copy first)" if source.repo else "")
        )
    return folder


def _describe(source: Source, repo_type: str) -> tuple[str, str]:
    """(what is fetched, how to fix a failed fetch), for messages."""
    what = source.describe()
    download = f"hf download {source.repo}"
    if repo_type != "model":
        what = what.replace("Hub repo", f"Hub {repo_type}", 1)
        download += f" --repo-type {repo_type}"
    return what, f"connect to the internet, or download it where you have a connection (`{download}`) and copy the Hub cache here"


@contextlib.contextmanager
def hub_errors(source: Source, repo_type: str = "model") -> Iterator[None]:
    """Every failure of a Hub call turned into an error a user can act on (one line, no traceback)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what, fix = _describe(source, repo_type)
    # The offline clause comes first: LocalEntryNotFoundError subclasses EntryNotFoundError.
    try:
        yield
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, IncompleteSnapshotError) as exc:
        raise HubUnavailableError(f"{what} is not in the local Hub cache and the Hub is unreachable or offline; {fix}") from exc
    except GatedRepoError as exc:
        raise CheckpointError(f"{what} is gated: accept its licence on the Hub and log in (`hf auth login`)") from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(f"{what} does not exist on the Hub (or is private): check the repo id") from exc
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"{what}: revision {source.revision!r} does not exist") from exc
    except EntryNotFoundError as exc:
        raise CheckpointError(f"{what}: a file is missing on the Hub ({exc})") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise HubUnavailableError(f"could not fetch {what}: {type(exc).__name__}: {exc}; {fix}") from exc
    except Exception as exc:  # httpx connection errors and the like
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise HubUnavailableError(f"could not reach the Hub for {what} ({type(exc).__name__}); {fix}") from exc
        raise


def _snapshot(source: Source, allow_patterns: Sequence[str] | None, ignore_patterns: Sequence[str] | None, repo_type: str = "model") -> Path:
    """`snapshot_download` with every failure turned into an error a user can act on.

    `repo_type` is "model" (checkpoints) or "dataset" (prompt sets for `python -m concepts.train`)."""
    # Imported here: huggingface_hub reads HF_HUB_OFFLINE at import time, and tests set it first.
    from huggingface_hub import snapshot_download

    if allow_patterns is None and source.subfolder:
        allow_patterns = [f"{source.subfolder}/*"]
    with hub_errors(source, repo_type):
        path = snapshot_download(
            source.repo,
            revision=source.revision,
            repo_type=repo_type,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
            ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
        )
    return Path(path)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it: then only the local cache is used."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def list_repo_files(source: Source, repo_type: str = "model") -> list[str]:
    """Every file of a Hub repo at its revision (one listing call, no download)."""
    from huggingface_hub import HfApi

    with hub_errors(source, repo_type):
        return list(HfApi().list_repo_files(source.repo, repo_type=repo_type, revision=source.revision))


def fetch_file(source: Source, filename: str, repo_type: str = "model") -> Path:
    """One file of a Hub repo, through the Hub cache (downloaded only if not cached)."""
    from huggingface_hub import hf_hub_download

    with hub_errors(source, repo_type):
        return Path(hf_hub_download(source.repo, filename, repo_type=repo_type, revision=source.revision))
