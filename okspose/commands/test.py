"""``okspose test``: pose the val split with ground-truth boxes, a detections file or a detector, rescore and
suppress, write one COCO results file and a summary, evaluate over every val image with pycocotools.

Under ``torchrun`` the images are sharded across ranks and the poses gathered on rank 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from okspose.builders import build_schema
from okspose.commands.boxes import BoxSource, pose_val
from okspose.config import Config
from okspose.data.coco import PersonRecords, read_image
from okspose.engine.distributed import DistInfo
from okspose.evaluation import evaluate_keypoints
from okspose.fileio import save_json
from okspose.instances import Evaluation, gt_box_settings, results_for, select_instances
from okspose.keypoints import KeypointSchema
from okspose.posing import Poser
from okspose.visualize import draw_poses, make_grid


def summary_path(results: Path) -> Path:
    """``results.json`` -> ``results_summary.json``."""
    return results.with_name(f"{results.stem}_summary.json")


def run_test(cfg: Config, checkpoint: str | Path, source: BoxSource, out: Path, info: DistInfo,
             progress: bool = True, vis_dir: str | Path | None = None) -> Evaluation | None:
    """Pose the val split with ``source``'s boxes; rank 0 writes ``out`` (COCO results) and its summary
    (stats, image count, skipped images) and returns the evaluation; other ranks return None."""
    posed, ids, report = pose_val(Poser.from_checkpoint(cfg, checkpoint, info.device), cfg, source, info, progress)
    if not info.is_main:
        return None
    if report.total:
        print(f"{source.describe()}: {report.summary()}", file=sys.stderr)
    schema = build_schema(cfg)
    test = gt_box_settings(cfg.test) if source.kind == "gt" else cfg.test
    index, scores = select_instances(posed, test, np.asarray(schema.sigmas))
    results = results_for(posed, index, scores)
    save_json(results, out)
    evaluation = Evaluation(evaluate_keypoints(cfg.data_path("val_ann"), results, img_ids=ids,
                                                 sigmas=schema.sigmas), len(ids),
                            posed.skipped)
    save_json({"results": str(out), "boxes": source.describe(), **evaluation.as_dict(),
               "skipped": evaluation.skipped}, summary_path(out))
    if vis_dir is not None:
        draw_predictions(posed.records.subset(index), posed.keypoints[index], scores, schema, Path(vis_dir),
                         cfg.test.vis_kpt_thr, cfg.test.vis_instance_thr)
    return evaluation


def draw_predictions(
    records: PersonRecords,
    keypoints: np.ndarray,
    scores: np.ndarray,
    schema: KeypointSchema,
    out_dir: Path,
    kpt_thr: float,
    instance_thr: float,
    max_images: int = 16,
) -> list[Path]:
    """One picture per image (at most ``max_images``) with its predicted skeletons, boxes and scores
    (people and joints at or above the display thresholds), plus ``overview.jpg`` tiling them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    paths = np.array(records.image_paths)
    for path in list(dict.fromkeys(records.image_paths))[:max_images]:
        rows = np.flatnonzero(paths == path)
        image = cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR)
        drawn = draw_poses(image, keypoints[rows], schema, records.boxes[rows], scores[rows], kpt_thr, instance_thr)
        target = out_dir / Path(path).name
        cv2.imwrite(str(target), drawn)
        written.append(target)
        tiles.append(drawn)
    if tiles:
        cv2.imwrite(str(out_dir / "overview.jpg"), make_grid(tiles, cols=4, cell=(320, 256)))
    return written
