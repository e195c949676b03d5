"""The seed's top-down inference after detection: pose every box (batched across images), score each
instance, suppress duplicates (IoU-NMS on boxes, then OKS-NMS on poses), emit COCO results.

Posing is the expensive part and the NMS variants are cheap, so :func:`pose_boxes` runs once and
:func:`select_instances` can be called for every row of an ablation table.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from okspose.builders import build_codec, build_schema
from okspose.config import Config, TestConfig
from okspose.data.coco import DataError, PersonRecords, SkipReport, read_image
from okspose.detection import Detections, PersonDetector
from okspose.engine.evaluate import coco_results, draw_predictions, predict_keypoints
from okspose.evaluation import evaluate_keypoints
from okspose.fileio import save_json
from okspose.postprocess import crop_areas, iou_nms, keypoint_instance_score, oks_nms, rescore, soft_oks_nms


@dataclass
class PosedInstances:
    """Every posed box of a set of images, before rescoring and NMS."""

    records: PersonRecords
    keypoints: np.ndarray  # [N, K, 3] image x, y, joint score
    crop_areas: np.ndarray  # [N] area of the padded crop each box was posed from (test.oks_area=crop)

    @property
    def box_scores(self) -> np.ndarray:
        return self.records.scores


def records_from_detections(
    image_paths: dict[int, str], detections: dict[int, tuple[np.ndarray, np.ndarray]], num_joints: int
) -> PersonRecords:
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


def pose_boxes(
    model: nn.Module, cfg: Config, records: PersonRecords, device: torch.device, progress: bool = False
) -> PosedInstances:
    """Pose all boxes in batches (flip test per ``cfg.test``); unreadable images are reported and dropped."""
    kps, done = predict_keypoints(model, records, build_codec(cfg), build_schema(cfg), cfg.test, device,
                                  workers=cfg.train.workers, padding=cfg.data.padding, on_error="skip",
                                  progress=progress)
    keep = np.flatnonzero(done)
    w, h = cfg.data.input_size
    return PosedInstances(records.subset(keep), kps[keep], crop_areas(records.boxes[keep], w / h, cfg.data.padding))


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


def results_for(posed: PosedInstances, index: np.ndarray, scores: np.ndarray) -> list[dict]:
    """COCO keypoint results of the selected instances. No ``bbox`` field: pycocotools would take the
    detection area from it instead of from the keypoints, which shifts APm/APl."""
    return coco_results(posed.records.subset(index), posed.keypoints[index], scores)


def gt_box_settings(test: TestConfig) -> TestConfig:
    """``test`` for ground-truth boxes: OKS-NMS at most, never IoU-NMS, since real people may overlap
    beyond any IoU threshold."""
    return dataclasses.replace(test, iou_nms=False)


def evaluate_gt_boxes(
    model: nn.Module,
    cfg: Config,
    records: PersonRecords,
    device: torch.device,
    results_path: str | Path | None = None,
    vis_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Pose the ground-truth person boxes, score and suppress them with :func:`gt_box_settings`, write
    the results file, and return the COCO
    stats over the images those persons come from; optionally draw the poses into ``vis_dir``."""
    schema = build_schema(cfg)
    posed = pose_boxes(model, cfg, records, device, progress)
    index, scores = select_instances(posed, gt_box_settings(cfg.test), np.asarray(schema.sigmas))
    results = results_for(posed, index, scores)
    if results_path is not None:
        save_json(results, results_path)
    if vis_dir is not None:
        draw_predictions(posed.records.subset(index), posed.keypoints[index], scores, schema, Path(vis_dir),
                         cfg.test.vis_kpt_thr, cfg.test.vis_instance_thr)
    img_ids = sorted(set(posed.records.image_ids.tolist()))
    return evaluate_keypoints(cfg.data_path("val_ann"), results, img_ids=img_ids or None, sigmas=schema.sigmas)


def image_paths_from_coco(images: list[dict], image_dir: str | Path) -> dict[int, str]:
    return {int(im["id"]): str(Path(image_dir) / im["file_name"]) for im in images}


def run_detector(
    detector: PersonDetector, image_paths: dict[int, str], report: SkipReport, progress: bool = False
) -> dict[int, Detections]:
    """Person boxes for every image; an image that fails to decode is reported, counted and skipped."""
    out: dict[int, Detections] = {}
    ids = list(image_paths)
    chunk = max(1, detector.batch_size)
    bar = tqdm(total=len(ids), desc="detect", unit="img", disable=not progress, leave=False)
    for start in range(0, len(ids), chunk):
        batch_ids, images = [], []
        for image_id in ids[start : start + chunk]:
            try:
                images.append(read_image(image_paths[image_id]))
                batch_ids.append(image_id)
            except DataError as err:
                report.add("unreadable image", str(err))
                print(f"skipping {err}", file=sys.stderr)
        for image_id, dets in zip(batch_ids, detector.detect(images) if images else []):
            out[image_id] = dets
        bar.update(len(ids[start : start + chunk]))
    bar.close()
    return out
