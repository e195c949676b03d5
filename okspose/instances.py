"""Posed persons after the network: instance scores, IoU-NMS and OKS-NMS, COCO results records.

Posing is the expensive part and the NMS variants are cheap, so posing runs once
(:mod:`okspose.posing`) and :func:`select_instances` can be called for every row of an ablation table.
Everything here is a plain function over arrays and records that a test calls without a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from okspose.config import TestConfig
from okspose.data.coco import PersonRecords
from okspose.postprocess import iou_nms, keypoint_instance_score, oks_nms, rescore, soft_oks_nms

Detections = tuple[np.ndarray, np.ndarray]  # (boxes xywh [n, 4] float64, scores [n] float64), best first


@dataclass
class PosedInstances:
    """Every posed box of a set of pictures, before rescoring and NMS, and the pictures that could not be
    read (their persons are not posed; an evaluation still counts them as misses)."""

    records: PersonRecords
    keypoints: np.ndarray  # [N, K, 3] image x, y, joint score
    crop_areas: np.ndarray  # [N] area of the padded crop each box was posed from (test.oks_area=crop)
    skipped: list[str] = field(default_factory=list)  # one message per unreadable picture

    @property
    def box_scores(self) -> np.ndarray:
        return self.records.scores

    @classmethod
    def concat(cls, parts: Sequence[PosedInstances], num_joints: int) -> PosedInstances:
        if not parts:
            return cls(records_from_detections({}, {}, num_joints), np.zeros((0, num_joints, 3)), np.zeros(0))
        return cls(PersonRecords.concat([p.records for p in parts]), np.concatenate([p.keypoints for p in parts]),
                   np.concatenate([p.crop_areas for p in parts]), [s for p in parts for s in p.skipped])


def records_from_detections(image_paths: dict[int, str], detections: dict[int, Detections],
                            num_joints: int) -> PersonRecords:
    """Person records for detector boxes (no keypoints known); images without detections add nothing."""
    rows = [(image_id, box, score) for image_id, (boxes, scores) in sorted(detections.items())
            if image_id in image_paths for box, score in zip(boxes, scores)]
    n = len(rows)
    return PersonRecords(
        [image_paths[r[0]] for r in rows],
        np.array([r[0] for r in rows], dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64).reshape(n, 4),
        np.zeros((n, num_joints, 3)),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


def records_of_images(records: PersonRecords, image_ids: Sequence[int]) -> PersonRecords:
    """The records whose picture is one of ``image_ids`` (a rank's shard, a chunk of pictures)."""
    return records.subset(np.flatnonzero(np.isin(records.image_ids, np.asarray(image_ids, dtype=np.int64))))


def select_instances(posed: PosedInstances, test: TestConfig, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices kept, their final scores) after rescoring, IoU-NMS and OKS-NMS as ``test`` switches them.

    OKS-NMS scales OKS by the box's area (``test.oks_area=box``, the default: the seed's choice) or by
    the padded crop's (``crop``, HRNet's and mmpose's, which suppresses more at the same threshold).
    """
    kpt_score = keypoint_instance_score(posed.keypoints[..., 2], test.kpt_score_thr)
    scores = rescore(posed.box_scores, kpt_score, test.rescoring)
    keep = np.arange(len(scores))
    if test.iou_nms and len(keep):
        keep = keep[iou_nms(posed.records.boxes[keep], scores[keep], test.iou_thr, group=posed.records.image_ids[keep])]
    if not test.oks_nms:
        return keep, scores[keep]
    kept, final = [], []
    areas = posed.crop_areas if test.oks_area == "crop" else posed.records.boxes[:, 2] * posed.records.boxes[:, 3]
    image_ids = posed.records.image_ids[keep]
    for image_id in np.unique(image_ids):
        idx = keep[image_ids == image_id]
        if test.soft_oks:
            sel, new_scores = soft_oks_nms(posed.keypoints[idx], scores[idx], areas[idx], test.oks_thr, sigmas,
                                           max_dets=test.det_top_k)
            kept.append(idx[sel])
            final.append(new_scores)
        else:
            sel = oks_nms(posed.keypoints[idx], scores[idx], areas[idx], test.oks_thr, sigmas)
            kept.append(idx[sel])
            final.append(scores[idx[sel]])
    if not kept:
        return keep[:0], scores[:0]
    return np.concatenate(kept), np.concatenate(final)


def gt_box_settings(test: TestConfig) -> TestConfig:
    """``test`` for ground-truth boxes: OKS-NMS at most, never IoU-NMS, since real people may overlap
    beyond any IoU threshold."""
    return dataclasses.replace(test, iou_nms=False)


def coco_results(records: PersonRecords, keypoints: np.ndarray, scores: np.ndarray,
                 category_id: int = 1) -> list[dict]:
    """COCO keypoint results records (image_id, category_id, keypoints [x, y, s]*K, score). No ``bbox``
    field: pycocotools would take the detection area from it instead of from the keypoints, which shifts
    APm/APl."""
    return [
        {
            "image_id": int(image_id),
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "score": float(score),
        }
        for image_id, kp, score in zip(records.image_ids, keypoints, scores)
    ]


def results_for(posed: PosedInstances, index: np.ndarray, scores: np.ndarray) -> list[dict]:
    """COCO keypoint results of the selected instances."""
    return coco_results(posed.records.subset(index), posed.keypoints[index], scores)


@dataclass
class Evaluation:
    """COCO stats over every image of a set, and the images that could not be read (scored as misses)."""

    stats: dict[str, float]
    images: int
    skipped: list[str]

    def as_dict(self) -> dict[str, float]:
        """The stats with ``images`` and ``skipped_images`` counts added."""
        return {**self.stats, "images": self.images, "skipped_images": len(self.skipped)}

    def skip_line(self) -> str | None:
        """One line for the summary when pictures were skipped."""
        if not self.skipped:
            return None
        shown = "; ".join(self.skipped[:3]) + (" ..." if len(self.skipped) > 3 else "")
        return (f"skipped {len(self.skipped)} of {self.images} images (unreadable; their persons count as "
                f"missed): {shown}")
