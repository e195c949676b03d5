"""COCO-format person keypoint data: validated person records, annotation files and pictures.

Bad input (a missing or undecodable image, a malformed record, a zero-area box, keypoints farther
outside the image than its own size) either stops with a :class:`DataError` that names the file and the
record, or, with ``on_error="skip"``, is counted in a :class:`SkipReport`; keypoint names other than the
schema's stop the file. Annotation problems are found when the
records are built, so a long epoch never dies half-way on them. A person with no labeled keypoint is
dropped before any check but its keypoints list's form, as COCO's metric and training ignore it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from okspose.errors import DataError
from okspose.fileio import read_json
from okspose.keypoints import KeypointSchema, check_category_joints

OnError = Literal["raise", "skip"]


@dataclass
class SkipReport:
    """What was skipped and why, for ``on_error="skip"``."""

    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, detail: str) -> None:
        self.reasons[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(detail)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    @classmethod
    def merged(cls, reports: list[SkipReport]) -> SkipReport:
        """One report of several (ranks, stages): counts added, the first five examples kept."""
        out = cls()
        for report in reports:
            out.reasons.update(report.reasons)
            out.examples.extend(report.examples[: max(0, 5 - len(out.examples))])
        return out

    def summary(self) -> str:
        if not self.total:
            return "skipped nothing"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.reasons.most_common())
        return f"skipped {self.total} ({parts}); e.g. " + "; ".join(self.examples)


@dataclass
class PersonRecords:
    """One row per person crop; arrays keep memory flat for the 150k persons of COCO train."""

    image_paths: list[str]
    image_ids: np.ndarray  # [N] int64
    ann_ids: np.ndarray  # [N] int64 (-1 for detections)
    boxes: np.ndarray  # [N, 4] xywh, clipped to the image
    keypoints: np.ndarray  # [N, K, 3] x, y, v (zeros when unknown)
    scores: np.ndarray  # [N] box score (1 for ground truth)

    def __len__(self) -> int:
        return len(self.image_paths)

    @classmethod
    def concat(cls, parts: Sequence[PersonRecords]) -> PersonRecords:
        return cls(
            [p for r in parts for p in r.image_paths], np.concatenate([r.image_ids for r in parts]),
            np.concatenate([r.ann_ids for r in parts]), np.concatenate([r.boxes for r in parts]),
            np.concatenate([r.keypoints for r in parts]), np.concatenate([r.scores for r in parts]),
        )

    def subset(self, index: Sequence[int] | np.ndarray) -> PersonRecords:
        index = np.asarray(index, dtype=np.int64)
        return PersonRecords(
            [self.image_paths[i] for i in index], self.image_ids[index], self.ann_ids[index],
            self.boxes[index], self.keypoints[index], self.scores[index],
        )


def read_annotation_file(path: str | Path) -> dict:
    """The raw COCO dict, with a :class:`DataError` naming the file when it is missing or malformed."""
    data = read_json(path, "annotation")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise DataError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations' lists)")
    return data


def _parse_keypoints(ann: dict, num_joints: int) -> np.ndarray:
    """The keypoints [K, 3]; raises ValueError when the list is malformed."""
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) != 3 * num_joints or not all(
        isinstance(v, int | float) and math.isfinite(v) for v in kps
    ):
        raise ValueError(f"malformed keypoints (need {3 * num_joints} numbers)")
    return np.asarray(kps, dtype=np.float64).reshape(num_joints, 3)


def _unlabeled(ann: dict, kp: np.ndarray) -> bool:
    """No labeled keypoint: COCO's metric and training ignore the person, so nothing else of it is checked."""
    return ann.get("num_keypoints") == 0 or not (kp[:, 2] > 0).any()


def _check_annotation(ann: dict, image: dict, kp: np.ndarray) -> np.ndarray:
    """The box xywh clipped to the image, after checking it and ``kp``; raises ValueError with the reason."""
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        raise ValueError("malformed bbox")
    w, h = image["width"], image["height"]
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], w), min(box[1] + box[3], h)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"zero-area box {box}")
    # A joint a little beyond the picture's edge is a real label (PoseTrack18 marks heads the frame cuts,
    # at y = -24.9); training's codec leaves joints outside the crop out of the loss. One more than the
    # picture's own size away is no position in it but a mix-up of units or fields.
    labeled = kp[:, 2] > 0
    far = labeled & ((kp[:, 0] < -w) | (kp[:, 0] > 2 * w) | (kp[:, 1] < -h) | (kp[:, 1] > 2 * h))
    if far.any():
        raise ValueError(f"keypoint(s) {np.flatnonzero(far).tolist()} outside the {w}x{h} image by more than "
                         "its own size")
    return np.array([x0, y0, x1 - x0, y1 - y0])


