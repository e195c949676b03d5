"""Instance post-processing after the pose network: rescoring, IoU-NMS on boxes, OKS-NMS on poses.

The seed scores each person as box score x keypoint score, then removes duplicates by IoU-NMS (0.6) and
OKS-NMS (0.5), both greedy: visit by descending score (ties in input order), keep one unless a kept one
overlaps it above the threshold. OKS-NMS is one broadcast pairwise OKS matrix and one greedy pass: with the
seed's 20 boxes per image well under a millisecond, against hundreds spent posing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torchvision

from okspose.data.transforms import box_to_center_scale
from okspose.keypoints import COCO17

RescoreMode = Literal["box", "keypoint", "box*keypoint"]

# Added to the pair scale as pycocotools and mmpose do, so zero-area poses do not divide by zero.
_AREA_EPS = float(np.spacing(1))
# Elements of one [rows, N, K] temporary in oks_matrix: bounds memory and keeps the blocks in cache.
_BLOCK = 1 << 16


def keypoint_instance_score(joint_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """Mean of the joint scores [N, K] above ``thr`` (0 if none) per instance [N]: occluded joints do not count."""
    conf = np.asarray(joint_scores, dtype=np.float64)
    above = conf > thr
    count = above.sum(-1)
    return np.where(count > 0, np.where(above, conf, 0.0).sum(-1) / np.maximum(count, 1), 0.0)


def rescore(
    box_scores: np.ndarray, keypoint_scores: np.ndarray, mode: RescoreMode = "box*keypoint", kpt_thr: float = 0.2
) -> np.ndarray:
    """Instance score [N] used to rank poses for OKS-NMS and the COCO metric.

    ``keypoint_scores``: joint scores [N, K] (see :func:`keypoint_instance_score`) or one per instance [N].
    The seed multiplies both, so a confident box with a diffuse pose ranks below one whose joints were found.
    """
    box = np.asarray(box_scores, dtype=np.float64)
    kpt = np.asarray(keypoint_scores, dtype=np.float64)
    if kpt.ndim == 2:
        kpt = keypoint_instance_score(kpt, kpt_thr)
    if kpt.ndim != 1 or box.shape != kpt.shape:
        raise ValueError(f"box scores {box.shape} and keypoint scores {np.shape(keypoint_scores)} do not match "
                         "(expected [N] and [N] or [N, K])")
    scores = {"box": box, "keypoint": kpt, "box*keypoint": box * kpt}
    if mode not in scores:
        raise ValueError(f"unknown rescore mode {mode!r}; choose from {', '.join(map(repr, scores))}")
    return scores[mode].copy()


def _stable_order(scores: np.ndarray) -> np.ndarray:
    """Descending score, ties in input order: the visiting order every NMS here is defined by."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def iou_nms(
    boxes_xywh: np.ndarray, scores: np.ndarray, thr: float = 0.6, group: np.ndarray | None = None
) -> np.ndarray:
    """Greedy IoU-NMS keep indices (int64, by descending score, ties in input order).

    A box is dropped when a kept box of the same ``group`` (e.g. image) overlaps it by IoU > thr (areas
    w * h, torchvision's). One ``batched_nms`` call for all groups, given the stable rank as score since
    torchvision breaks ties in no defined order.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    if np.shape(scores) != (n,):
        raise ValueError(f"expected {n} scores, got shape {np.shape(scores)}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = _stable_order(scores)
    xyxy = boxes[order].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    rank_score = torch.arange(n, 0, -1, dtype=torch.float64)  # unique, decreasing along ``order``
    tb = torch.from_numpy(xyxy)
    if group is None:
        kept = torchvision.ops.nms(tb, rank_score, thr)
    else:
        # Dense group labels keep batched_nms' per-group coordinate offsets small (no precision loss).
        _, dense = np.unique(np.asarray(group).reshape(-1)[order], return_inverse=True)
        kept = torchvision.ops.batched_nms(tb, rank_score, torch.from_numpy(dense.astype(np.int64)), thr)
    return order[np.sort(kept.numpy())].astype(np.int64)


def crop_areas(boxes_xywh: np.ndarray, aspect_ratio: float, padding: float) -> np.ndarray:
    """Area [N] of the region each box is posed from: widened to the input's aspect ratio (w / h), then
    padded. HRNet and mmpose scale OKS-NMS by it (``test.oks_area=crop``); it is >= padding**2 times the
    box's w * h that the seed used (``box``), so the same OKS threshold suppresses more."""
    return np.prod(box_to_center_scale(boxes_xywh, aspect_ratio, padding)[1], axis=1)


def _check_candidates(kpts: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: Sequence[float]) -> tuple:
    """Float64 keypoints [N, K, 3], scores [N], areas [N], sigmas [K]; refuses NaN (never suppresses)."""
    kpts, scores, areas = (np.asarray(a, dtype=np.float64) for a in (kpts, scores, areas))
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if kpts.ndim != 3 or kpts.shape[2] != 3 or scores.shape != (len(kpts),) or areas.shape != scores.shape:
        raise ValueError(f"keypoints {kpts.shape}, scores {scores.shape} and areas {areas.shape} must be "
                         "[N, K, 3], [N] and [N]")
    if sigmas.shape != (kpts.shape[1],):
        raise ValueError(f"expected {kpts.shape[1]} sigmas (one per joint), got {sigmas.size}")
    if not (np.isfinite(kpts).all() and np.isfinite(scores).all() and np.isfinite(areas).all()):
        raise ValueError("keypoints, scores and areas must be finite (mark unlabeled joints by score 0, not NaN)")
    return kpts, scores, areas, sigmas


