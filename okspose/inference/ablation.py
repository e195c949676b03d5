"""Team OKS's ablation tables on any COCO-format set: the instance score (box, keypoint, box x keypoint),
the NMS steps, ground-truth boxes, and data rows (models trained without data selection or external
data, beside the checkpoint under test).

Every box is posed once per model; each row only re-runs rescoring/NMS and the metric on those poses
(:func:`~okspose.inference.scoring.score_posed`).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from okspose.checkpoints import Checkpoint
from okspose.config import Config, TestConfig
from okspose.distributed import DistInfo
from okspose.inference.boxes import BoxSource, pose_val
from okspose.inference.instances import PosedInstances, gt_box_settings
from okspose.inference.poser import Poser
from okspose.inference.scoring import score_posed
from okspose.keypoints import KeypointSchema

# The columns shown: COCO's (APm, APl) or CrowdPose's (APeasy ... APhard), whichever the metric gave.
COLUMNS = ("AP", "AP50", "AP75", "APm", "APl", "APeasy", "APmedium", "APhard", "AR")


@dataclass(frozen=True)
class AblationRow:
    table: str
    name: str
    changes: dict


# In the order of Team OKS's tables.
ROWS = (
    AblationRow("Instance score", "box score", {"rescoring": "box"}),
    AblationRow("Instance score", "keypoint score", {"rescoring": "keypoint"}),
    AblationRow("Instance score", "rescoring (box x keypoint)", {"rescoring": "box*keypoint"}),
    AblationRow("NMS", "none", {"iou_nms": False, "oks_nms": False}),
    AblationRow("NMS", "IoU-NMS", {"iou_nms": True, "oks_nms": False}),
    AblationRow("NMS", "OKS-NMS", {"iou_nms": False, "oks_nms": True}),
    AblationRow("NMS", "IoU-NMS + OKS-NMS", {"iou_nms": True, "oks_nms": True}),
)


def run_ablation(
    detected: PosedInstances,
    gt_boxes: PosedInstances | None,
    test: TestConfig,
    schema: KeypointSchema,
    gt: str | Path,
    img_ids: list[int],
) -> list[tuple[AblationRow, dict[str, float]]]:
    """Stats of every row on the detector's boxes, then the ground-truth-box row (``test`` without IoU-NMS)."""
    out = []
    for row in ROWS:
        variant = dataclasses.replace(test, **row.changes)
        out.append((row, score_posed(detected, variant, schema, gt, img_ids).evaluation.stats))
    if gt_boxes is not None:
        gt_row = AblationRow("Boxes", "ground-truth boxes", {"iou_nms": False})
        out.append((gt_row, score_posed(gt_boxes, gt_box_settings(test), schema, gt, img_ids).evaluation.stats))
    return out


def format_ablation(rows: list[tuple[AblationRow, dict[str, float]]]) -> str:
    """Markdown: one table per ablation, rows in Team OKS's order."""
    lines: list[str] = []
    current = None
    columns = [c for c in COLUMNS if c in rows[0][1]]
    for row, stats in rows:
        if row.table != current:
            current = row.table
            lines += ["", f"**{current}**", "", "| " + " | ".join(["setting", *columns]) + " |",
                      "|---" + "|---:" * len(columns) + "|"]
        cells = ["n/a" if stats[c] < 0 else f"{stats[c]:.3f}" for c in columns]
        lines.append("| " + " | ".join([row.name, *cells]) + " |")
    return "\n".join(lines).strip() + "\n"


def data_rows(cfg: Config, rows: list[tuple[str, Checkpoint]], poser: Poser, posed: PosedInstances, ids: list[int],
              source: BoxSource, info: DistInfo,
              progress: bool = False) -> list[tuple[AblationRow, dict[str, float]]] | None:
    """The "Data" table: each (name, checkpoint) of ``rows`` posed on the same boxes, then the checkpoint
    under test (``posed`` by ``poser``), all with ``cfg.test``'s full settings. Every rank calls it; rank 0
    gets the rows."""
    gt = cfg.data_path("val_ann")
    out = []
    for name, checkpoint in rows:
        checkpoint.check_fits(cfg.to_dict())
        other = pose_val(Poser.from_checkpoint(cfg, checkpoint, info.device), cfg, source, info, progress)[0]
        if info.is_main:
            stats = score_posed(other, cfg.test, poser.schema, gt, ids).evaluation.stats
            out.append((AblationRow("Data", name, {}), stats))
    if not info.is_main:
        return None
    return out + [(AblationRow("Data", "this checkpoint", {}),
                   score_posed(posed, cfg.test, poser.schema, gt, ids).evaluation.stats)]


def run_ablation_tables(cfg: Config, checkpoint: Checkpoint, source: BoxSource, info: DistInfo,
                        with_gt: bool = True, progress: bool = True,
                        rows: list[tuple[str, Checkpoint]] | None = None) -> str | None:
    """Team OKS's ablation tables (markdown) on the val split, and the data rows when ``rows`` (name, checkpoint of a
    model trained without a data step) are given; rank 0 returns the text, other ranks None."""
    poser = Poser.from_checkpoint(cfg, checkpoint, info.device)  # prepared once for both box sources
    detected, ids, report = pose_val(poser, cfg, source, info, progress)
    gt = pose_val(poser, cfg, BoxSource("gt"), info, progress)[0] if with_gt else None
    extra = data_rows(cfg, rows, poser, detected, ids, source, info, progress) if rows else []
    if not info.is_main:
        return None
    if report.total:
        print(f"{source.describe()}: {report.summary()}", file=sys.stderr)
    table = run_ablation(detected, gt, cfg.test, poser.schema, cfg.data_path("val_ann"), ids)
    skipped = f", {len(detected.skipped)} unreadable images scored as misses" if detected.skipped else ""
    header = (f"Ablation on {cfg.data_path('val_ann')} ({len(ids)} images{skipped}), {source.describe()}, "
              f"flip test {'on' if cfg.test.flip_test else 'off'}, decoding {cfg.test.decode}\n\n")
    return header + format_ablation(table + extra)
