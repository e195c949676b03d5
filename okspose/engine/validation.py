"""Validation with ground-truth boxes, sharded over the processes of a ``torchrun`` job like ``okspose test``:
each rank poses the persons of its share of the val images, rank 0 gathers the poses and evaluates them
over every val image, so an image that could not be read counts as missed, never drops out of the metric.
"""

from __future__ import annotations

import sys

import numpy as np
from torch import nn

from okspose.builders import build_records, build_schema
from okspose.config import Config
from okspose.data.coco import PersonRecords, SkipReport, read_annotation_file
from okspose.engine.distributed import DistInfo, gather_lists, shard
from okspose.evaluation import evaluate_keypoints
from okspose.instances import (
    Evaluation,
    PosedInstances,
    gt_box_settings,
    records_of_images,
    results_for,
    select_instances,
)
from okspose.posing import Poser


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


def validate_gt_boxes(model: nn.Module, cfg: Config, info: DistInfo, progress: bool = False) -> dict | None:
    """Run on every rank: COCO stats of the val split with ground-truth boxes, plus ``images`` and
    ``skipped_images``, on rank 0 (None on the others)."""
    posed, ids, report = pose_val_gt(Poser.from_config(model, cfg, info.device), cfg, info, progress)
    if not info.is_main:
        return None
    index, scores = select_instances(posed, gt_box_settings(cfg.test), np.asarray(build_schema(cfg).sigmas))
    results = results_for(posed, index, scores)
    evaluation = Evaluation(evaluate_keypoints(cfg.data_path("val_ann"), results, img_ids=ids,
                                                 sigmas=build_schema(cfg).sigmas), len(ids),
                            posed.skipped)
    for line in (f"val data: {report.summary()}" if report.total else None, evaluation.skip_line()):
        if line:
            print(line, file=sys.stderr)
    return evaluation.as_dict()
