"""Atomic writes: a crash mid-write never leaves a truncated checkpoint or results file behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temp file in the target's folder, fsync it, then rename it over ``path``.

    The file gets the mode a plain ``open()`` would give (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: f.write(json.dumps(obj).encode()))


def stamp_matches(path: str | os.PathLike, settings: dict) -> bool:
    """Whether the JSON stamp at ``path`` (written with :func:`save_json` beside generated files) records
    exactly ``settings``, so the files can be reused instead of made again."""
    path = Path(path)
    return path.is_file() and json.loads(path.read_text()) == settings


def save_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: torch.save(state, f))