def oks_matrix(
    kpts: np.ndarray, areas: np.ndarray, sigmas: Sequence[float] = COCO17.sigmas, vis_thr: float | None = None
) -> np.ndarray:
    """Pairwise object keypoint similarity [N, N] between poses ``kpts`` [N, K, 3] (x, y, score).

    OKS_ij = mean_k exp(-d_ijk^2 / (2 s_ij^2 kappa_k^2)), kappa_k = 2 sigma_k, with the mean of the two
    areas as scale s_ij^2 = (a_i + a_j) / 2 (+ eps) as in the seed, HRNet and mmpose: a symmetric matrix.
    With ``vis_thr`` only joints scoring above it in *both* poses count (mmpose 1.x's ``&``; HRNet's
    ``list(..) and list(..)`` checks only the second pose), and a pair with none has OKS 0.
    """
    kpts, _, areas, sigmas = _check_candidates(kpts, np.zeros(len(kpts)), areas, sigmas)
    n, k = kpts.shape[:2]
    x, y, vis = kpts[..., 0], kpts[..., 1], kpts[..., 2] > (-np.inf if vis_thr is None else vis_thr)
    var2 = 2.0 * (2.0 * sigmas) ** 2
    out = np.empty((n, n))
    rows = max(1, _BLOCK // max(1, n * k))
    for r in range(0, n, rows):  # row blocks: every temporary is [rows, N, K]
        b = slice(r, r + rows)
        d2 = (x[b, None] - x[None]) ** 2 + (y[b, None] - y[None]) ** 2
        scale = (areas[b, None] + areas[None]) / 2.0 + _AREA_EPS
        terms = np.exp(-d2 / (scale[..., None] * var2))
        both = vis[b, None] & vis[None]
        count = both.sum(-1)
        out[b] = np.where(count > 0, np.where(both, terms, 0.0).sum(-1) / np.maximum(count, 1), 0.0)
    return out


def greedy_keep(suppress: np.ndarray) -> np.ndarray:
    """Boolean keep mask of greedy NMS over candidates in visiting order.

    ``suppress[a, b]`` (only a < b is read): keeping ``a`` removes ``b``; a removed one removes nothing.
    """
    keep = np.ones(len(suppress), dtype=bool)
    for a in range(len(suppress)):
        if keep[a]:
            keep[a + 1 :] &= ~suppress[a, a + 1 :]
    return keep


def oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.5,
    sigmas: Sequence[float] = COCO17.sigmas,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS keep indices (int64 into the input, by descending score, ties in input order).

    Exactly the keep list of: visit candidates by ``np.argsort(-scores, kind="stable")``; keep one unless a
    previously kept pose has OKS > ``thr`` with it.
    """
    kpts, scores, areas, sigmas = _check_candidates(kpts, scores, areas, sigmas)
    order = _stable_order(scores)
    suppress = oks_matrix(kpts[order], areas[order], sigmas, vis_thr) > thr
    return order[greedy_keep(suppress)].astype(np.int64)


def soft_oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.3,
    sigmas: Sequence[float] = COCO17.sigmas,
    vis_thr: float | None = None,
    max_dets: int = 20,
    method: Literal["gaussian", "linear"] = "gaussian",
) -> tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS: instead of dropping overlapping poses, lower their scores; returns (keep, new_scores).

    Take the highest-scoring remaining pose p (ties in input order) and decay each remaining q by
    ``exp(-OKS_pq^2 / thr)`` (gaussian) or ``1 - OKS_pq`` where OKS_pq >= thr (linear), until ``max_dets``
    are taken; ``keep`` in the order taken, ``new_scores`` their decayed scores then, as in mmpose.
    """
    kpts, scores, areas, sigmas = _check_candidates(kpts, scores, areas, sigmas)
    if method not in ("gaussian", "linear"):
        raise ValueError(f"unknown soft-NMS method {method!r}; choose 'gaussian' or 'linear'")
    order = _stable_order(scores)
    oks = oks_matrix(kpts[order], areas[order], sigmas, vis_thr)
    current, alive = scores[order], np.ones(len(order), dtype=bool)
    keep, new_scores = [], []
    for _ in range(min(max_dets, len(order))):  # each pick depends on the decays before it
        i = int(np.argmax(np.where(alive, current, -np.inf)))  # the first maximum: ties in stable order
        keep.append(order[i])
        new_scores.append(current[i])
        alive[i] = False
        gaussian = np.exp(-(oks[i] ** 2) / thr)
        decay = gaussian if method == "gaussian" else np.where(oks[i] >= thr, 1.0 - oks[i], 1.0)
        current = np.where(alive, current * decay, current)
    return np.asarray(keep, dtype=np.int64), np.asarray(new_scores, dtype=np.float64)
