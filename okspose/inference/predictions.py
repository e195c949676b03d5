"""Posed pictures as COCO files: ``predictions.json`` (COCO annotations, loadable by pycocotools' ``COCO()``
and usable as pseudo-labels) and ``results.json`` (the keypoint results list ``okspose test`` writes), in
the same order.

COCO ground truth only knows visibility flags, so a joint scoring at least ``kpt_thr`` and lying inside
the picture gets ``v = 2``; any other gets ``v = 0`` ("not labelled") with ``x = y = 0``, as in COCO, so
that no training or evaluation code trusts a guessed joint (and COCO loaders, ours included, reject
labelled joints outside the image). Its raw location stays in ``results.json``, and every joint's score
is in the annotation's ``keypoint_scores``. ``bbox`` is the posed box clipped to the picture and ``area``
its box-only OKS scale, ``keypoints.box_oks_area`` (no segmentation exists), as the metric, mining and
OKS-NMS take it. Video frames are named ``<video stem>/<frame:06d>.jpg`` (the layout of
extracted frames) with ``video`` and ``frame_index`` fields, and their persons carry ``track_id``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from okspose.data.remap import person_category
from okspose.errors import OksposeError
from okspose.fileio import save_json
from okspose.inference.estimator import PoseResult
from okspose.keypoints import KeypointSchema, box_oks_area


@dataclass(frozen=True)
class Picture:
    """Where one posed picture came from: input ``item``, ``frame`` index (-1 for a still image)."""

    item: int
    frame: int
    image_id: int
    file_name: str
    source: str  # the image file, or the video the frame is from


Posed = tuple[Picture, PoseResult]


def number_frames(posed: Sequence[Posed], first_id: int) -> list[Posed]:
    """Sorted by input then frame, video frames numbered from ``first_id`` on (after every still's id)."""
    out = []
    for picture, result in sorted(posed, key=lambda p: (p[0].item, p[0].frame)):
        if picture.frame >= 0:
            picture = dataclasses.replace(picture, image_id=first_id)
            first_id += 1
        out.append((picture, result))
    return out


def _annotation(result: PoseResult, row: int, record: dict, kpt_thr: float, ann_id: int) -> dict:
    width, height = result.image_size
    kp = result.keypoints_with_scores[row]
    inside = (kp[:, 0] >= 0) & (kp[:, 0] <= width) & (kp[:, 1] >= 0) & (kp[:, 1] <= height)
    good = (kp[:, 2] >= kpt_thr) & inside
    coco_kp = np.where(good[:, None], np.c_[kp[:, :2], np.full(len(kp), 2.0)], 0.0)
    box = result.boxes_xywh[row]
    ann = {"id": ann_id, "image_id": record["image_id"], "category_id": 1, "iscrowd": 0,
           "keypoints": [round(float(v), 3) if j % 3 < 2 else int(v) for j, v in enumerate(coco_kp.ravel())],
           "keypoint_scores": [round(float(s), 4) for s in kp[:, 2]], "num_keypoints": int(good.sum()),
           "bbox": [round(float(v), 2) for v in box], "area": round(float(box_oks_area(box)[0]), 2),
           "score": record["score"]}
    if "track_id" in record:
        ann["track_id"] = record["track_id"]
    return ann


def coco_predictions(posed: Sequence[Posed], schema: KeypointSchema, kpt_thr: float) -> tuple[dict, list[dict]]:
    """(``predictions.json`` dict, ``results.json`` list) of pictures already sorted and numbered."""
    images, annotations, results = [], [], []
    for picture, result in posed:
        width, height = result.image_size
        image = {"id": picture.image_id, "file_name": picture.file_name, "width": width, "height": height}
        image.update({"video": picture.source, "frame_index": picture.frame} if picture.frame >= 0
                     else {"path": picture.source})
        images.append(image)
        for row, record in enumerate(result.to_coco(picture.image_id)):
            results.append(record)
            annotations.append(_annotation(result, row, record, kpt_thr, len(annotations) + 1))
    return {"images": images, "annotations": annotations, "categories": [person_category(schema)]}, results


def write_predictions(predictions: dict, results: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """Write both files into ``out_dir``; when that fails (the disk filled up, the folder went away), they
    are written into a fresh temporary folder instead, and the :class:`OksposeError` names it, so the
    posing is never lost."""
    try:
        return save_json(predictions, out_dir / "predictions.json"), save_json(results, out_dir / "results.json")
    except OSError as err:
        kept = Path(tempfile.mkdtemp(prefix="okspose-predict-"))
        save_json(predictions, kept / "predictions.json")
        save_json(results, kept / "results.json")
        raise OksposeError(f"cannot write into {out_dir} ({err.strerror or err}): this run's predictions.json and "
                           f"results.json are kept in {kept}") from None


def counted(n: int, noun: str) -> str:
    """``1 picture``, ``2 pictures``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(posed: Sequence[Posed], persons: int, pictures: int, paths: tuple[Path, Path], vis: Path) -> list[str]:
    """``predict``'s closing lines: what was posed and written, and a note where the drawing thresholds
    leave pictures empty although persons were found there (the note names the setting to lower)."""
    frames = sum(p.frame >= 0 for p, _ in posed)
    lines = [f"posed {counted(len(posed) - frames, 'image')}" + (f" and {counted(frames, 'video frame')}"
             if frames else "") + f": {counted(persons, 'person')}"]
    lines.append(f"wrote {paths[0]}, {paths[1]}" + (f", {counted(pictures, 'picture')} in {vis}" if pictures else ""))
    hidden = [r for _, r in posed if len(r) and not r.drawn.any()]
    if pictures and hidden:
        joint, instance = hidden[0].draw_thresholds
        lines.append(f"note: no person is drawn in {counted(len(hidden), 'picture')} where persons were found: "
                     f"each scores under test.vis_instance_thr={instance:g} or has no joint over "
                     f"test.vis_kpt_thr={joint:g} (lower them to draw more; the JSON files hold every person)")
    return lines
