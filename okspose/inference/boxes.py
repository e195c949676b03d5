"""Where person boxes come from (ground truth, a detections file checked against the images, or a detector
run on pictures decoded once for both the detector and the pose network), and the pass that poses the val
split with them, sharded over the processes of a ``torchrun`` job: each rank poses its share of the
images and every rank gets all the poses."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from okspose.config import Config
from okspose.data.build import build_records
from okspose.data.crops import ImageFiles, as_is
from okspose.data.records import PersonRecords, SkipReport, read_annotation_file
from okspose.distributed import DistInfo, gather_lists, shard
from okspose.errors import OksposeError
from okspose.inference.detections import read_detections
from okspose.inference.detector import PersonDetector
from okspose.inference.instances import Detections, PosedInstances, records_from_detections, records_of_images
from okspose.inference.poser import Poser
from okspose.inference.runtime import resolve_amp
from okspose.inference.synthetic_detector import load_synthetic_detector
from okspose.inference.yolox import YoloxDetector
from okspose.progress import progress as progress_bar

# Pictures decoded and held at once on the detector path (and for videos in predict): enough to keep the
# pose batches full, few enough that a long video never holds more than this many frames.
CHUNK_IMAGES = 64
Detector = PersonDetector | YoloxDetector  # what make_detector returns: anything with .detect(images)


@dataclass(frozen=True)
class BoxSource:
    """Where person boxes come from: ground truth, a COCO results file, or a detector."""

    kind: str = "gt"  # "gt" | "detections" | "maskrcnn" | "mobilenet" | "synthetic" | "yolox"
    path: str | None = None  # detections file, or detector weights

    @classmethod
    def choose(cls, detections: str | None = None, detector: str | None = None,
               weights: str | None = None) -> BoxSource:
        """The source a command's ``--detections`` / ``--detector [--detector-weights]`` name; ground
        truth when neither is given."""
        if detections:
            return cls("detections", detections)
        if detector:
            return cls(detector, weights)
        return cls("gt")

    @property
    def is_gt(self) -> bool:
        return self.kind == "gt"

    def describe(self) -> str:
        return {"gt": "ground-truth boxes", "detections": f"detections from {self.path}",
                "maskrcnn": "Mask R-CNN R50-FPN detector",
                "mobilenet": "Faster R-CNN MobileNetV3-Large FPN detector",
                "synthetic": "synthetic-scenes detector",
                "yolox": f"YOLOX detector {self.path} (ONNX Runtime)"}[self.kind]


def make_detector(source: BoxSource, cfg: Config, device: torch.device) -> Detector:
    """The detector ``source`` names, with the pose network's speed rule where it keeps the boxes: channels_last
    with ``test.fast`` (the default); bf16 only where ``test.det_amp`` asks (``auto``: on CPUs with native bf16),
    as it moves boxes by fractions of a pixel. YOLOX runs in ONNX Runtime on the CPU whatever ``device``."""
    t = cfg.test
    if source.kind == "yolox":
        return YoloxDetector(source.path, top_k=t.det_top_k, score_floor=t.det_score_floor)
    if source.kind == "synthetic":
        if not source.path:
            raise OksposeError("--detector synthetic needs --detector-weights PATH (made by `okspose demo`)")
        return load_synthetic_detector(source.path, top_k=t.det_top_k, score_floor=t.det_score_floor,
                                       channels_last=t.fast).to(device)
    return PersonDetector(source.path, top_k=t.det_top_k, score_floor=t.det_score_floor, arch=source.kind,
                          min_size=t.det_min_size, amp_dtype=resolve_amp(t.det_amp, device),
                          channels_last=t.fast).to(device)


def file_detections(path: str | Path, cfg: Config, image_ids: set[int], report: SkipReport,
                    warn: bool) -> dict[int, Detections]:
    """The detections file's boxes of ``image_ids``, after checking that it covers them (an error when it
    covers none; a warning with the counts on stderr, when ``warn``, if it covers few)."""
    detections = read_detections(path, cfg.test.det_score_floor, cfg.test.det_top_k, report=report)
    warning = detections.coverage(image_ids)
    if warning and warn:
        print(f"warning: {warning}", file=sys.stderr)
    return detections.select(image_ids)


def detect_records(detector: Detector, images: dict[int, np.ndarray], image_paths: dict[int, str],
                   num_joints: int) -> PersonRecords:
    """Person records of the detector's boxes on decoded pictures."""
    dets = dict(zip(images, detector.detect(list(images.values())))) if images else {}
    return records_from_detections(image_paths, dets, num_joints)


