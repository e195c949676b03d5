"""Detections files: person boxes in COCO results format, checked record by record and against the images
they are applied to.

Published systems ship their detector's boxes this way (Team OKS used FPN + Mask R-CNN boxes with 56
person AP; HRNet and mmpose publish the 56.4-AP ``COCO_val2017_detections_AP_H_56_person.json``). The
defaults, ``top_k=20`` and ``score_floor=0.0``, keep low-scoring boxes on purpose: the COCO keypoint
metric ranks poses by score, so an extra low-score box costs little precision but can add a person that
would otherwise be missed (the sample AP_H 56 file goes down to 0.003).

A file is matched to pictures by ``image_id`` alone, so a file made for another split or numbering would
silently pose nothing; :meth:`DetectionsFile.coverage` makes that an error (no image covered) or a
warning with the counts (fewer than half covered).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from okspose.data.records import SkipReport
from okspose.errors import ConfigError, DataError
from okspose.fileio import read_json
from okspose.inference.instances import Detections

DEFAULT_TOP_K = 20
DEFAULT_SCORE_FLOOR = 0.0
PERSON_CATEGORY = 1  # COCO's person category id
FEW_COVERED = 0.5  # a file covering fewer than this share of the images gets a warning


def _bad(path: Path, index: int, why: str) -> DataError:
    return DataError(f"{path}: detection #{index}: {why}")


def _finite_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class DetectionsFile:
    """The person boxes of one detections file, for every image it names."""

    path: Path
    boxes: dict[int, Detections]  # kept boxes (score floor, top-k) per image id, best first
    person_boxes: Counter  # person boxes per image id as the file has them, before any floor or cap

    def select(self, image_ids: Collection[int] | None) -> dict[int, Detections]:
        """The boxes of ``image_ids`` (all when None)."""
        if image_ids is None:
            return dict(self.boxes)
        return {i: d for i, d in self.boxes.items() if i in image_ids}

    def coverage(self, image_ids: Collection[int]) -> str | None:
        """Check the file against the images it is applied to: a :class:`DataError` when it has person
        boxes but none on these images, a warning line with the counts when it covers fewer than half
        of them, else None. A file without any person box (a detector that found nobody) is no error."""
        ids = set(image_ids)
        covered = sum(1 for i in ids if self.person_boxes.get(i))
        total = sum(self.person_boxes.values())
        unknown = sum(n for i, n in self.person_boxes.items() if i not in ids)
        counts = (f"{self.path} has person boxes for {covered} of the {len(ids)} images it is applied to; "
                  f"{unknown} of its {total} person boxes fall on other image ids")
        if total and ids and not covered:
            raise DataError(f"{counts}: it was made for other images (another split or numbering?)")
        if not total and ids:
            return f"{self.path} holds no person boxes: nothing will be posed"
        if covered < FEW_COVERED * len(ids):
            return counts
        return None


def read_detections(
    path: str | Path,
    score_floor: float = DEFAULT_SCORE_FLOOR,
    top_k: int = DEFAULT_TOP_K,
    category_id: int = PERSON_CATEGORY,
    report: SkipReport | None = None,
) -> DetectionsFile:
    """Person boxes from a COCO results-format file, sorted by score and capped at ``top_k`` per image.

    A record that is not what the format promises (not an object, a missing key, a bbox that is not
    four finite numbers, a non-finite score) raises :class:`DataError` naming the file and the record
    index: such a file was not written by a detector and should not be half-used. Boxes with zero or
    negative width or height are dropped and counted in ``report``, because real detectors do emit them
    (e.g. after clipping to the image) and they hold no person to pose. Other categories are ignored.
    """
    if top_k < 1:
        raise ConfigError(f"test.det_top_k must be at least 1, got {top_k}")
    path = Path(path)
    data = read_json(path, "detections")
    if not isinstance(data, list):
        raise DataError(f"{path}: not a COCO results file (expected a JSON list of detections, "
                        f"got {type(data).__name__})")
    report = report if report is not None else SkipReport()
    per_image: dict[int, list[tuple[float, list[float]]]] = {}
    person_boxes: Counter = Counter()
    for i, det in enumerate(data):
        if not isinstance(det, dict):
            raise _bad(path, i, f"not an object: {str(det)[:80]}")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing:
            raise _bad(path, i, f"missing key(s) {missing}")
        image_id, box, score = det["image_id"], det["bbox"], det["score"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise _bad(path, i, f"image_id must be an integer, got {image_id!r}")
        if not isinstance(box, list) or len(box) != 4 or not all(_finite_number(v) for v in box):
            raise _bad(path, i, f"bbox must be 4 finite numbers [x, y, w, h], got {str(box)[:80]}")
        if not _finite_number(score):
            raise _bad(path, i, f"score must be a finite number, got {score!r}")
        if det["category_id"] != category_id:
            continue
        person_boxes[image_id] += 1
        if box[2] <= 0 or box[3] <= 0:
            report.add("empty box", f"{path}: detection #{i} (image {image_id}) bbox {box}")
            continue
        if score < score_floor:
            continue
        per_image.setdefault(image_id, []).append((float(score), [float(v) for v in box]))
    out: dict[int, Detections] = {}
    for image_id, dets in per_image.items():
        scores = np.array([s for s, _ in dets])
        order = np.argsort(-scores, kind="stable")[:top_k]  # stable: ties keep file order
        out[image_id] = (np.array([dets[j][1] for j in order]).reshape(-1, 4), scores[order])
    return DetectionsFile(path, out, person_boxes)


def load_detections(
    path: str | Path,
    image_ids: Collection[int] | None = None,
    score_floor: float = DEFAULT_SCORE_FLOOR,
    top_k: int = DEFAULT_TOP_K,
    category_id: int = PERSON_CATEGORY,
    report: SkipReport | None = None,
) -> dict[int, Detections]:
    """``{image_id: (boxes_xywh, scores)}`` of :func:`read_detections`, only ``image_ids`` when given.
    Images without detections have no entry; ``[]`` gives ``{}``."""
    return read_detections(path, score_floor, top_k, category_id, report).select(image_ids)
