"""What ``okspose test`` and ``okspose ablation`` do: pick the boxes (ground truth, a detections file or a
detector), pose them, rescore and suppress, write one COCO results file, evaluate with pycocotools.

Under ``torchrun`` the images are sharded across ranks and the results gathered on rank 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from okspose.ablation import format_ablation, run_ablation
from okspose.builders import build_model, build_records, build_schema, load_model_weights
from okspose.config import Config
from okspose.data.coco import PersonRecords, SkipReport, read_annotation_file
from okspose.detection import PersonDetector, load_detections, load_synthetic_detector
from okspose.engine.distributed import DistInfo, gather_lists, shard
from okspose.engine.evaluate import draw_predictions
from okspose.evaluation import evaluate_keypoints
from okspose.fileio import save_json
from okspose.pipeline import (
    PosedInstances,
    gt_box_settings,
    image_paths_from_coco,
    pose_boxes,
    records_from_detections,
    results_for,
    run_detector,
    select_instances,
)


@dataclass(frozen=True)
class BoxSource:
    """Where person boxes come from: ground truth, a COCO results file, or a detector."""

    kind: str = "gt"  # "gt" | "detections" | "maskrcnn" | "synthetic"
    path: str | None = None  # detections file, or detector weights

    def describe(self) -> str:
        return {"gt": "ground-truth boxes", "detections": f"detections from {self.path}",
                "maskrcnn": "Mask R-CNN R50-FPN detector", "synthetic": "synthetic-scenes detector"}[self.kind]


def make_detector(source: BoxSource, cfg: Config, device: torch.device) -> PersonDetector:
    if source.kind == "synthetic":
        if not source.path:
            raise ValueError("--detector synthetic needs --detector-weights PATH (made by `okspose demo`)")
        return load_synthetic_detector(source.path, top_k=cfg.test.det_top_k,
                                       score_floor=cfg.test.det_score_floor).to(device)
    return PersonDetector(source.path, top_k=cfg.test.det_top_k, score_floor=cfg.test.det_score_floor).to(device)


def detected_instances(
    model: torch.nn.Module, cfg: Config, source: BoxSource, image_paths: dict[int, str], device: torch.device,
    report: SkipReport, progress: bool,
) -> PosedInstances:
    """Detector or file boxes for ``image_paths``, posed."""
    if source.kind == "detections":
        dets = load_detections(source.path, set(image_paths), cfg.test.det_score_floor, cfg.test.det_top_k,
                               report=report)
    else:
        dets = run_detector(make_detector(source, cfg, device), image_paths, report, progress)
    records = records_from_detections(image_paths, dets, build_schema(cfg).num_joints)
    return pose_boxes(model, cfg, records, device, progress)


def gt_instances(model: torch.nn.Module, cfg: Config, image_ids: set[int], device: torch.device,
                 progress: bool) -> PosedInstances:
    records = build_records(cfg, "val")
    records = records.subset(np.flatnonzero(np.isin(records.image_ids, list(image_ids))))
    return pose_boxes(model, cfg, records, device, progress)


def _val_images(cfg: Config, info: DistInfo) -> tuple[dict[int, str], list[int]]:
    """This rank's share of the val images, and all val image ids (for the metric)."""
    data = read_annotation_file(cfg.data_path("val_ann"))
    paths = image_paths_from_coco(data["images"], cfg.data_path("val_images"))
    ids = sorted(paths)
    mine = shard(ids, info)
    return {i: paths[i] for i in mine}, ids


def run_test(cfg: Config, checkpoint: str | Path, source: BoxSource, out: Path, info: DistInfo,
             progress: bool = True, vis_dir: str | Path | None = None) -> dict[str, float] | None:
    """Pose the val split with ``source``'s boxes; rank 0 writes ``out`` and returns the COCO stats."""
    model = load_model_weights(build_model(cfg), checkpoint).to(info.device)
    image_paths, all_ids = _val_images(cfg, info)
    report = SkipReport()
    if source.kind == "gt":
        posed = gt_instances(model, cfg, set(image_paths), info.device, progress)
        index, scores = select_instances(posed, gt_box_settings(cfg.test), np.asarray(build_schema(cfg).sigmas))
    else:
        posed = detected_instances(model, cfg, source, image_paths, info.device, report, progress)
        index, scores = select_instances(posed, cfg.test, np.asarray(build_schema(cfg).sigmas))
    if vis_dir is not None and info.is_main:
        draw_predictions(posed.records.subset(index), posed.keypoints[index], scores, build_schema(cfg),
                         Path(vis_dir), cfg.test.vis_kpt_thr, cfg.test.vis_instance_thr)
    results = gather_lists(results_for(posed, index, scores), info)
    skipped = gather_lists([report.summary()] if report.total else [], info)
    if not info.is_main:
        return None
    for line in skipped:
        print(f"boxes: {line}", file=sys.stderr)
    save_json(results, out)
    return evaluate_keypoints(cfg.data_path("val_ann"), results, img_ids=all_ids, sigmas=build_schema(cfg).sigmas)


def run_ablation_tables(cfg: Config, checkpoint: str | Path, source: BoxSource, info: DistInfo,
                        with_gt: bool = True, progress: bool = True) -> str | None:
    """The seed's tables (markdown) on the val split; rank 0 returns the text."""
    model = load_model_weights(build_model(cfg), checkpoint).to(info.device)
    image_paths, all_ids = _val_images(cfg, info)
    report = SkipReport()
    detected = detected_instances(model, cfg, source, image_paths, info.device, report, progress)
    gt = gt_instances(model, cfg, set(image_paths), info.device, progress) if with_gt else None
    detected, gt = _gather_posed(detected, info), _gather_posed(gt, info) if gt is not None else None
    if not info.is_main:
        return None
    rows = run_ablation(detected, gt, cfg.test, np.asarray(build_schema(cfg).sigmas), cfg.data_path("val_ann"),
                        all_ids)
    header = (f"Ablation on {cfg.data_path('val_ann')} ({len(all_ids)} images), {source.describe()}, "
              f"flip test {'on' if cfg.test.flip_test else 'off'}, decoding {cfg.test.decode}\n\n")
    return header + format_ablation(rows)


def _gather_posed(posed: PosedInstances, info: DistInfo) -> PosedInstances:
    if not info.distributed:
        return posed
    parts = gather_lists([(posed.records, posed.keypoints, posed.crop_areas)], info)
    return PosedInstances(PersonRecords.concat([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                          np.concatenate([p[2] for p in parts]))
