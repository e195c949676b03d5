"""Which pictures and videos a run poses: files and folders named on the command line, their image ids, and
the names their drawn pictures get, so that no two inputs ever write one file.

A folder contributes the image and video files directly inside it, in name order; it is not searched
recursively, because nested folders are more often other datasets, splits or earlier outputs than more of
the same input. A still image whose file-name stem is a number gets that number as its id, because COCO
names its files that way (``000000000785.jpg`` is image 785) and that is how a detections file is matched
to the files; other images and a later file with an already used number get fresh ids above the largest
numbered one (video frames are numbered after posing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from okspose.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv"})


@dataclass(frozen=True)
class InputItem:
    """One image or video to pose."""

    path: Path
    video: bool
    image_id: int = -1  # still images only; frames are numbered after posing

    @property
    def name(self) -> str:
        return self.path.name


def numeric_stem(path: Path) -> int | None:
    return int(path.stem) if re.fullmatch(r"[0-9]+", path.stem) else None


def media_kind(path: Path) -> str | None:
    """"image", "video" or None, by the file's extension."""
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def _files(paths: Sequence[str | Path], warnings: list[str]) -> list[Path]:
    """Every named file and the media files directly inside every named folder, each once."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(f"input not found: {path}")
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and media_kind(p))
            if not inside:
                warnings.append(f"{path}: no image or video files directly in this folder")
            files.extend(inside)
        elif media_kind(path):
            files.append(path)
        else:
            known = " ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            raise DataError(f"{path}: not an image or video file (known extensions: {known})")
    first: dict[Path, Path] = {}
    for path in files:  # a file named twice (itself and through its folder) is posed once
        first.setdefault(path.resolve(), path)
    unique = list(first.values())
    if not unique:
        raise DataError("no images or videos to pose in " + ", ".join(str(p) for p in paths))
    return unique


def collect_inputs(paths: Sequence[str | Path]) -> tuple[list[InputItem], list[str]]:
    """The images and videos to pose, with image ids, and warnings (empty folders).

    Raises :class:`DataError` for a missing input and for a file that is neither an image nor a video, so
    a typo costs nothing but the message.
    """
    warnings: list[str] = []
    files = _files(paths, warnings)
    owner: dict[int, int] = {}  # index of a file -> the number it owns as image id
    for i, path in enumerate(files):
        number = numeric_stem(path) if media_kind(path) == "image" else None
        if number is not None and number not in owner.values():
            owner[i] = number
    next_id = max(owner.values(), default=0) + 1
    items = []
    for i, path in enumerate(files):
        if media_kind(path) == "video":
            items.append(InputItem(path, True))
        elif i in owner:
            items.append(InputItem(path, False, owner[i]))
        else:
            items.append(InputItem(path, False, next_id))
            next_id += 1
    return items, warnings


def numbered_ids(items: Sequence[InputItem]) -> set[int]:
    """Ids that came from a numeric file-name stem: the only ones a detections file can refer to."""
    return {it.image_id for it in items if not it.video and numeric_stem(it.path) == it.image_id}


def picture_names(items: Sequence[InputItem]) -> list[str]:
    """``<stem>.jpg`` / ``<stem>_pose.mp4`` per input; a name already taken (two inputs with one stem, or a
    stem that reads like another's suffixed name: ``a/1.jpg``, ``b/1.jpg``, ``1_2.jpg``) gets the first free
    ``_2``, ``_3``, ... suffix, compared without case (as macOS and Windows file systems do)."""
    names: list[str] = []
    used: set[str] = set()
    for item in items:
        stem, ending = item.path.stem, "_pose.mp4" if item.video else ".jpg"
        name, n = f"{stem}{ending}", 1
        while name.lower() in used:
            n += 1
            name = f"{stem}_{n}{ending}"
        used.add(name.lower())
        names.append(name)
    return names


def unmatched_warning(items: Sequence[InputItem], detections: str) -> str | None:
    """A detections file refers to images by id, so unnumbered images and video frames get no boxes."""
    numbered = numbered_ids(items)
    lost = [it.name for it in items if it.video or it.image_id not in numbered]
    if not lost:
        return None
    shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    return (f"{len(lost)} input(s) get no boxes from {detections}: their ids do not come from a numeric "
            f"file-name stem (e.g. 000000000785.jpg -> 785), or a video: {shown}")
