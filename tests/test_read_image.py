"""read_image judges a picture by whether it is complete: bytes after the end (some cameras and editors
append them) are fine, a file cut short is not, whatever its name says."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from okspose.data.records import DataError, read_image

SOURCE = SHARED_DATA / "coco-mini" / "train2017" / "000000000790.jpg"
# Trailers seen after the end of real files: zero padding, a vendor's binary block, a second JPEG.
TRAILERS = {
    "zeros": bytes(4096),
    "binary": np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes(),
    "second jpeg": cv2.imencode(".jpg", np.full((16, 16, 3), 200, np.uint8))[1].tobytes(),
}


def _encoded(kind: str) -> bytes:
    """A real coco-mini picture as a baseline JPEG (the file itself), the same with an EXIF-like thumbnail (a
    complete JPEG in an APP1 segment before the scans), a progressive JPEG or a PNG."""
    raw = SOURCE.read_bytes()
    if kind == "jpeg with thumbnail":
        thumb = b"Exif\0\0" + cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
        return raw[:2] + b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb + raw[2:]
    image = cv2.imread(str(SOURCE))[:160, :200]
    if kind == "png":
        return cv2.imencode(".png", image)[1].tobytes()
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


def _write(tmp_path: Path, name: str, raw: bytes) -> str:
    (tmp_path / name).write_bytes(raw)
    return str(tmp_path / name)


KINDS = ["jpeg", "jpeg with thumbnail", "progressive", "png"]


@pytest.mark.parametrize("trailer", list(TRAILERS))
@pytest.mark.parametrize("kind", KINDS)
def test_bytes_after_the_end_are_a_valid_picture(tmp_path, kind, trailer):
    raw = _encoded(kind)
    name = "a.png" if kind == "png" else "a.jpg"
    whole = read_image(_write(tmp_path, name, raw))
    assert np.array_equal(read_image(_write(tmp_path, "t" + name, raw + TRAILERS[trailer])), whole)


@pytest.mark.parametrize("cut", [0.5, 0.9, -2])
@pytest.mark.parametrize("kind", KINDS)
def test_a_picture_cut_short_is_truncated(tmp_path, kind, cut):
    raw = _encoded(kind)
    end = cut if cut < 0 else int(len(raw) * cut)
    path = _write(tmp_path, "a.png" if kind == "png" else "a.jpg", raw[:end])
    with pytest.raises(DataError, match=r"a\.(jpg|png): truncated"):
        read_image(path)


def test_the_content_not_the_name_decides(tmp_path):
    png = _encoded("png")
    assert read_image(_write(tmp_path, "really_a_png.jpg", png + b"trailer")).shape == (160, 200, 3)
    with pytest.raises(DataError, match="truncated PNG"):
        read_image(_write(tmp_path, "cut.jpg", png[:-20]))


def test_every_shared_picture_reads(tmp_path):
    """No real JPEG of the shared data is called truncated."""
    files = sorted(SHARED_DATA.glob("**/*.jpg"))
    assert len(files) > 100
    for f in files:
        assert read_image(str(f)).ndim == 3, f


def test_an_empty_file_is_a_data_error(tmp_path):
    """OpenCV asserts (cv2.error) on an empty buffer; the reader names the file instead (issue 23 item 3)."""
    with pytest.raises(DataError, match=r"empty\.jpg: empty file"):
        read_image(_write(tmp_path, "empty.jpg", b""))
