"""The repository can be pushed to a Hugging Face Space: the Hub rejects binary files pushed as plain
git blobs, so every tracked binary must be stored with LFS/Xet by `.gitattributes`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def is_binary(path: Path) -> bool:
    """Git's own rule: a NUL byte in the first 8,000 bytes; or text that is not UTF-8."""
    head = path.read_bytes()[:8000]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a multi-byte character cut at the 8,000th byte is still text
    return False


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    try:
        return [p for p in git("ls-files", "-z").split("\0") if p]
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("not a git checkout")


def test_every_tracked_binary_is_stored_with_lfs(tracked):
    binaries = [p for p in tracked if (ROOT / p).is_file() and is_binary(ROOT / p)]
    assert len(binaries) >= 40  # the toy model, its SAEs, the judge and the screenshots
    attributes = git("check-attr", "filter", "--", *binaries).splitlines()
    uncovered = [line.split(":")[0] for line in attributes if not line.endswith(": filter: lfs")]
    assert not uncovered, f"binary files not stored with LFS by .gitattributes: {uncovered[:10]}"


def test_text_files_stay_plain_text(tracked):
    text = [p for p in tracked if p.endswith((".py", ".json", ".md", ".txt"))]
    stored = git("check-attr", "filter", "--", *text).splitlines()
    assert all(line.endswith(": filter: unspecified") for line in stored)


def test_a_binary_file_is_recognised(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (tmp_path / "a.txt").write_text("plain text, ünïcode")
    assert is_binary(tmp_path / "w.safetensors") and not is_binary(tmp_path / "a.txt")
