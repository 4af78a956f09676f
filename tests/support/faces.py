"""The shared LFW photos, read in place (never copied into the repository)."""

from __future__ import annotations

from pathlib import Path


def lfw_root(faces_dir: str) -> Path:
    root = Path(faces_dir) / "lfw-train"
    if not root.is_dir():
        # Fail, never skip: a missing data set must turn CI red, not silently shrink the suite.
        raise FileNotFoundError(f"LFW photos not found at {root}: set FLIGHTTOKEN_FACES_DIR")
    return root


def identities(faces_dir: str, *, min_photos: int = 1, max_photos: int | None = None) -> list[tuple[str, list[Path]]]:
    """(name, photos) sorted by name, for identities with a photo count in range."""
    out = []
    for folder in sorted(lfw_root(faces_dir).iterdir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= min_photos and (max_photos is None or len(photos) <= max_photos):
            out.append((folder.name, photos))
    return out
