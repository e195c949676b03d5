"""Instance post-processing after the pose network: rescoring, IoU-NMS on boxes, OKS-NMS on poses.

Team OKS's pipeline scores each person as box score x keypoint score, then removes duplicates by IoU-NMS
(threshold 0.6) and OKS-NMS (0.5), both greedy: visit by descending score (ties in input order), keep one
unless a kept one overlaps it above the threshold. OKS-NMS is one broadcast pairwise OKS matrix and one
greedy pass, cheap next to posing.

Notation: N candidates, K joints. Boxes are ``xywh`` in image pixels, areas in square image pixels, and
poses [N, K, 3] arrays of (x, y) in image pixels and a joint score.
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
    """Score each pose by its confident joints only, so occluded (low-scoring) joints do not drag it down.

    Args:
        joint_scores: [N, K] joint scores (heatmap maxima, about [0, 1]).
        thr: joints scoring strictly above this count.

    Returns:
        np.ndarray: float64 [N], the mean of the counted joint scores, or 0.0 where no joint counts.
    """
    conf = np.asarray(joint_scores, dtype=np.float64)
    above = conf > thr
    count = above.sum(-1)
    return np.where(count > 0, np.where(above, conf, 0.0).sum(-1) / np.maximum(count, 1), 0.0)


def rescore(
    box_scores: np.ndarray, keypoint_scores: np.ndarray, mode: RescoreMode = "box*keypoint", kpt_thr: float = 0.2
) -> np.ndarray:
    """Combine box and keypoint confidence into the instance score that ranks poses for NMS and the COCO metric.

    Team OKS multiplies both, so a confident box with a diffuse pose ranks below one whose joints were found.

    Args:
        box_scores: [N] detector box scores (1 for ground-truth boxes).
        keypoint_scores: joint scores [N, K] (reduced by :func:`keypoint_instance_score`) or one per
            instance [N].
        mode: ``"box"``, ``"keypoint"`` or ``"box*keypoint"`` (their product).
        kpt_thr: joint-score threshold used when ``keypoint_scores`` is [N, K].

    Returns:
        np.ndarray: float64 [N], a new array.

    Raises:
        ValueError: on mismatched shapes or an unknown ``mode``.
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
    """Remove duplicate detections by greedy IoU-NMS on their boxes, with a deterministic tie order.

    A box is dropped when a kept box of the same ``group`` (e.g. image) overlaps it by IoU > thr (areas
    w * h, torchvision's). One ``batched_nms`` call for all groups, given the stable rank as score since
    torchvision breaks ties in no defined order.

    Args:
        boxes_xywh: [N, 4] ``xywh`` boxes in image pixels.
        scores: [N] instance scores; higher is visited first, ties in input order.
        thr: IoU above which a box is suppressed, in [0, 1].
        group: [N] integer labels (e.g. image ids); boxes of different groups never suppress each other.
            None: one group.

    Returns:
        np.ndarray: int64 [M] indices into the input of the kept boxes, by descending score (ties in input
        order), over all groups together.

    Raises:
        ValueError: when ``scores`` is not [N].
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
    """Area of the region each box is posed from, the OKS-NMS scale of HRNet and mmpose (``test.oks_area=crop``).

    The box is widened to the input's aspect ratio, then padded (:func:`box_to_center_scale`), so the area
    is >= padding**2 times the box's w * h that Team OKS uses (``box``): the same OKS threshold suppresses
    more.

    Args:
        boxes_xywh: [N, 4] ``xywh`` boxes in image pixels.
        aspect_ratio: width / height of the network input.
        padding: the crop padding factor used when posing.

    Returns:
        np.ndarray: float64 [N] areas in square image pixels.
    """
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
    """Pairwise object keypoint similarity between poses, the overlap measure of OKS-NMS.

    OKS_ij = mean_k exp(-d_ijk^2 / (2 s_ij^2 kappa_k^2)), kappa_k = 2 sigma_k, with the mean of the two
    areas as scale s_ij^2 = (a_i + a_j) / 2 (+ eps) as in Team OKS's code, HRNet and mmpose: a symmetric
    matrix. With ``vis_thr`` only joints scoring above it in *both* poses count (mmpose 1.x's ``&``;
    HRNet's ``list(..) and list(..)`` checks only the second pose), and a pair with none has OKS 0.

    Args:
        kpts: [N, K, 3] poses, (x, y) in image pixels and joint score; finite values only.
        areas: [N] pose scales in square image pixels (box w * h or :func:`crop_areas`).
        sigmas: [K] per-joint OKS falloffs (COCO-17's by default).
        vis_thr: joint-score threshold for a joint to count, or None to count every joint.

    Returns:
        np.ndarray: float64 [N, N] OKS values in [0, 1], symmetric, computed in row blocks to bound memory.

    Raises:
        ValueError: on bad shapes or non-finite inputs.
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
    """Run the greedy pass shared by the hard NMS variants on a precomputed suppression matrix.

    A removed candidate removes nothing, which is what makes the result depend on the visiting order.

    Args:
        suppress: bool [N, N] over candidates already in visiting order; ``suppress[a, b]`` (only a < b is
            read) means keeping ``a`` removes ``b``.

    Returns:
        np.ndarray: bool [N] keep mask, in the same (visiting) order.
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
    """Remove duplicate poses of one picture by greedy OKS-NMS.

    Exactly the keep list of: visit candidates by ``np.argsort(-scores, kind="stable")``; keep one unless a
    previously kept pose has OKS > ``thr`` with it.

    Args:
        kpts: [N, K, 3] poses of one picture, (x, y) in image pixels and joint score.
        scores: [N] instance scores (see :func:`rescore`).
        areas: [N] pose scales in square image pixels (box w * h or :func:`crop_areas`).
        thr: OKS above which a pose is suppressed, in [0, 1].
        sigmas: [K] per-joint OKS falloffs.
        vis_thr: joint-score threshold for :func:`oks_matrix`, or None to count every joint.

    Returns:
        np.ndarray: int64 [M] indices into the input of the kept poses, by descending score (ties in input
        order).

    Raises:
        ValueError: on bad shapes or non-finite inputs.
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
    decay_sigma: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS: lower the scores of overlapping poses instead of dropping them, as in mmpose.

    Take the highest-scoring remaining pose p (ties in input order) and decay each remaining q by
    ``exp(-OKS_pq^2 / decay_sigma)`` (gaussian) or ``1 - OKS_pq`` where OKS_pq >= thr (linear), until
    ``max_dets`` are taken. The two methods have separate parameters, as in Soft-NMS's paper and code (Bodla
    et al. 2017: sigma 0.5, Nt 0.3); mmpose reuses its NMS threshold as the Gaussian's width.

    Args:
        kpts: [N, K, 3] poses of one picture, (x, y) in image pixels and joint score.
        scores: [N] instance scores (see :func:`rescore`).
        areas: [N] pose scales in square image pixels (box w * h or :func:`crop_areas`).
        thr: linear: the OKS from which scores decay (unused by gaussian).
        sigmas: [K] per-joint OKS falloffs.
        vis_thr: joint-score threshold for :func:`oks_matrix`, or None to count every joint.
        max_dets: most poses taken.
        method: ``"gaussian"`` or ``"linear"`` decay.
        decay_sigma: gaussian: the decay's width (unused by linear).

    Returns:
        tuple:
        - keep (np.ndarray): int64 [M] indices into the input in the order taken, M = min(max_dets, N).
        - new_scores (np.ndarray): float64 [M], each taken pose's decayed score when it was taken.

    Raises:
        ValueError: on bad shapes, non-finite inputs or an unknown ``method``.
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
        if method == "gaussian":
            decay = np.exp(-(oks[i] ** 2) / decay_sigma)
        else:
            decay = np.where(oks[i] >= thr, 1.0 - oks[i], 1.0)
        current = np.where(alive, current * decay, current)
    return np.asarray(keep, dtype=np.int64), np.asarray(new_scores, dtype=np.float64)