def load_person_records(
    ann_file: str | Path,
    image_dir: str | Path,
    schema: KeypointSchema,
    on_error: OnError = "raise",
    report: SkipReport | None = None,
) -> PersonRecords:
    """Non-crowd person annotations with at least one labeled keypoint, validated.

    Images are checked to exist here; whether they decode is checked when they are read.
    """
    return records_from_coco(read_annotation_file(ann_file), ann_file, image_dir, schema, on_error, report)


def records_from_coco(
    data: dict,
    ann_file: str | Path,
    image_dir: str | Path,
    schema: KeypointSchema,
    on_error: OnError = "raise",
    report: SkipReport | None = None,
) -> PersonRecords:
    """:func:`load_person_records` on an already parsed COCO dict; ``ann_file`` names it in messages."""
    report = report if report is not None else SkipReport()
    check_category_joints(data.get("categories") or [], schema.joints, str(ann_file))
    image_dir = Path(image_dir)
    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or not {"id", "file_name", "width", "height"} <= img.keys():
            raise DataError(f"{ann_file}: malformed image record {str(img)[:120]}")
        images[img["id"]] = img
    exists: dict[int, bool] = {}
    rows: list[tuple[str, int, int, np.ndarray, np.ndarray]] = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or ann.get("iscrowd", 0) or ann.get("category_id", 1) != 1:
            continue
        where = f"{ann_file}: annotation {ann.get('id', f'#{i}')} (image {ann.get('image_id')})"
        image = images.get(ann.get("image_id"))
        try:
            kp = _parse_keypoints(ann, schema.num_joints)
            if _unlabeled(ann, kp):
                continue
            if image is None:
                raise ValueError("image_id not among the images")
            box = _check_annotation(ann, image, kp)
        except ValueError as err:
            if on_error == "raise":
                raise DataError(f"{where}: {err}") from None
            report.add(str(err).split(" (")[0].split(" [")[0], where)
            continue
        path = image_dir / image["file_name"]
        if image["id"] not in exists:
            exists[image["id"]] = path.is_file()
        if not exists[image["id"]]:
            if on_error == "raise":
                raise DataError(f"{where}: image file not found: {path}")
            report.add("missing image", str(path))
            continue
        rows.append((str(path), image["id"], ann.get("id", -1), box, kp))
    if not rows:
        return PersonRecords([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)),
                             np.zeros((0, schema.num_joints, 3)), np.zeros(0))
    paths, image_ids, ann_ids, boxes, kps = zip(*rows)
    return PersonRecords(
        list(paths), np.array(image_ids, np.int64), np.array(ann_ids, np.int64),
        np.stack(boxes), np.stack(kps), np.ones(len(rows)),
    )


def _jpeg_complete(raw: bytes) -> bool:
    """Whether a JPEG's segments and scans reach an end-of-image marker; bytes after it do not matter.

    Segments are stepped over by their lengths, so the markers of an EXIF thumbnail inside one are never
    taken for the picture's; in a scan's data a 0xFF byte is followed by 0x00 (stuffing) or a restart
    marker, so the next other marker ends the scan. OpenCV would grey-fill a picture cut short instead.
    """
    a = np.frombuffer(raw, np.uint8)
    nxt = a[1:]
    markers = np.flatnonzero((a[:-1] == 0xFF) & (nxt != 0) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7)))
    pos = 2
    while (k := int(np.searchsorted(markers, pos))) < len(markers):
        pos = int(markers[k])
        if raw[pos + 1] == 0xD9:
            return True
        pos += 2 if raw[pos + 1] == 0x01 else 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
    return False


def _png_complete(raw: bytes) -> bool:
    """Whether a PNG's chunks, stepped over by their lengths, reach IEND; bytes after it do not matter."""
    pos = 8
    while pos + 8 <= len(raw):
        if raw[pos + 4:pos + 8] == b"IEND":
            return pos + 12 <= len(raw)  # with its checksum
        pos += 12 + int.from_bytes(raw[pos:pos + 4], "big")
    return False


def read_image(path: str) -> np.ndarray:
    """Decode an image to RGB uint8 with OpenCV: the one picture reader of every command and data loader,
    so that any picture that cannot be decoded (empty, truncated, corrupt) is a DataError to count or stop on.

    A JPEG or PNG (known by its first bytes, not its name) must be complete, as OpenCV decodes one cut
    short without an error; an empty file would make OpenCV assert instead of returning None.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read image ({err.strerror})") from None
    if not raw:
        raise DataError(f"{path}: empty file (0 bytes), not a picture")
    if raw.startswith(b"\xff\xd8") and not _jpeg_complete(raw):
        raise DataError(f"{path}: truncated JPEG (its scans end without an end-of-image marker)")
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and not _png_complete(raw):
        raise DataError(f"{path}: truncated PNG (its chunks end without IEND)")
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # a header OpenCV's decoders assert on
        image = None
    if image is None:
        raise DataError(f"{path}: OpenCV cannot decode this image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
