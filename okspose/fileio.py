"""Files in and out: atomic writes (a crash mid-write never leaves a truncated checkpoint or results file
behind) and JSON read and written as ``.json`` or gzipped ``.json.gz`` alike, by every command."""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from okspose.errors import DataError, OksposeError

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

_PROC_STATUS = Path("/proc/self/status")
GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of every gzip file


def _umask() -> int:
    """The process umask, read without setting it where Linux tells it (``Umask:`` in /proc/self/status).

    ``os.umask`` reads only by setting: while it is 0, a file another thread creates is world-writable.
    """
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return _umask_once()


@functools.cache
def _umask_once() -> int:
    """Elsewhere (macOS, Linux before 4.7) set and restored once per process, on the first write."""
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


def check_writable(path: str | os.PathLike, kind: str) -> Path:
    """Refuse, before any work, an output that could not be written at the end: ``kind`` names it in the
    one-line message ("results file", "output folder"); a kind ending in "folder" is a folder, else a file.

    The nearest existing folder is probed with a real temporary file, because ``os.access`` says yes to root
    on a read-only mount or a folder without write permission.
    """
    path = Path(path)
    folder = kind.endswith("folder")
    if path.exists() and path.is_dir() != folder:
        raise OksposeError(f"{path}: the {kind} is an existing {'file' if folder else 'folder'}")
    probe = path if folder and path.is_dir() else path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OksposeError(f"{path}: cannot write the {kind}: {probe} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as err:
        raise OksposeError(f"{path}: cannot write the {kind} in {probe} ({err.strerror})") from None
    return path


def user_cache_dir(name: str, env: str) -> Path:
    """A per-user cache folder: ``$<env>`` if set, else ``$XDG_CACHE_HOME/okspose/<name>`` (default
    ``~/.cache/okspose/<name>``), which survives a reboot where /tmp does not."""
    if os.environ.get(env):
        return Path(os.environ[env])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "okspose" / name


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: f.write(json.dumps(obj).encode()))


def save_json_or_keep(obj: Any, path: str | os.PathLike, kind: str) -> Path:
    """:func:`save_json`, except that when ``path`` cannot be written at the end of a long run (a full disk,
    a folder gone) the data go to a file in the temporary folder that the one-line error names."""
    try:
        return save_json(obj, path)
    except OSError as err:
        fd, kept = tempfile.mkstemp(prefix=f"okspose-{Path(path).stem}-", suffix=".json")
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(obj).encode())
        raise OksposeError(f"{path}: cannot write the {kind} ({err.strerror or err}); it is kept in {kept}") from None


def stamp_matches(path: str | os.PathLike, settings: dict) -> bool:
    """Whether the JSON stamp at ``path`` (written with :func:`save_json` beside generated files) records
    exactly ``settings``, so the files can be reused instead of made again."""
    path = Path(path)
    return path.is_file() and read_json(path, "stamp") == settings


def save_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def save_image(image: np.ndarray, path: str | os.PathLike, params: Sequence[int] = ()) -> Path:
    """A BGR picture in the format its extension names, written atomically. Where ``cv2.imwrite`` returns a
    False that is easily ignored, a picture OpenCV cannot encode is a :class:`DataError` naming the file."""
    import cv2  # here, so that commands which never write a picture start without OpenCV

    path = Path(path)
    try:
        ok, data = cv2.imencode(path.suffix, image, list(params))
    except cv2.error:  # no encoder for the extension
        ok = False
    if not ok:
        raise DataError(f"{path}: OpenCV cannot encode a picture as {path.suffix or 'a file without an extension'}")
    return atomic_write(path, lambda f: f.write(data.tobytes()))


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """A matplotlib figure (built without pyplot) as a PNG, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    import torch  # here, so that commands which never write a checkpoint start without torch

    return atomic_write(path, lambda f: torch.save(state, f))


def read_json(path: str | Path, what: str) -> object:
    """Parsed JSON, plain or gzipped (known by gzip's magic bytes, whatever the name says), with a
    :class:`DataError` naming the file when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        raw = path.read_bytes()
        if raw.startswith(GZIP_MAGIC) or path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def write_coco(data: dict, path: str | os.PathLike) -> Path:
    """A COCO dict as ``.json``, or gzipped when the name ends in ``.gz`` (the form :func:`read_json` reads)."""
    raw = json.dumps(data).encode()
    if str(path).endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=1)  # level 9 takes 15 s on COCO train, level 1 one
    return atomic_write(path, lambda f: f.write(raw))


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, who: str) -> Iterator[Path]:
    """Hold ``folder/.okspose.lock`` while a run writes into ``folder``, so two runs never mix their files.

    The lock is an ``flock`` (the kernel drops it when the process dies: no stale lock after a crash);
    its file says ``who`` holds it, and a second run stops with an :class:`OksposeError` naming that.
    """
    import fcntl  # POSIX only, like the rest of the project's process handling

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".okspose.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OksposeError(f"{folder} is in use by {holder}: wait for it to finish or choose another "
                               "output folder") from None
        f.truncate(0)
        f.write(f"{who} (pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')})")
        f.flush()
        try:
            yield path
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
