"""``okspose ablation``: the seed's tables on any COCO-format set: instance scoring criterion, NMS steps,
ground-truth boxes, and the data rows (models trained without data selection or external data, given
as ``--row NAME=CKPT``, beside the checkpoint under test).

Every box is posed once per model; each row only re-runs rescoring/NMS and the metric on those poses.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from okspose.builders import build_schema
from okspose.commands.boxes import BoxSource, pose_val
from okspose.config import Config, TestConfig
from okspose.engine.distributed import DistInfo
from okspose.evaluation import evaluate_keypoints
from okspose.instances import PosedInstances, gt_box_settings, results_for, select_instances
from okspose.posing import Poser

COLUMNS = ("AP", "AP50", "AP75", "APm", "APl", "AR")


@dataclass(frozen=True)
class AblationRow:
    table: str
    name: str
    changes: dict


# In the order of the seed's tables.
ROWS = (
    AblationRow("Instance score", "box score", {"rescoring": "box"}),
    AblationRow("Instance score", "keypoint score", {"rescoring": "keypoint"}),
    AblationRow("Instance score", "rescoring (box x keypoint)", {"rescoring": "box*keypoint"}),
    AblationRow("NMS", "none", {"iou_nms": False, "oks_nms": False}),
    AblationRow("NMS", "IoU-NMS", {"iou_nms": True, "oks_nms": False}),
    AblationRow("NMS", "OKS-NMS", {"iou_nms": False, "oks_nms": True}),
    AblationRow("NMS", "IoU-NMS + OKS-NMS", {"iou_nms": True, "oks_nms": True}),
)


def evaluate_variant(posed: PosedInstances, test: TestConfig, sigmas: np.ndarray, gt: str | Path,
                     img_ids: list[int]) -> dict[str, float]:
    index, scores = select_instances(posed, test, sigmas)
    return evaluate_keypoints(gt, results_for(posed, index, scores), img_ids=img_ids, sigmas=sigmas)


def run_ablation(
    detected: PosedInstances,
    gt_boxes: PosedInstances | None,
    test: TestConfig,
    sigmas: np.ndarray,
    gt: str | Path,
    img_ids: list[int],
) -> list[tuple[AblationRow, dict[str, float]]]:
    """Stats of every row on the detector's boxes, then the ground-truth-box row (seed's settings)."""
    out = []
    for row in ROWS:
        out.append((row, evaluate_variant(detected, dataclasses.replace(test, **row.changes), sigmas, gt, img_ids)))
    if gt_boxes is not None:
        gt_row = AblationRow("Boxes", "ground-truth boxes", {"iou_nms": False})
        out.append((gt_row, evaluate_variant(gt_boxes, gt_box_settings(test), sigmas, gt, img_ids)))
    return out


def format_ablation(rows: list[tuple[AblationRow, dict[str, float]]]) -> str:
    """Markdown: one table per ablation, rows in the seed's order."""
    lines: list[str] = []
    current = None
    for row, stats in rows:
        if row.table != current:
            current = row.table
            lines += ["", f"**{current}**", "", "| " + " | ".join(("setting",) + COLUMNS) + " |",
                      "|---" + "|---:" * len(COLUMNS) + "|"]
        cells = ["n/a" if stats[c] < 0 else f"{stats[c]:.3f}" for c in COLUMNS]
        lines.append("| " + " | ".join([row.name, *cells]) + " |")
    return "\n".join(lines).strip() + "\n"


def data_rows(cfg: Config, rows: list[tuple[str, str]], posed: PosedInstances, ids: list[int], source: BoxSource,
              info: DistInfo, progress: bool = False) -> list[tuple[AblationRow, dict[str, float]]] | None:
    """The "Data" table: each (name, checkpoint) of ``rows`` posed on the same boxes, then the checkpoint
    under test (``posed``), all with ``cfg.test``'s full settings. Every rank calls it; rank 0 gets the rows."""
    sigmas = np.asarray(build_schema(cfg).sigmas)
    out = []
    for name, checkpoint in rows:
        other = pose_val(Poser.from_checkpoint(cfg, checkpoint, info.device), cfg, source, info, progress)[0]
        if info.is_main:
            out.append((AblationRow("Data", name, {}),
                        evaluate_variant(other, cfg.test, sigmas, cfg.data_path("val_ann"), ids)))
    if not info.is_main:
        return None
    return out + [(AblationRow("Data", "this checkpoint", {}),
                   evaluate_variant(posed, cfg.test, sigmas, cfg.data_path("val_ann"), ids))]


def run_ablation_tables(cfg: Config, checkpoint: str | Path, source: BoxSource, info: DistInfo,
                        with_gt: bool = True, progress: bool = True,
                        rows: list[tuple[str, str]] | None = None) -> str | None:
    """The seed's tables (markdown) on the val split, and the data rows when ``rows`` (name, checkpoint of a
    model trained without a data step) are given; rank 0 returns the text, other ranks None."""
    poser = Poser.from_checkpoint(cfg, checkpoint, info.device)  # prepared once for both box sources
    detected, ids, report = pose_val(poser, cfg, source, info, progress)
    gt = pose_val(poser, cfg, BoxSource("gt"), info, progress)[0] if with_gt else None
    extra = data_rows(cfg, rows, detected, ids, source, info, progress) if rows else []
    if not info.is_main:
        return None
    if report.total:
        print(f"{source.describe()}: {report.summary()}", file=sys.stderr)
    table = run_ablation(detected, gt, cfg.test, np.asarray(build_schema(cfg).sigmas), cfg.data_path("val_ann"), ids)
    skipped = f", {len(detected.skipped)} unreadable images scored as misses" if detected.skipped else ""
    header = (f"Ablation on {cfg.data_path('val_ann')} ({len(ids)} images{skipped}), {source.describe()}, "
              f"flip test {'on' if cfg.test.flip_test else 'off'}, decoding {cfg.test.decode}\n\n")
    return header + format_ablation(table + extra)
