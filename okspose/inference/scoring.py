"""One path from posed persons to a metric: rescoring, IoU-NMS and OKS-NMS, COCO results records, and
pycocotools over every image of the set, so that a picture that could not be read counts as missed and
never drops out of the metric.

``okspose test``, validation during training, ``ablation`` and ``reproduce`` all score through
:func:`score_posed`; :func:`pose_and_score` adds the posing of the val split in front of it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from torch import nn

from okspose.config import Config, TestConfig
from okspose.data.records import SkipReport
from okspose.distributed import DistInfo
from okspose.evaluation import evaluate_keypoints, load_coco
from okspose.fileio import save_json, save_json_or_keep
from okspose.inference.boxes import BoxSource, pose_val, val_image_paths
from okspose.inference.instances import PosedInstances, gt_box_settings, results_for, select_instances
from okspose.inference.poser import Poser
from okspose.keypoints import KeypointSchema
from okspose.visualize import draw_pictures


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


@dataclass
class Scored:
    """What scoring kept of a set of posed persons: the instances and their final scores, the COCO
    results records made of them, and the metric over the set's images."""

    index: np.ndarray  # [M] indices into the posed instances that rescoring and NMS kept
    scores: np.ndarray  # [M] their final scores
    results: list[dict]  # COCO keypoint results records of the kept instances
    evaluation: Evaluation


def score_posed(posed: PosedInstances, test: TestConfig, schema: KeypointSchema, gt: str | Path | COCO,
                img_ids: list[int]) -> Scored:
    """Rescore and suppress ``posed`` as ``test`` says, and evaluate the kept instances.

    Args:
        posed: every posed box of the set, before rescoring and NMS.
        test: rescoring and NMS settings (for ground-truth boxes pass :func:`gt_box_settings` of them).
        schema: the keypoint schema; its OKS sigmas serve OKS-NMS and the metric.
        gt: the COCO annotation file of the set, or its ground truth as :func:`val_ground_truth` loads it.
        img_ids: the images the metric covers; images without a kept instance count as misses.

    Returns:
        The kept instances, their results records and the COCO stats (AP, AP50, ..., ARl in [0, 1]; for
        a CrowdPose set CrowdPose's, AP ... APhard).
    """
    sigmas = np.asarray(schema.sigmas)
    index, scores = select_instances(posed, test, sigmas)
    results = results_for(posed, index, scores)
    stats = evaluate_keypoints(gt, results, img_ids=img_ids, sigmas=schema.sigmas, area=test.metric_area)
    return Scored(index, scores, results, Evaluation(stats, len(img_ids), posed.skipped))


def val_ground_truth(cfg: Config, schema: KeypointSchema) -> COCO:
    """The val split's ground truth for the metric, checked as every scoring command checks it (so a file
    that would give a wrong number, or lacks what ``test.metric_area`` needs, stops before any posing);
    the ignored persons it drops are counted on stderr."""
    report = SkipReport()
    gt = load_coco(cfg.data_path("val_ann"), schema.num_joints, cfg.test.metric_area, report, schema.joints)
    if report.total:
        print(f"{cfg.data_path('val_ann')}: {report.summary()}", file=sys.stderr)
    return gt


def pose_and_score(poser: Poser, cfg: Config, source: BoxSource, info: DistInfo,
                   progress: bool = False) -> tuple[PosedInstances, Scored] | None:
    """Run on every rank: pose the val split with ``source``'s boxes and score it with ``cfg.test``
    (without IoU-NMS for ground-truth boxes). Rank 0 gets (all poses, their scoring), the others None;
    what reading the records or boxes skipped is printed on stderr. INT8 calibrated on any val picture is
    refused before posing (:meth:`~okspose.inference.quantize.Calibration.check_apart`)."""
    gt = val_ground_truth(cfg, poser.schema)
    if poser.test.engine == "onnxruntime-int8" and poser.calibration is not None:
        poser.calibration.check_apart(val_image_paths(cfg).values(), f"val split {cfg.data_path('val_ann')}")
    posed, ids, report = pose_val(poser, cfg, source, info, progress)
    if not info.is_main:
        return None
    if report.total:
        print(f"{source.describe()}: {report.summary()}", file=sys.stderr)
    test = gt_box_settings(cfg.test) if source.is_gt else cfg.test
    return posed, score_posed(posed, test, poser.schema, gt, ids)


def summary_path(results: Path) -> Path:
    """``results.json`` -> ``results_summary.json``."""
    return results.with_name(f"{results.stem}_summary.json")


def run_test(poser: Poser, cfg: Config, source: BoxSource, out: Path, info: DistInfo, progress: bool = True,
             vis_dir: str | Path | None = None) -> Evaluation | None:
    """Run on every rank: pose and score the val split with ``source``'s boxes. Rank 0 writes ``out``
    (COCO results), its summary (stats, image count, skipped images, the engine that posed) and, with
    ``vis_dir``, pictures of the first images, and returns the evaluation; other ranks return None."""
    done = pose_and_score(poser, cfg, source, info, progress)
    if done is None:
        return None
    posed, scored = done
    save_json_or_keep(scored.results, out, "results file")
    evaluation = scored.evaluation
    engine = poser.choice.as_dict() if poser.choice is not None else None  # None: nothing was posed
    save_json({"results": str(out), "boxes": source.describe(), **evaluation.as_dict(),
               "skipped": evaluation.skipped, "engine": engine}, summary_path(out))
    if vis_dir is not None:
        draw_pictures(posed.records.subset(scored.index), posed.keypoints[scored.index], scored.scores,
                      poser.schema, Path(vis_dir), cfg.test.vis_kpt_thr, cfg.test.vis_instance_thr)
    return evaluation


def validate_gt_boxes(model: nn.Module, cfg: Config, info: DistInfo, progress: bool = False) -> dict | None:
    """Run on every rank: the val split's COCO stats with ground-truth boxes, plus ``images`` and
    ``skipped_images``, on rank 0 (None on the others). The training loop validates with it."""
    done = pose_and_score(Poser.from_config(model, cfg, info.device), cfg, BoxSource("gt"), info, progress)
    if done is None:
        return None
    evaluation = done[1].evaluation
    if evaluation.skip_line():
        print(evaluation.skip_line(), file=sys.stderr)
    return evaluation.as_dict()
