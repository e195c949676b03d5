"""Posed persons after the network: instance scores, IoU-NMS and OKS-NMS, COCO results records.

Posing is the expensive part and the NMS variants are cheap, so posing runs once
(:mod:`okspose.inference.poser`) and :func:`select_instances` can be called for every row of an ablation
table. Everything here is a plain function over arrays and records that a test calls without a model.

Notation: N posed boxes, K joints. Boxes are ``xywh`` in image pixels; keypoints are [N, K, 3] arrays of
(x, y) in image pixels and the joint score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from okspose.config import TestConfig
from okspose.data.records import PersonRecords
from okspose.inference.nms import iou_nms, keypoint_instance_score, oks_nms, rescore, soft_oks_nms
from okspose.keypoints import box_oks_area

Detections = tuple[np.ndarray, np.ndarray]  # (boxes xywh [n, 4] image px float64, scores [n] float64), best first


@dataclass
class PosedInstances:
    """Every posed box of a set of pictures, before rescoring and NMS, and the pictures that could not be
    read (their persons are not posed; an evaluation still counts them as misses).

    Kept separate from instance selection so one posing run serves every NMS setting.

    Args:
        records: N person records (boxes ``xywh`` in image pixels, box scores, image ids).
        keypoints: float [N, K, 3], (x, y) in image pixels and joint score (heatmap maximum).
        crop_areas: float [N], area in square image pixels of the padded crop each box was posed from.
        skipped: one message per picture that could not be read.
    """

    records: PersonRecords
    keypoints: np.ndarray  # [N, K, 3] image x, y, joint score
    crop_areas: np.ndarray  # [N] area of the padded crop each box was posed from (test.oks_area=crop)
    skipped: list[str] = field(default_factory=list)  # one message per unreadable picture

    @property
    def box_scores(self) -> np.ndarray:
        """Detector box scores [N] of the posed records (1 for ground-truth boxes)."""
        return self.records.scores

    @classmethod
    def concat(cls, parts: Sequence[PosedInstances], num_joints: int) -> PosedInstances:
        """Join the posed parts of several jobs (ranks, chunks of pictures) in the given order.

        Args:
            parts: posed instances to join.
            num_joints: K, used to shape the empty result when ``parts`` is empty.

        Returns:
            PosedInstances: the rows of all parts, and all their skipped messages.
        """
        if not parts:
            return cls(records_from_detections({}, {}, num_joints), np.zeros((0, num_joints, 3)), np.zeros(0))
        return cls(PersonRecords.concat([p.records for p in parts]), np.concatenate([p.keypoints for p in parts]),
                   np.concatenate([p.crop_areas for p in parts]), [s for p in parts for s in p.skipped])


def records_from_detections(image_paths: dict[int, str], detections: dict[int, Detections],
                            num_joints: int) -> PersonRecords:
    """Turn detector output into person records to pose; images without detections add nothing.

    Args:
        image_paths: image id -> picture path; detections of ids missing here are dropped.
        detections: image id -> (boxes float [n, 4] ``xywh`` in image pixels, scores float [n]).
        num_joints: K, the width of the (all-zero) keypoint array.

    Returns:
        PersonRecords: one row per box, by ascending image id then detection order, with ``ann_ids`` -1,
        keypoints zeros [N, K, 3] and the detector scores as ``scores``.
    """
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
    """Select the records of some pictures (a rank's shard, a chunk of pictures).

    Args:
        records: person records.
        image_ids: ids of the pictures to keep.

    Returns:
        PersonRecords: the records whose image id is in ``image_ids``, in their original order.
    """
    return records.subset(np.flatnonzero(np.isin(records.image_ids, np.asarray(image_ids, dtype=np.int64))))


def select_instances(posed: PosedInstances, test: TestConfig, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Choose the instances to report: rescoring, IoU-NMS and OKS-NMS as ``test`` switches them.

    OKS-NMS runs per picture and scales OKS by the box's area (``test.oks_area=box``, okspose's default: no
    Team OKS code is public, nor do their slides say) or by the padded crop's (``crop``, HRNet's and
    mmpose's, which suppresses more at the same threshold).

    Args:
        posed: the posed boxes of one or more pictures.
        test: selection settings (``rescoring``, ``kpt_score_thr``, ``iou_nms``/``iou_thr``,
            ``oks_nms``/``oks_thr``/``oks_area``, ``soft_oks``/``soft_oks_sigma``, ``det_top_k``).
        sigmas: [K] per-joint OKS falloffs of the schema.

    Returns:
        tuple:
        - index (np.ndarray): int64 [M] rows of ``posed`` kept. With OKS-NMS: grouped by ascending image
          id, best first within each picture; otherwise by descending score after IoU-NMS, or in input order.
        - scores (np.ndarray): float64 [M] their final instance scores (decayed ones with soft OKS-NMS).
    """
    kpt_score = keypoint_instance_score(posed.keypoints[..., 2], test.kpt_score_thr)
    scores = rescore(posed.box_scores, kpt_score, test.rescoring)
    keep = np.arange(len(scores))
    if test.iou_nms and len(keep):
        keep = keep[iou_nms(posed.records.boxes[keep], scores[keep], test.iou_thr, group=posed.records.image_ids[keep])]
    if not test.oks_nms:
        return keep, scores[keep]
    kept, final = [], []
    areas = posed.crop_areas if test.oks_area == "crop" else box_oks_area(posed.records.boxes)
    image_ids = posed.records.image_ids[keep]
    for image_id in np.unique(image_ids):
        idx = keep[image_ids == image_id]
        if test.soft_oks:
            sel, new_scores = soft_oks_nms(posed.keypoints[idx], scores[idx], areas[idx], sigmas=sigmas,
                                           max_dets=test.det_top_k, decay_sigma=test.soft_oks_sigma)
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
    """Adapt selection settings to ground-truth boxes: OKS-NMS at most, never IoU-NMS, since real people
    may overlap beyond any IoU threshold.

    Args:
        test: the settings used for detector boxes.

    Returns:
        TestConfig: a copy with ``iou_nms=False``.
    """
    return dataclasses.replace(test, iou_nms=False)


def coco_results(image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 category_id: int = 1) -> list[dict]:
    """Build COCO keypoint results records for the metric and for ``results.json`` files.

    No ``bbox`` field: pycocotools would take the detection area from it instead of from the keypoints,
    which shifts APm/APl.

    Args:
        image_ids: [N] the picture of each person.
        keypoints: [N, K, 3], (x, y) in image pixels and joint score.
        scores: [N] instance scores.
        category_id: COCO category of every record (1: person).

    Returns:
        list[dict]: N records ``{"image_id": int, "category_id": int, "keypoints": [x1, y1, s1, ...] (3K
        floats rounded to 3 decimals), "score": float}``.
    """
    return [
        {
            "image_id": int(image_id),
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "score": float(score),
        }
        for image_id, kp, score in zip(image_ids, keypoints, scores)
    ]


def results_for(posed: PosedInstances, index: np.ndarray, scores: np.ndarray) -> list[dict]:
    """Build COCO keypoint results of the instances :func:`select_instances` kept.

    Args:
        posed: the posed boxes.
        index: int [M] rows of ``posed`` to report.
        scores: [M] their final instance scores.

    Returns:
        list[dict]: M records as in :func:`coco_results`.
    """
    return coco_results(posed.records.image_ids[index], posed.keypoints[index], scores)
