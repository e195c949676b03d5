"""Files in and out: atomic writes (a crash mid-write never leaves a truncated checkpoint or results file
behind) and JSON read and written as ``.json`` or gzipped ``.json.gz`` alike, by every command."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from okspose.errors import DataError


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
    return path.is_file() and read_json(path, "stamp") == settings


def save_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    import torch  # here, so that commands which never write a checkpoint start without torch

    return atomic_write(path, lambda f: torch.save(state, f))


def read_json(path: str | Path, what: str) -> object:
    """Parsed JSON (``.json`` or gzipped ``.json.gz``), with a :class:`DataError` naming the file when it
    is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def write_coco(data: dict, path: str | os.PathLike) -> Path:
    """A COCO dict as ``.json``, or gzipped when the name ends in ``.gz`` (the form :func:`read_json` reads)."""
    raw = json.dumps(data).encode()
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=1)  # level 9 takes 15 s on COCO train, level 1 one
    return atomic_write(path, lambda f: f.write(raw))
