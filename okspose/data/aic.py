"""AI Challenger keypoints: the original layout and COCO-style AIC files, read into the AIC-14 schema.

The original layout is a JSON list of records ``{"image_id": str, "human_annotations": {name: [x1, y1,
x2, y2]}, "keypoint_annotations": {name: [x, y, v] * 14}}`` with v = 1 visible, 2 occluded, 3 unlabeled.
It is converted to a COCO dict (v: 2 visible, 1 occluded, 0 unlabeled at (0, 0); box xywh; ``area`` =
:func:`okspose.keypoints.box_oks_area`, the OKS scale of a box-only person, since AIC has no segmentation),
so the COCO validation in :mod:`okspose.data.records` checks both formats the same way. Mapping into
COCO-17 by joint name is :mod:`okspose.data.remap`'s job.

The original layout carries no image sizes. They are read from the image headers when ``image_dir``
holds the images; otherwise the image record gets width/height = the extent of its labels and
``"size_from_labels": true`` — then "outside the image" can only mean a coordinate below minus that size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from okspose.data.records import OnError, PersonRecords, SkipReport, read_annotation_file, records_from_coco
from okspose.data.remap import person_category, remap_records
from okspose.errors import DataError
from okspose.fileio import read_json
from okspose.keypoints import AIC14, KeypointSchema, box_oks_area

AIC_TO_COCO_VISIBILITY = np.array([-1, 2, 1, 0])  # indexed by AIC's v: 1 visible, 2 occluded, 3 unlabeled


def _image_size(image_dir: Path | None, file_name: str) -> tuple[int, int] | None:
    path = image_dir / file_name if image_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as err:
        raise DataError(f"{path}: cannot read the image header ({err})") from None


def _convert_human(box: object, kps: object) -> tuple[list[float], np.ndarray]:
    """(COCO xywh box, keypoints [14, 3] with COCO visibility); raises ValueError with the reason."""
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        raise ValueError("malformed box (need [x1, y1, x2, y2])")
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"box {box} has x2 < x1 or y2 < y1")
    n = 3 * AIC14.num_joints
    try:
        kp = np.asarray(kps, dtype=np.float64)
    except (TypeError, ValueError):
        kp = np.zeros(0)
    if not isinstance(kps, list) or kp.shape != (n,) or not np.isfinite(kp).all():
        raise ValueError(f"malformed keypoints (need {n} numbers)")
    kp = kp.reshape(AIC14.num_joints, 3)
    bad = (kp[:, 2] != 1) & (kp[:, 2] != 2) & (kp[:, 2] != 3)
    if bad.any():
        raise ValueError(f"visibility of joint(s) {np.flatnonzero(bad).tolist()} is not 1, 2 or 3")
    kp[:, 2] = AIC_TO_COCO_VISIBILITY[kp[:, 2].astype(np.int64)]
    kp[kp[:, 2] == 0, :2] = 0.0
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]], kp


def aic_to_coco(records: object, source: str | Path, image_dir: str | Path | None = None,
                on_error: OnError = "raise", report: SkipReport | None = None) -> dict:
    """The original AIC layout (already parsed) as a COCO dict in the AIC-14 schema.

    A malformed record or person (wrong joint count, x2 < x1, visibility not 1/2/3, a person without
    keypoints) raises a :class:`DataError` naming the file, the image and the person, or with
    ``on_error="skip"`` is counted in ``report``.
    """
    report = report if report is not None else SkipReport()
    image_dir = Path(image_dir) if image_dir is not None else None
    if not isinstance(records, list):
        raise DataError(f"{source}: not an AI Challenger keypoint file (needs a list of records)")
    images, annotations = [], []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("image_id"), str) or not isinstance(
            rec.get("human_annotations"), dict
        ) or not isinstance(rec.get("keypoint_annotations"), dict):
            raise DataError(f"{source}: record #{i} is not {{image_id, human_annotations, keypoint_annotations}}")
        image_id, file_name = len(images) + 1, f"{rec['image_id']}.jpg"
        people = []
        for name, box in rec["human_annotations"].items():
            try:
                if name not in rec["keypoint_annotations"]:
                    raise ValueError("no keypoint_annotations entry")
                people.append((name, *_convert_human(box, rec["keypoint_annotations"][name])))
            except ValueError as err:
                where = f"{source}: image {rec['image_id']} {name}"
                if on_error == "raise":
                    raise DataError(f"{where}: {err}") from None
                report.add(str(err).split(" (")[0].split(" [")[0], where)
        size = _image_size(image_dir, file_name)
        image = {"id": image_id, "file_name": file_name, "aic_image_id": rec["image_id"]}
        if size is None:
            xs = [b[0] + b[2] for _, b, _ in people] + [float(k[:, 0].max()) for *_, k in people]
            ys = [b[1] + b[3] for _, b, _ in people] + [float(k[:, 1].max()) for *_, k in people]
            size = (math.ceil(max([1.0, *xs])), math.ceil(max([1.0, *ys])))
            image["size_from_labels"] = True
        image["width"], image["height"] = size
        images.append(image)
        for name, box, kp in people:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": box, "area": float(box_oks_area(box)[0]), "aic_human": name,
                "keypoints": [float(v) if j % 3 < 2 else int(v) for j, v in enumerate(kp.ravel())],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
            })
    return {"info": {"description": f"AI Challenger keypoints from {source}"}, "images": images,
            "annotations": annotations, "categories": [person_category(AIC14)]}


def read_aic(path: str | Path, fmt: str = "aic", image_dir: str | Path | None = None,
             on_error: OnError = "raise", report: SkipReport | None = None) -> dict:
    """An AIC file as a COCO dict in the AIC-14 schema: ``fmt`` "aic" (original layout) or "aic-coco"."""
    if fmt == "aic":
        return aic_to_coco(read_json(path, "annotation"), path, image_dir, on_error, report)
    if fmt == "aic-coco":
        return read_annotation_file(path)
    raise ValueError(f"unknown AIC format {fmt!r}; choose 'aic' or 'aic-coco'")


def load_aic_records(path: str | Path, image_dir: str | Path, fmt: str = "aic",
                     schema: KeypointSchema = AIC14, on_error: OnError = "raise",
                     report: SkipReport | None = None) -> PersonRecords:
    """Validated AIC person records, in ``schema``'s joints (AIC-14 as read, or COCO-17 by joint name)."""
    report = report if report is not None else SkipReport()
    data = read_aic(path, fmt, image_dir, on_error, report)
    records = remap_records(records_from_coco(data, path, image_dir, AIC14, on_error, report), AIC14, schema)
    return records.subset(np.flatnonzero((records.keypoints[..., 2] > 0).any(1)))  # e.g. only a head top