def detect_and_pose(poser: Poser, detector: Detector, image_paths: dict[int, str],
                    progress: bool = False) -> PosedInstances:
    """Decode each picture once (in ``poser.workers`` loader workers, ahead of the network), find its
    persons with ``detector`` and pose them from the same pixels, ``CHUNK_IMAGES`` pictures at a time, so
    that crops of many pictures share the pose batches; unreadable pictures follow ``poser.on_error``."""
    loader = DataLoader(ImageFiles(image_paths, poser.on_error), batch_size=None, collate_fn=as_is,
                        num_workers=poser.workers,
                        prefetch_factor=CHUNK_IMAGES // poser.workers if poser.workers else None)
    items = iter(progress_bar(loader, desc="detect+pose", unit="img", enabled=progress, leave=False))
    parts = []
    while chunk := list(itertools.islice(items, CHUNK_IMAGES)):
        images = {item["id"]: item["image"] for item in chunk if "image" in item}
        paths = {i: image_paths[i] for i in images}
        posed = poser.pose_decoded(images, detect_records(detector, images, paths, poser.schema.num_joints))
        posed.skipped += [item["error"] for item in chunk if "error" in item]
        parts.append(posed)
    return PosedInstances.concat(parts, poser.schema.num_joints)


def val_image_ids(cfg: Config, records: PersonRecords) -> list[int]:
    """The images an evaluation covers: every image of the val annotation file, or the images of the
    persons kept when ``data.max_val_persons`` cuts the set short."""
    if cfg.data.max_val_persons > 0:
        return sorted(set(records.image_ids.tolist()))
    return sorted(int(im["id"]) for im in read_annotation_file(cfg.data_path("val_ann"))["images"])


def gather_posed(posed: PosedInstances, info: DistInfo, num_joints: int) -> PosedInstances:
    """Every rank's poses, concatenated (on every rank)."""
    if not info.distributed:
        return posed
    return PosedInstances.concat(gather_lists([posed], info), num_joints)


def pose_val_gt(poser: Poser, cfg: Config, info: DistInfo,
                progress: bool = False) -> tuple[PosedInstances, list[int], SkipReport]:
    """Run on every rank: pose the ground-truth persons of this rank's share of the val images.

    Returns the poses of all ranks, the image ids to evaluate over, and what loading the val records
    skipped (``data.on_error=skip``).
    """
    report = SkipReport()
    records = build_records(cfg, "val", report)
    ids = val_image_ids(cfg, records)
    mine = records_of_images(records, shard(ids, info))
    posed = poser.pose(mine, progress and info.is_main)
    return gather_posed(posed, info, poser.schema.num_joints), ids, report


def val_image_paths(cfg: Config) -> dict[int, str]:
    data = read_annotation_file(cfg.data_path("val_ann"))
    return {int(im["id"]): str(cfg.data_path("val_images") / im["file_name"]) for im in data["images"]}


def pose_val(poser: Poser, cfg: Config, source: BoxSource, info: DistInfo,
             progress: bool = False) -> tuple[PosedInstances, list[int], SkipReport]:
    """Run on every rank: pose this rank's share of the val images with ``source``'s boxes.

    Returns every rank's poses, the image ids the metric covers (all val images: an unreadable one
    counts as missed), and what was skipped while reading records or boxes.
    """
    if source.kind == "gt":
        return pose_val_gt(poser, cfg, info, progress)
    report = SkipReport()
    paths = val_image_paths(cfg)
    ids = sorted(paths)
    mine = {i: paths[i] for i in shard(ids, info)}
    num_joints = poser.schema.num_joints
    if source.kind == "detections":
        dets = file_detections(source.path, cfg, set(ids), report, warn=info.is_main)
        records = records_from_detections(mine, dets, num_joints)
        posed = poser.pose(records, progress and info.is_main)
    else:
        posed = detect_and_pose(poser, make_detector(source, cfg, info.device), mine, progress and info.is_main)
    return gather_posed(posed, info, num_joints), ids, report
