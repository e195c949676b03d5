"""Instance post-processing after the pose network: rescoring, IoU-NMS on boxes, OKS-NMS on poses.

The seed's inference scores each person as box score x keypoint score, removes duplicate detector boxes by
IoU-NMS (0.6) and then duplicate poses by OKS-NMS (0.5). OKS-NMS is defined greedily (visit candidates by
descending score, keep one unless an already kept pose overlaps it by more than the threshold). Here it
returns exactly that keep list, but computes it without a Python loop per candidate: the pairwise
"OKS > thr" matrix is built at once (pairs whose keypoint boxes lie too far apart are ruled out by a bound,
the rest are evaluated in float32 with a float64 recheck next to the threshold), and the greedy order is
then resolved in vectorised rounds. That is what makes it cheap at hundreds of candidates per image.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torchvision

from okspose.keypoints import COCO17

RescoreMode = Literal["box", "keypoint", "box*keypoint"]

# Added to the pair scale as pycocotools and mmpose do, so zero-area poses do not divide by zero.
_AREA_EPS = float(np.spacing(1))
# Elements per temporary array in the OKS-NMS pair stages: large enough to amortise numpy's per-call
# overhead, small enough (256 KiB in float64) to stay in cache.
_BLOCK = 32768


# --------------------------------------------------------------------------------------------------
# Rescoring
# --------------------------------------------------------------------------------------------------

def keypoint_instance_score(joint_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """Mean of the joint scores [N, K] that exceed ``thr`` (0 when none does), per instance [N].

    Only confident joints count, so a person with a few sharp joints is not penalised for its occluded ones.
    """
    conf = np.asarray(joint_scores, dtype=np.float64)
    above = conf > thr
    count = above.sum(-1)
    total = np.where(above, conf, 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def rescore(
    box_scores: np.ndarray,
    keypoint_scores: np.ndarray,
    mode: RescoreMode = "box*keypoint",
    kpt_thr: float = 0.2,
) -> np.ndarray:
    """Instance score [N] used to rank poses for OKS-NMS and the COCO metric.

    ``keypoint_scores`` is either the joint scores [N, K] (reduced by :func:`keypoint_instance_score` with
    ``kpt_thr``) or already one keypoint score per instance [N]. The seed's default multiplies both, so a
    confident box with a diffuse pose ranks below one whose joints were actually found.
    """
    box = np.asarray(box_scores, dtype=np.float64)
    kpt = np.asarray(keypoint_scores, dtype=np.float64)
    if kpt.ndim == 2:
        kpt = keypoint_instance_score(kpt, kpt_thr)
    if kpt.ndim != 1 or box.shape != kpt.shape:
        raise ValueError(f"box scores {box.shape} and keypoint scores {np.shape(keypoint_scores)} do not match "
                         "(expected [N] and [N] or [N, K])")
    if mode == "box":
        return box.copy()
    if mode == "keypoint":
        return kpt
    if mode == "box*keypoint":
        return box * kpt
    raise ValueError(f"unknown rescore mode {mode!r}; choose from 'box', 'keypoint', 'box*keypoint'")


# --------------------------------------------------------------------------------------------------
# IoU-NMS on detector boxes
# --------------------------------------------------------------------------------------------------

def _stable_order(scores: np.ndarray) -> np.ndarray:
    """Descending score, ties in input order: the visiting order every NMS here is defined by."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def iou_nms(
    boxes_xywh: np.ndarray,
    scores: np.ndarray,
    thr: float = 0.6,
    group: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy IoU-NMS keep indices (int64, by descending score, ties in input order).

    A box is dropped when it overlaps an already kept box of the same ``group`` (e.g. image id) by IoU > thr.
    IoU uses continuous areas w * h (torchvision's definition, not the +1-pixel one of py-faster-rcnn).
    All groups go through one ``torchvision.ops.batched_nms`` call. torchvision breaks score ties in no
    defined order, so it is handed the stable rank instead of the raw scores.
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


# --------------------------------------------------------------------------------------------------
# OKS
# --------------------------------------------------------------------------------------------------

def _pose_arrays(
    kpts: np.ndarray, areas: np.ndarray, sigmas: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (keypoints [N, K, 3] float64, areas [N], per-joint 1 / (sqrt(2) kappa_k) [K])."""
    kpts = np.asarray(kpts, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[2] != 3:
        raise ValueError(f"keypoints must be [N, K, 3] (x, y, score), got shape {kpts.shape}")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sig.shape != (kpts.shape[1],):
        raise ValueError(f"expected {kpts.shape[1]} sigmas, got {sig.size}")
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if areas.shape != (len(kpts),):
        raise ValueError(f"expected {len(kpts)} areas, got {areas.size}")
    return kpts, areas, 1.0 / (np.sqrt(2.0) * 2.0 * sig)


def _oks(
    kpts_a: np.ndarray,
    kpts_b: np.ndarray,
    areas_a: np.ndarray,
    areas_b: np.ndarray,
    norm: np.ndarray,
    vis_thr: float | None,
) -> np.ndarray:
    """OKS of broadcastable pose arrays [..., K, 3] against [..., K, 3]: the one place the formula lives.

    Coordinates are divided by sqrt(2) kappa_k first, so each joint's term is exp(-|delta|^2 / s^2).
    """
    dx = (kpts_a[..., 0] - kpts_b[..., 0]) * norm
    dy = (kpts_a[..., 1] - kpts_b[..., 1]) * norm
    scale = (areas_a + areas_b) / 2.0 + _AREA_EPS
    terms = np.exp(-(dx * dx + dy * dy) / scale[..., None])
    if vis_thr is None:
        return terms.mean(-1)
    both = (kpts_a[..., 2] > vis_thr) & (kpts_b[..., 2] > vis_thr)
    count = both.sum(-1)
    return np.where(count > 0, np.where(both, terms, 0.0).sum(-1) / np.maximum(count, 1), 0.0)


def oks_matrix(
    kpts: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float] | np.ndarray = COCO17.sigmas,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Pairwise object keypoint similarity [N, N] between poses ``kpts`` [N, K, 3] (x, y, score).

    OKS_ij = mean_k exp(-d_ijk^2 / (2 s_ij^2 kappa_k^2)) with kappa_k = 2 sigma_k and, as in the seed,
    HRNet and mmpose, the mean of the two areas as the pair's scale s_ij^2 = (a_i + a_j) / 2 (+ eps against
    zero areas), which makes the matrix symmetric. With ``vis_thr`` the mean runs only over the joints whose
    score exceeds ``vis_thr`` in *both* poses, and a pair with no such joint has OKS 0. (The ``oks_iou`` of
    SimpleBaseline/HRNet and of mmpose 0.x writes that mask as ``list(vg > vis_thr) and list(vd > vis_thr)``;
    Python's ``and`` returns the second list whenever the first is non-empty, so only the second pose is
    checked and OKS(a, b) != OKS(b, a). mmpose 1.x uses ``&``. We define it symmetrically, as ``&`` does.)
    """
    kpts, areas, norm = _pose_arrays(kpts, areas, sigmas)
    out = np.empty((len(kpts), len(kpts)))
    rows = max(1, (1 << 20) // max(1, kpts.shape[0] * kpts.shape[1]))
    for r0 in range(0, len(kpts), rows):  # row blocks bound the [rows, N, K] temporaries to ~8 MB each
        r1 = r0 + rows
        out[r0:r1] = _oks(kpts[r0:r1, None], kpts[None], areas[r0:r1, None], areas[None], norm, vis_thr)
    return out


@functools.lru_cache(maxsize=64)
def _gap_limit(norm2: tuple[float, ...], thr: float, all_joints: bool) -> float:
    """Largest u = g^2 / s^2 (box gap over pair scale) at which a pair's OKS can still exceed ``thr``.

    Each joint term is at most exp(-u norm_k^2). When every joint counts, OKS <= f(u) = mean_k
    exp(-u norm_k^2), decreasing in u, so the limit is the root of f(u) = thr (bisection, cached per
    sigmas and thr). With ``vis_thr`` any subset of joints may count, so only the loosest joint bounds it:
    u = -ln(thr) / min_k norm_k^2. The returned limit is widened by 1e-9 so rounding stays on the safe side.
    """
    w = np.asarray(norm2)
    loose = -np.log(thr) / w.min()
    if not all_joints:
        return float(loose) * (1.0 + 1e-9)
    lo, hi = 0.0, float(loose)  # f(loose) <= thr, f(0) = 1 > thr
    for _ in range(100):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if np.exp(-mid * w).mean() > thr else (lo, mid)
    return hi * (1.0 + 1e-9)


def _candidate_pairs(
    kpts: np.ndarray, areas: np.ndarray, norm: np.ndarray, thr: float, all_joints: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b), a < b, whose OKS can exceed ``thr`` in (0, 1); every other pair provably has OKS <= thr.

    Every joint of pose a lies in a's keypoint box, so each joint distance is at least the gap g between the
    two boxes, which bounds the OKS from above (:func:`_gap_limit`). A few [N, N] operations thus drop
    most pairs of a crowded image before any exponential. Rows go in blocks of about _BLOCK pairs so the
    temporaries stay in cache instead of being page-faulted in anew.
    """
    n = len(kpts)
    xy = np.ascontiguousarray(kpts[:, :, :2].transpose(2, 1, 0))  # [2, K, N]: joint reductions over planes
    lo, hi = xy.min(1), xy.max(1)  # [2, N] box corners
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    # a pair is possible while g^2 < limit * s^2 = limit * ((a_a + a_b) / 2 + eps)
    half_limit = (areas / 2.0 + _AREA_EPS / 2.0) * _gap_limit(tuple((norm**2).tolist()), float(thr), all_joints)
    rows = max(1, _BLOCK // n)
    found_a, found_b = [], []
    for r0 in range(0, n - 1, rows):  # one iteration per block of rows, not per candidate
        r1, c0 = min(n, r0 + rows), r0 + 1  # only columns b > a >= r0 can hold a pair
        # per axis: gap = max(|centre_a - centre_b| - half_a - half_b, 0), both axes at once
        g = centre[:, r0:r1, None] - centre[:, None, c0:]
        np.abs(g, out=g)
        g -= half[:, r0:r1, None] + half[:, None, c0:]
        np.maximum(g, 0.0, out=g)
        g *= g
        gap2 = g[0]
        gap2 += g[1]
        flat = np.flatnonzero(gap2 < np.add.outer(half_limit[r0:r1], half_limit[c0:]))
        a, b = np.divmod(flat, n - c0)
        a += r0
        b += c0
        upper = a < b
        found_a.append(a[upper])
        found_b.append(b[upper])
    return np.concatenate(found_a), np.concatenate(found_b)


def _suppression(
    kpts: np.ndarray, areas: np.ndarray, norm: np.ndarray, thr: float, vis_thr: float | None
) -> np.ndarray:
    """Boolean [N, N] matrix, true at a < b where OKS(a, b) > thr, decided as :func:`_oks` in float64 decides.

    1. :func:`_candidate_pairs` drops the pairs that provably cannot exceed ``thr``.
    2. The rest in float32 (exponentials 4x faster than float64 here) on centred, pre-scaled coordinates,
       in chunks of contiguous [P, K] buffers that are reused (numpy runs contiguous arrays as one flat
       loop; fresh multi-MB temporaries would cost more in page faults than the arithmetic). Joint sums use
       einsum: ``sum(-1)`` is 5x slower on a short axis and a mat-vec wakes BLAS threads that then compete
       with the rest of the pipeline for the cores.
    3. Pairs whose float32 OKS is within a rounding bound of ``thr`` again in float64. Coordinates and their
       differences are off by at most delta = 2^-22 max|coordinate|, which moves a term exp(-|d|^2/s^2) by
       at most 2 sqrt(2) delta / s * max_e sqrt(e) exp(-e) < 1.22 delta / s; exp, the scale and the sum
       add well under 1e-5.
    """
    n, k = kpts.shape[:2]
    suppress = np.zeros((n, n), dtype=bool)
    if thr >= 1.0 or n < 2:  # no OKS exceeds 1
        return suppress
    if thr > 0.0:
        a, b = _candidate_pairs(kpts, areas, norm, thr, all_joints=vis_thr is None)
    else:  # OKS 0 (no shared joint) already exceeds a threshold <= 0: every pair is a candidate
        a, b = np.triu_indices(n, 1)
    if not len(a):
        return suppress

    xs, ys = kpts[:, :, 0] * norm, kpts[:, :, 1] * norm
    centre = (xs.mean() + ys.mean()) / 2.0  # centring keeps float32's relative precision for differences
    xs -= centre
    ys -= centre
    delta = 2.0**-22 * max(float(np.abs(xs).max()), float(np.abs(ys).max()))
    xs, ys = xs.astype(np.float32), ys.astype(np.float32)
    pair_scale = (areas[a] + areas[b]) / 2.0 + _AREA_EPS
    neg_inv_scale = (-1.0 / pair_scale).astype(np.float32)[:, None]
    vis = None if vis_thr is None else kpts[:, :, 2] > vis_thr
    oks = np.empty(len(a), dtype=np.float32)
    chunk = max(1, _BLOCK // k)
    e = np.empty((min(chunk, len(a)), k), dtype=np.float32)
    d = np.empty_like(e)
    for p0 in range(0, len(a), chunk):  # one iteration per chunk of pairs
        ca, cb = a[p0 : p0 + chunk], b[p0 : p0 + chunk]
        m = len(ca)
        em, dm = e[:m], d[:m]
        np.take(xs, ca, axis=0, out=em, mode="clip")
        em -= np.take(xs, cb, axis=0, out=dm, mode="clip")
        em *= em
        np.take(ys, ca, axis=0, out=dm, mode="clip")
        dm -= np.take(ys, cb, axis=0)
        dm *= dm
        em += dm
        em *= neg_inv_scale[p0 : p0 + m]
        np.exp(em, out=em)
        if vis is None:
            np.einsum("pk->p", em, out=oks[p0 : p0 + m])
            oks[p0 : p0 + m] /= k
        else:
            both = np.take(vis, ca, axis=0) & np.take(vis, cb, axis=0)
            count = np.einsum("pk->p", both.view(np.uint8), dtype=np.int64)
            em *= both
            total = np.einsum("pk->p", em)
            oks[p0 : p0 + m] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    exceed = oks > thr
    tol = 1.25 * delta / np.sqrt(pair_scale.min()) + 1e-5
    near = np.flatnonzero(np.abs(oks - thr) <= tol)
    if len(near):
        ia, ib = a[near], b[near]
        exceed[near] = _oks(kpts[ia], kpts[ib], areas[ia], areas[ib], norm, vis_thr) > thr
    suppress[a[exceed], b[exceed]] = True
    return suppress


# --------------------------------------------------------------------------------------------------
# OKS-NMS
# --------------------------------------------------------------------------------------------------

def _check_candidates(kpts: np.ndarray, scores: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, K, 3] keypoints and [N] scores as float64; NaN would silently never suppress, so it is refused."""
    kpts = np.asarray(kpts, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[2] != 3 or scores.shape != (len(kpts),) or np.shape(areas) != scores.shape:
        raise ValueError(f"keypoints {kpts.shape}, scores {scores.shape} and areas {np.shape(areas)} must be "
                         "[N, K, 3], [N] and [N]")
    if not (np.isfinite(kpts).all() and np.isfinite(scores).all() and np.isfinite(areas).all()):
        raise ValueError("keypoints, scores and areas must be finite (mark unlabeled joints by score 0, not NaN)")
    return kpts, scores


def greedy_keep(suppress: np.ndarray) -> np.ndarray:
    """Resolve greedy NMS from a boolean matrix over candidates in visiting order.

    ``suppress[a, b]`` (only a < b is read) says that keeping ``a`` removes ``b``. Greedy NMS keeps ``b``
    iff no kept ``a < b`` suppresses it. Each round keeps every undecided candidate whose higher-ranked
    suppressors are all already dropped, then drops everything a newly kept one suppresses. The first
    undecided candidate is always decided in a round, so this ends; on real data it takes a few rounds
    (the length of the longest suppression chain), each a handful of [N, N] array operations.
    Returns a boolean keep mask in visiting order.
    """
    n = len(suppress)
    rank = np.arange(n)
    s = suppress & (rank[:, None] < rank[None, :])
    kept = ~s.any(0)  # candidates no one can suppress are kept right away
    dropped = s[kept].any(0)
    pending = ~(kept | dropped)
    while pending.any():
        rows = np.flatnonzero(~dropped)  # only a live candidate can still block a later one
        cols = np.flatnonzero(pending)
        blocked = s[np.ix_(rows, cols)].any(0)
        new = cols[~blocked]
        kept[new] = True
        dropped |= s[new].any(0)
        pending = ~(kept | dropped)
    return kept


def oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.5,
    sigmas: Sequence[float] | np.ndarray = COCO17.sigmas,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS keep indices (int64 into the input, by descending score, ties in input order).

    Exactly the keep list of: visit candidates by ``np.argsort(-scores, kind="stable")``; keep one unless a
    previously kept pose has OKS > ``thr`` with it. Computed from one pairwise OKS matrix (see
    :func:`oks_matrix`) and resolved in vectorised rounds (:func:`greedy_keep`).
    """
    kpts, scores = _check_candidates(kpts, scores, areas)
    if len(scores) <= 1:
        return np.arange(len(scores), dtype=np.int64)
    order = _stable_order(scores)
    kpts, areas, norm = _pose_arrays(kpts[order], np.asarray(areas)[order], sigmas)
    return order[greedy_keep(_suppression(kpts, areas, norm, thr, vis_thr))].astype(np.int64)


def soft_oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.3,
    sigmas: Sequence[float] | np.ndarray = COCO17.sigmas,
    vis_thr: float | None = None,
    max_dets: int = 20,
    method: Literal["gaussian", "linear"] = "gaussian",
) -> tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS: instead of dropping overlapping poses, lower their scores; returns (keep, new_scores).

    Repeatedly take the highest-scoring remaining pose p (ties in input order) and decay every other
    remaining pose q by
      gaussian: s_q <- s_q * exp(-OKS_pq^2 / thr)           (thr acts as the Gaussian's variance)
      linear:   s_q <- s_q * (1 - OKS_pq)  if OKS_pq >= thr  (else unchanged)
    until ``max_dets`` poses are taken. ``keep`` lists them in the order taken and ``new_scores`` their
    decayed scores at that moment (non-increasing), as in mmpose/Soft-NMS. The loop runs once per *kept*
    pose (at most ``max_dets``), computing only that pose's row of OKS values.
    """
    kpts, scores = _check_candidates(kpts, scores, areas)
    if method not in ("gaussian", "linear"):
        raise ValueError(f"unknown soft-NMS method {method!r}; choose 'gaussian' or 'linear'")
    n = len(scores)
    if n == 0 or max_dets <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = _stable_order(scores)
    kpts, areas, norm = _pose_arrays(kpts[order], np.asarray(areas)[order], sigmas)
    current = scores[order].copy()
    alive = np.ones(n, dtype=bool)
    keep, new_scores = [], []
    for _ in range(min(max_dets, n)):  # once per kept pose: each pick depends on the decays before it
        # argmax returns the first maximum, i.e. the earliest in the stable order among equal scores
        i = int(np.argmax(np.where(alive, current, -np.inf)))
        keep.append(order[i])
        new_scores.append(current[i])
        alive[i] = False
        ov = _oks(kpts[i], kpts, areas[i], areas, norm, vis_thr)  # one OKS row, not the [N, N] matrix
        if method == "gaussian":
            current = np.where(alive, current * np.exp(-(ov**2) / thr), current)
        else:
            current = np.where(alive & (ov >= thr), current * (1.0 - ov), current)
    return np.asarray(keep, dtype=np.int64), np.asarray(new_scores, dtype=np.float64)
