"""MPII person records from the JSON layout of mmpose's MPII files, and PCK / PCKh@0.5.

A file is a list of records ``{"image", "center": [x, y], "scale", "joints": [[x, y]] * 16,
"joints_vis": [0|1] * 16}``, with MPII's conventions: 1-based (Matlab) pixel coordinates, ``scale`` =
person height / 200 px, and a centre that sits 15 * scale px above the body's middle. The records become
:class:`okspose.data.records.PersonRecords` (a square box of side 200 * scale around the corrected centre,
joints shifted to 0-based), so the top-down dataset and training loop take MPII unchanged (schema
``mpii16``).

PCKh counts a joint as correct when it lies within ``thr`` x the head size of its ground truth. The
JSON has no head boxes, so the head size here is the head segment (upper neck to head top), which is
close to the official 0.6 x head-box diagonal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from okspose.data.records import PersonRecords
from okspose.errors import DataError
from okspose.fileio import read_json
from okspose.keypoints import MPII16

UPPER_NECK, HEAD_TOP = MPII16.joints.index("upper_neck"), MPII16.joints.index("head_top")


def _check(rec: object, num_joints: int) -> tuple[str, np.ndarray, float, np.ndarray, np.ndarray]:
    """(image, center, scale, joints [K, 2], visible [K]) of one record; ValueError with the reason."""
    if not isinstance(rec, dict) or not {"image", "center", "scale", "joints", "joints_vis"} <= rec.keys():
        raise ValueError("needs image, center, scale, joints and joints_vis")
    try:
        center = np.asarray(rec["center"], dtype=np.float64).reshape(2)
        joints = np.asarray(rec["joints"], dtype=np.float64).reshape(num_joints, 2)
        visible = np.asarray(rec["joints_vis"], dtype=np.float64).reshape(num_joints)
        scale = float(rec["scale"])
    except (TypeError, ValueError):
        raise ValueError(f"center must be [x, y], joints {num_joints} [x, y] pairs, joints_vis {num_joints} flags, "
                         "scale a number") from None
    if not scale > 0 or not np.isfinite(joints).all() or not np.isfinite(center).all():
        raise ValueError(f"scale {scale} must be > 0 and coordinates finite")
    return str(rec["image"]), center, scale, joints, visible


def load_mpii_records(ann_file: str | Path, image_dir: str | Path) -> PersonRecords:
    """Person records of an MPII JSON file; a malformed record or a missing image raises :class:`DataError`
    naming the file and the record."""
    data = read_json(ann_file, "MPII annotation")
    if not isinstance(data, list):
        raise DataError(f"{ann_file}: not an MPII annotation file (needs a list of records)")
    k = MPII16.num_joints
    paths, ids, boxes, kps = [], [], [], []
    for i, rec in enumerate(data):
        where = f"{ann_file}: record {i}"
        try:
            image, center, scale, joints, visible = _check(rec, k)
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None
        path = Path(image_dir) / image
        if not path.is_file():
            raise DataError(f"{where}: image file not found: {path}")
        side = 200.0 * scale
        cx, cy = center - 1.0 + np.array([0.0, 15.0 * scale])
        kp = np.zeros((k, 3))
        labelled = visible > 0
        kp[labelled, :2] = joints[labelled] - 1.0
        kp[labelled, 2] = 2
        paths.append(str(path))
        stem = Path(image).stem
        ids.append(int(stem) if stem.isdigit() else i)
        boxes.append([cx - side / 2, cy - side / 2, side, side])
        kps.append(kp)
    n = len(paths)
    return PersonRecords(paths, np.array(ids, np.int64), np.arange(n, dtype=np.int64),
                         np.array(boxes, np.float64).reshape(n, 4), np.array(kps).reshape(n, k, 3), np.ones(n))


def pck(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, thr: float = 0.5) -> float:
    """Fraction of labelled joints within ``thr * norm`` of the ground truth.

    pred [N, K, >=2] and gt [N, K, 3] (x, y, v; v > 0 = labelled), norm [N] a length per person; persons
    with a zero norm do not count.
    """
    labelled = (gt[..., 2] > 0) & (norm[:, None] > 0)
    if not labelled.any():
        return 0.0
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    return float((dist[labelled] <= thr * np.broadcast_to(norm[:, None], dist.shape)[labelled]).mean())


def head_sizes(keypoints: np.ndarray) -> np.ndarray:
    """MPII head size per person: the upper-neck to head-top distance (0 when either is unlabelled)."""
    neck, top = keypoints[:, UPPER_NECK], keypoints[:, HEAD_TOP]
    size = np.linalg.norm(top[:, :2] - neck[:, :2], axis=-1)
    return np.where((neck[:, 2] > 0) & (top[:, 2] > 0), size, 0.0)


def pckh(pred: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> float:
    """PCKh@thr over MPII persons (see the module docstring for the head size)."""
    return pck(pred, gt, head_sizes(gt), thr)
