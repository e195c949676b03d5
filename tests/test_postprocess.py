"""Post-processing: rescoring, IoU-NMS and OKS-NMS against plain greedy loops, on random and real poses.

The NMS must return exactly the keep list of the textbook greedy loop, so every test here
compares against a loop written out below with its own OKS/IoU formula.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
from conftest import COCO_MINI, SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from okspose.config import Config
from okspose.errors import ConfigError
from okspose.evaluation import evaluate_keypoints
from okspose.inference import nms as postprocess
from okspose.inference.instances import PosedInstances, records_from_detections, select_instances
from okspose.inference.nms import (
    crop_areas,
    greedy_keep,
    iou_nms,
    keypoint_instance_score,
    oks_matrix,
    oks_nms,
    rescore,
    soft_oks_nms,
)
from okspose.keypoints import COCO17
from okspose.run_config import check_config

DATA = SHARED_DATA
VAL_JSON = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
SAMPLES = SHARED_DATA / "samples" / "coco"
SIGMAS = np.array(COCO17.sigmas)
K = COCO17.num_joints

# Deterministic example streams (reproducible in CI) and no .hypothesis directory in the repo.
FAST = settings(deadline=None, derandomize=True, database=None)


# --------------------------------------------------------------------------------------------------
# Plain reference loops
# --------------------------------------------------------------------------------------------------

def ref_oks(p: np.ndarray, q: np.ndarray, area_p: float, area_q: float, vis_thr: float | None = None) -> float:
    """COCO OKS of two [K, 3] poses with the mean area as scale, joint by joint."""
    var = (2.0 * SIGMAS) ** 2
    s2 = (area_p + area_q) / 2.0 + np.spacing(1)
    d2 = (p[:, 0] - q[:, 0]) ** 2 + (p[:, 1] - q[:, 1]) ** 2
    terms = np.exp(-d2 / (2.0 * s2 * var))
    if vis_thr is not None:
        counted = (p[:, 2] > vis_thr) & (q[:, 2] > vis_thr)
        if not counted.any():
            return 0.0
        terms = terms[counted]
    return float(terms.mean())


def greedy_oks_nms(kpts, scores, areas, thr, vis_thr=None) -> list[int]:
    keep: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if all(ref_oks(kpts[i], kpts[j], areas[i], areas[j], vis_thr) <= thr for j in keep):
            keep.append(int(i))
    return keep


def has_chain(kpts, scores, areas, thr, vis_thr, keep) -> bool:
    """A kept pose overlapping a higher-ranked one: only right if that one was itself suppressed."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    for c in keep:
        for b in order[: order.index(c)]:
            if ref_oks(kpts[b], kpts[c], areas[b], areas[c], vis_thr) > thr:
                return True
    return False


def greedy_iou_nms(boxes, scores, thr, group=None) -> list[int]:
    """Greedy IoU-NMS over xywh boxes, IoU as area(intersection) / area(union), per group."""
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = (x2 - x1) * (y2 - y1)
    group = np.zeros(len(boxes)) if group is None else group
    keep: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        ok = True
        for j in keep:
            if group[i] != group[j]:
                continue
            w = max(0.0, min(x2[i], x2[j]) - max(x1[i], x1[j]))
            h = max(0.0, min(y2[i], y2[j]) - max(y1[i], y1[j]))
            inter = w * h
            union = area[j] + area[i] - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


# --------------------------------------------------------------------------------------------------
# Random candidate sets: clusters of near-duplicate poses, some shifted step by step into chains
# --------------------------------------------------------------------------------------------------

def person(rng: np.random.Generator, centre: np.ndarray, size: float) -> np.ndarray:
    """A rough [K, 2] body: joints scattered over a box of about size x 2 size."""
    return centre + rng.uniform(-0.5, 0.5, size=(K, 2)) * [size, 2.0 * size]


@st.composite
def candidate_sets(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # sizes from the seeded generator: hypothesis' own integers favour their minimum (mostly empty sets)
    n_people, per_person, n_false = rng.integers(0, 6), rng.integers(1, 7), rng.integers(0, 4)
    jitter = draw(st.sampled_from([0.0, 0.01, 0.03, 0.08]))  # duplicate noise, fraction of body size
    step = draw(st.sampled_from([0.0, 0.02, 0.05, 0.1]))  # systematic shift per duplicate: makes chains
    ties = draw(st.booleans())  # scores from a few values, so equal scores are common
    unlabeled = draw(st.sampled_from([0.0, 0.2, 0.6]))  # fraction of joints at (0, 0) with score 0
    thr = draw(st.sampled_from([0.3, 0.5, 0.7, 0.9]))
    vis_thr = draw(st.sampled_from([None, None, 0.3]))

    kpts, scores, areas = [], [], []
    for _ in range(n_people):
        size = rng.uniform(20, 200)
        body = person(rng, rng.uniform(0, 640, 2), size)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-12
        top = rng.uniform(0.5, 1.0)
        for j in range(per_person):
            xy = body + j * step * size * direction + rng.normal(0, jitter * size, (K, 2))
            kpts.append(np.concatenate([xy, rng.uniform(0.05, 1.0, (K, 1))], 1))
            scores.append(top - 0.05 * j + rng.uniform(0, 0.02))
            areas.append(2.0 * size * size * rng.uniform(0.8, 1.2))
    for _ in range(n_false):
        kpts.append(np.concatenate([rng.uniform(0, 640, (K, 2)), rng.uniform(0, 0.5, (K, 1))], 1))
        scores.append(rng.uniform(0, 0.4))
        areas.append(rng.uniform(100, 40000))
    kpts = np.asarray(kpts, dtype=np.float64).reshape(-1, K, 3)
    if len(kpts):
        gone = rng.uniform(size=kpts.shape[:2]) < unlabeled
        kpts[gone] = 0.0
    scores = np.asarray(scores, dtype=np.float64)
    if ties:
        scores = np.round(scores * 4) / 4
    return kpts, scores, np.asarray(areas, dtype=np.float64), thr, vis_thr


def test_oks_nms_equals_greedy_loop_on_random_clusters():
    seen = Counter()

    @settings(FAST, max_examples=1000)
    @given(candidate_sets())
    def check(case):
        kpts, scores, areas, thr, vis_thr = case
        keep = oks_nms(kpts, scores, areas, thr, vis_thr=vis_thr)
        expected = greedy_oks_nms(kpts, scores, areas, thr, vis_thr)
        assert keep.dtype == np.int64
        assert keep.tolist() == expected
        seen["cases"] += 1
        seen["suppressed"] += len(keep) < len(scores)
        seen["chains"] += has_chain(kpts, scores, areas, thr, vis_thr, expected)
        seen["ties"] += len(np.unique(scores)) < len(scores)

    check()
    assert seen["cases"] >= 1000
    # the generator must actually exercise suppression, chains (kept although a higher-ranked pose
    # overlaps it, because that one was suppressed first) and equal scores
    assert seen["suppressed"] >= 400, seen
    assert seen["chains"] >= 150, seen
    assert seen["ties"] >= 300, seen


def crowd(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n candidates as noisy copies of n / 5 people packed into 800 x 800 px (the benchmark's kind)."""
    people = rng.uniform(100, 900, (max(1, n // 5), 1, 2)) + rng.normal(0, 60, (max(1, n // 5), K, 2))
    xy = people[np.arange(n) % len(people)] + rng.normal(0, 1, (n, K, 2)) * rng.uniform(1, 15, (n, 1, 1))
    kpts = np.concatenate([xy, rng.uniform(0.1, 1.0, (n, K, 1))], 2)
    return kpts, rng.uniform(size=n), np.prod(np.ptp(xy, axis=1) + 1, axis=1)


def test_oks_nms_equals_loop_on_crowds_across_blocks():
    """Several hundred candidates: the OKS matrix is built in several row blocks."""
    rng = np.random.default_rng(7)
    for n, thr, vis_thr in ((300, 0.5, None), (250, 0.3, 0.5)):
        kpts, scores, areas = crowd(rng, n)
        assert oks_nms(kpts, scores, areas, thr, vis_thr=vis_thr).tolist() == greedy_oks_nms(
            kpts, scores, areas, thr, vis_thr)


def test_oks_nms_equals_loop_with_tiny_blocks(monkeypatch):
    """The same random clusters with one row per block, so every block boundary is crossed."""
    monkeypatch.setattr(postprocess, "_BLOCK", 40)

    @settings(FAST, max_examples=150)
    @given(candidate_sets())
    def check(case):
        kpts, scores, areas, thr, vis_thr = case
        assert oks_nms(kpts, scores, areas, thr, vis_thr=vis_thr).tolist() == greedy_oks_nms(
            kpts, scores, areas, thr, vis_thr)

    check()


# --------------------------------------------------------------------------------------------------
# OKS-NMS edge cases
# --------------------------------------------------------------------------------------------------

def test_oks_nms_empty_and_single():
    empty = oks_nms(np.zeros((0, K, 3)), np.zeros(0), np.zeros(0))
    assert empty.dtype == np.int64 and empty.shape == (0,)
    one = oks_nms(np.ones((1, K, 3)), np.array([0.3]), np.array([100.0]))
    assert one.dtype == np.int64 and one.tolist() == [0]


def test_equal_scores_keep_input_order():
    rng = np.random.default_rng(0)
    body = person(rng, np.array([300.0, 300.0]), 100)
    apart = [body + [400.0 * i, 0.0] for i in range(4)]  # four people far apart: nothing suppressed
    kpts = np.stack([np.concatenate([p, np.ones((K, 1))], 1) for p in apart])
    keep = oks_nms(kpts, np.full(4, 0.7), np.full(4, 2e4))
    assert keep.tolist() == [0, 1, 2, 3]
    # identical duplicates with equal scores: the first in input order survives
    dup = np.stack([kpts[0]] * 3 + [kpts[1]])
    assert oks_nms(dup, np.array([0.5, 0.5, 0.5, 0.9]), np.full(4, 2e4)).tolist() == [3, 0]


def test_unlabeled_joints():
    rng = np.random.default_rng(1)
    a = np.concatenate([person(rng, np.array([200.0, 200.0]), 80), np.ones((K, 1))], 1)
    b = a.copy()
    b[:, :2] += 60.0  # a different person overlapping a
    a[5:, :] = 0.0  # a only has its face labelled; the rest at (0, 0) with score 0
    b[5:, :] = 0.0
    kpts, scores, areas = np.stack([a, b]), np.array([0.9, 0.8]), np.array([1e4, 1e4])
    # without vis_thr the 12 shared (0, 0) joints count as perfect matches and suppress b, as in mmpose
    assert oks_nms(kpts, scores, areas, 0.5).tolist() == greedy_oks_nms(kpts, scores, areas, 0.5) == [0]
    # with vis_thr only the labelled face joints count, and those are 60 px apart
    assert oks_nms(kpts, scores, areas, 0.5, vis_thr=0.1).tolist() == [0, 1]
    # no joint labelled in both poses: OKS 0, nothing suppressed
    c = a.copy()
    c[:5, 2] = 0.0
    assert oks_matrix(np.stack([a, c]), [1e4, 1e4], vis_thr=0.1)[0, 1] == 0.0


def test_non_finite_input_is_refused():
    kpts = np.ones((2, K, 3))
    kpts[0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        oks_nms(kpts, np.array([0.5, 0.4]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[N, K, 3\]"):
        oks_nms(np.ones((2, K, 2)), np.array([0.5, 0.4]), np.array([1.0, 1.0]))


@pytest.mark.parametrize("side", [-1.0, 1.0])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_decisions_at_the_threshold_are_float64(side, offset):
    """OKS within 1e-12 of thr: float32 screening alone could not tell, the float64 recheck must."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        base = np.concatenate([person(rng, np.array([offset, offset]), 50), np.ones((K, 1))], 1)
        other = base.copy()
        other[:, :2] += rng.normal(0, 5, (K, 2))
        kpts, areas = np.stack([base, other]), np.array([5e3, 4e3])
        oks = ref_oks(base, other, areas[0], areas[1])
        thr = oks * (1.0 + side * 1e-12)
        keep = oks_nms(kpts, np.array([0.9, 0.8]), areas, thr)
        assert keep.tolist() == ([0, 1] if side > 0 else [0])


def test_large_coordinates_and_tiny_areas_match_loop():
    rng = np.random.default_rng(3)
    bodies = [person(rng, np.array([1e5, 1e5]) + rng.uniform(0, 30, 2), 4) for _ in range(6)]
    kpts = np.stack([np.concatenate([b + rng.normal(0, 0.2, (K, 2)), np.ones((K, 1))], 1) for b in bodies * 3])
    scores, areas = rng.uniform(size=len(kpts)), rng.uniform(5, 30, len(kpts))
    for thr in (0.3, 0.5, 0.8):
        assert oks_nms(kpts, scores, areas, thr).tolist() == greedy_oks_nms(kpts, scores, areas, thr)


def test_zero_areas_and_extreme_thresholds():
    kpts = np.zeros((3, K, 3))
    kpts[1, :, :2] = 5.0
    scores, areas = np.array([0.9, 0.8, 0.7]), np.zeros(3)
    for thr in (-0.1, 0.0, 0.5, 1.0, 1.5):
        assert oks_nms(kpts, scores, areas, thr).tolist() == greedy_oks_nms(kpts, scores, areas, thr)


def test_greedy_keep_resolves_chains():
    # 0 suppresses 1, 1 would suppress 2, 2 would suppress 3: greedy keeps 0 and 2
    s = np.zeros((4, 4), dtype=bool)
    s[0, 1] = s[1, 2] = s[2, 3] = True
    assert greedy_keep(s).tolist() == [True, False, True, False]
    # only the upper triangle (higher rank suppresses lower) is read
    assert greedy_keep(s.T).tolist() == [True] * 4


def test_oks_matrix_matches_pairwise_formula():
    rng = np.random.default_rng(4)
    kpts = np.concatenate([rng.uniform(0, 200, (6, K, 2)), rng.uniform(0, 1, (6, K, 1))], 2)
    areas = rng.uniform(1e3, 2e4, 6)
    for vis_thr in (None, 0.5):
        m = oks_matrix(kpts, areas, vis_thr=vis_thr)
        ref = [[ref_oks(p, q, ap, aq, vis_thr) for q, aq in zip(kpts, areas)] for p, ap in zip(kpts, areas)]
        np.testing.assert_allclose(m, ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(m, m.T)  # symmetric, also with vis_thr (unlike an `and` of lists)


# --------------------------------------------------------------------------------------------------
# Soft OKS-NMS
# --------------------------------------------------------------------------------------------------

def greedy_soft_nms(kpts, scores, areas, thr, decay_sigma, max_dets, method):
    order = list(np.argsort(-scores, kind="stable"))
    current = {int(i): float(scores[i]) for i in order}
    keep, kept_scores = [], []
    while current and len(keep) < max_dets:
        best = max(order, key=lambda i: (current.get(int(i), -np.inf), -order.index(i)))
        i = int(best)
        keep.append(i)
        kept_scores.append(current.pop(i))
        order.remove(best)
        for j in current:
            o = ref_oks(kpts[i], kpts[j], areas[i], areas[j])
            if method == "gaussian":
                current[j] *= np.exp(-(o**2) / decay_sigma)
            elif o >= thr:
                current[j] *= 1.0 - o
    return keep, kept_scores


@pytest.mark.parametrize("method", ["gaussian", "linear"])
def test_soft_oks_nms_matches_loop(method):
    rng = np.random.default_rng(5)
    bodies = [person(rng, rng.uniform(0, 400, 2), 80) for _ in range(4)]
    kpts = np.stack([np.concatenate([b + rng.normal(0, 4, (K, 2)), np.ones((K, 1))], 1) for b in bodies * 4])
    scores, areas = rng.uniform(size=len(kpts)), np.full(len(kpts), 1.3e4)
    keep, new = soft_oks_nms(kpts, scores, areas, thr=0.3, max_dets=10, method=method, decay_sigma=0.4)
    ref_keep, ref_scores = greedy_soft_nms(kpts, scores, areas, 0.3, 0.4, 10, method)
    assert keep.tolist() == ref_keep
    np.testing.assert_allclose(new, ref_scores, rtol=1e-12)
    assert np.all(np.diff(new) <= 1e-12)  # scores come out non-increasing
    assert new[0] == scores.max() and len(keep) == 10
    empty_keep, empty_scores = soft_oks_nms(np.zeros((0, K, 3)), np.zeros(0), np.zeros(0))
    assert empty_keep.shape == empty_scores.shape == (0,)


def test_soft_oks_decay_is_its_own_setting():
    """test.soft_oks_sigma, not test.oks_thr, is soft OKS-NMS's Gaussian width: the lower-scored of two
    overlapping poses keeps score * exp(-OKS^2 / soft_oks_sigma)."""
    rng = np.random.default_rng(7)
    a = np.concatenate([person(rng, np.array([50.0, 100.0]), 100), np.full((K, 1), 0.9)], 1)
    b = a + [6.0, 0, 0]
    box = np.array([0.0, 0.0, 100.0, 200.0])
    records = records_from_detections({1: "a.jpg"}, {1: (np.stack([box, box]), np.array([0.9, 0.8]))}, K)
    posed = PosedInstances(records, np.stack([a, b]), crop_areas(records.boxes, 1.0, 1.25))
    oks = ref_oks(a, b, 0.53 * 100.0 * 200.0, 0.53 * 100.0 * 200.0)  # the box-only OKS scale
    assert 0.3 < oks < 0.99
    base = dataclasses.replace(Config().test, iou_nms=False, soft_oks=True)
    assert base.soft_oks_sigma == 0.5  # Soft-NMS's published default
    kpt_scores = keypoint_instance_score(posed.keypoints[..., 2], base.kpt_score_thr)
    for changes, sigma in (({}, 0.5), ({"oks_thr": 0.9}, 0.5), ({"soft_oks_sigma": 0.1}, 0.1)):
        index, scores = select_instances(posed, dataclasses.replace(base, **changes), SIGMAS)
        assert index.tolist() == [0, 1], changes
        np.testing.assert_allclose(scores[1], 0.8 * kpt_scores[1] * np.exp(-(oks**2) / sigma), rtol=1e-12,
                                   err_msg=str(changes))
    cfg = Config()
    cfg.test.soft_oks_sigma = 0.0
    with pytest.raises(ConfigError, match="test.soft_oks_sigma must be above 0"):
        check_config(cfg)


# --------------------------------------------------------------------------------------------------
# Real poses: noisy duplicates and false positives around COCO ground truth
# --------------------------------------------------------------------------------------------------

def fake_results(gt: dict, rng: np.random.Generator) -> tuple[list[dict], dict[int, float]]:
    """Results as a top-down pipeline makes them: one noisy pose per labelled person, a second, lower-scored
    near-copy for 40% of them (a duplicate detector box), and false positives. Returns the records and
    the scale area of each (index -> GT box area, okspose's default OKS-NMS scale)."""
    res, areas = [], {}
    for a in gt["annotations"]:
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) == 0:
            continue
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        x, y, w, h = a["bbox"]
        size = max(w, h, 1.0)
        pose = kp[:, :2] + rng.normal(0, 0.02 * size, (K, 2))
        unlabeled = kp[:, 2] == 0
        pose[unlabeled] = [x + w / 2, y + h / 2] + rng.normal(0, 0.2 * size, (int(unlabeled.sum()), 2))
        score = rng.uniform(0.5, 1.0)
        copies = [(pose, score)]
        if rng.uniform() < 0.4:
            copies.append((pose + rng.normal(0, 0.01 * size, (K, 2)), score * rng.uniform(0.3, 0.9)))
        for xy, s in copies:
            areas[len(res)] = w * h
            joint = rng.uniform(0.2, 1.0, (K, 1))
            res.append({"image_id": a["image_id"], "category_id": 1,
                        "keypoints": np.concatenate([xy, joint], 1).ravel().round(2).tolist(), "score": float(s)})
    for im in gt["images"]:
        if rng.uniform() < 0.3:
            xy = rng.uniform(0, [im["width"], im["height"]], (K, 2))
            areas[len(res)] = float(np.prod(np.ptp(xy, axis=0)))
            res.append({"image_id": im["id"], "category_id": 1,
                        "keypoints": np.concatenate([xy, rng.uniform(0, 0.5, (K, 1))], 1).ravel().round(2).tolist(),
                        "score": float(rng.uniform(0, 0.4))})
    return res, areas


def nms_per_image(res: list[dict], areas: dict[int, float] | None, thr: float, vis_thr: float | None,
                  check: bool = True) -> list[dict]:
    """OKS-NMS within each image (keypoint-extent area where none is given), checked against the loop."""
    by_image = defaultdict(list)
    for i, r in enumerate(res):
        by_image[r["image_id"]].append(i)
    kept = []
    for idx in by_image.values():
        kpts = np.array([res[i]["keypoints"] for i in idx]).reshape(-1, K, 3)
        scores = np.array([res[i]["score"] for i in idx])
        extent = np.prod(np.ptp(kpts[:, :, :2], axis=1), axis=1)
        area = extent if areas is None else np.array([areas[i] for i in idx])
        keep = oks_nms(kpts, scores, area, thr, vis_thr=vis_thr)
        if check:
            assert keep.tolist() == greedy_oks_nms(kpts, scores, area, thr, vis_thr)
        kept += [res[idx[j]] for j in keep]
    return kept


GT_FILES = [pytest.param(VAL_JSON, id="coco-mini-val"), pytest.param(SAMPLES / "test_coco.json", id="samples")]


@pytest.mark.parametrize("gt_path", GT_FILES)
def test_oks_nms_on_real_poses_matches_loop_and_keeps_ap(gt_path):
    if not gt_path.is_file():
        pytest.skip(f"shared data not found at {gt_path}")
    gt = json.loads(gt_path.read_text())
    for seed in range(3):
        res, areas = fake_results(gt, np.random.default_rng(seed))
        for vis_thr in (None, 0.2):
            kept = nms_per_image(res, areas, 0.5, vis_thr)
            assert len(kept) < len(res)  # duplicates were removed
        kept = nms_per_image(res, areas, 0.5, None, check=False)
        before = evaluate_keypoints(gt_path, res)["AP"]
        after = evaluate_keypoints(gt_path, kept)["AP"]
        assert after >= before, (seed, before, after)
        if gt_path == VAL_JSON:
            assert after > before  # with 40% duplicates on 100+ people the gain must show


def noisier_duplicates(gt: dict, rng: np.random.Generator) -> tuple[list[dict], dict[int, float], list[int]]:
    """Results whose duplicates (30% of the persons) are twice as noisy as their original and scored apart
    from it, so sometimes higher, as ../shared/peers' generator makes them. Returns the records, their
    scale areas (GT box) and the original's index of each record (its own index for an original)."""
    res, areas, original = [], {}, []
    for a in gt["annotations"]:
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) == 0:
            continue
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        x, y, w, h = a["bbox"]
        size, first = max(w, h, 1.0), len(res)
        for dup in range(1 + int(rng.uniform() < 0.3)):
            xy = kp[:, :2] + rng.normal(0, 0.03 * size * (1 + dup), (K, 2))
            xy[kp[:, 2] == 0] = [x + w / 2, y + h / 2] + rng.normal(0, 0.2 * size, (int((kp[:, 2] == 0).sum()), 2))
            areas[len(res)] = w * h
            original.append(first)
            res.append({"image_id": a["image_id"], "category_id": 1, "score": float(rng.uniform(0.2, 1.0)),
                        "keypoints": np.concatenate([xy, rng.uniform(0.2, 1.0, (K, 1))], 1).ravel().tolist()})
    return res, areas, original


def test_oks_nms_on_peer_fake_results_matches_loop():
    """On noisier, sometimes higher-scored duplicates: OKS-NMS equals the greedy loop; no kept pose
    overlaps (OKS > thr) a better-ranked kept one, every dropped pose overlaps a better-ranked kept one;
    and the case occurs: some kept duplicates beat their own original."""
    if not VAL_JSON.is_file():
        pytest.skip("coco-mini not found")
    gt = json.loads(VAL_JSON.read_text())
    duplicate_won = 0
    for seed in range(3):
        res, areas, original = noisier_duplicates(gt, np.random.default_rng(seed))
        rank = {i: r for r, i in enumerate(np.argsort([-r["score"] for r in res], kind="stable"))}
        for thr, vis_thr in ((0.5, None), (0.3, 0.3), (0.9, None)):
            kept = {id(r) for r in nms_per_image(res, areas, thr, vis_thr)}
            for i, r in enumerate(res):
                better_kept = [j for j, q in enumerate(res) if q["image_id"] == r["image_id"] and id(q) in kept
                               and rank[j] < rank[i]]
                overlaps = [ref_oks(np.reshape(r["keypoints"], (K, 3)), np.reshape(res[j]["keypoints"], (K, 3)),
                                    areas[i], areas[j], vis_thr) > thr for j in better_kept]
                assert any(overlaps) != (id(r) in kept), (seed, thr, i)
                duplicate_won += original[i] != i and id(r) in kept and id(res[original[i]]) not in kept
    assert duplicate_won > 0


# --------------------------------------------------------------------------------------------------
# IoU-NMS
# --------------------------------------------------------------------------------------------------

@settings(FAST, max_examples=300)
@given(
    n=st.integers(0, 30),
    groups=st.integers(1, 3),
    thr=st.sampled_from([0.3, 0.5, 0.6, 0.9]),
    ties=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_iou_nms_equals_greedy_loop(n, groups, thr, ties, seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 300, (max(1, n // 3), 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 10, (n, 2))
    boxes = np.concatenate([xy, rng.uniform(0, 80, (n, 2))], 1)
    scores = rng.uniform(size=n)
    if ties:
        scores = np.round(scores * 3) / 3
    group = rng.integers(0, groups, n) * 1000 + 7  # sparse ids, like image ids
    keep = iou_nms(boxes, scores, thr, group=group)
    assert keep.dtype == np.int64
    assert keep.tolist() == greedy_iou_nms(boxes, scores, thr, group)
    if groups == 1:
        assert iou_nms(boxes, scores, thr).tolist() == greedy_iou_nms(boxes, scores, thr)


def test_iou_nms_on_real_detections():
    path = SAMPLES / "test_coco_det_AP_H_56.json"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    dets = json.loads(path.read_text())
    boxes = np.array([d["bbox"] for d in dets])
    scores = np.array([d["score"] for d in dets])
    image = np.array([d["image_id"] for d in dets])
    for thr in (0.3, 0.6):
        keep = iou_nms(boxes, scores, thr, group=image)
        assert keep.tolist() == greedy_iou_nms(boxes, scores, thr, image)
    assert len(iou_nms(boxes, scores, 0.3, group=image)) < len(dets)


def test_iou_nms_edge_cases():
    assert iou_nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    assert iou_nms(np.array([[0, 0, 10, 10]]), np.array([0.2])).tolist() == [0]
    same = np.array([[0, 0, 10, 10]] * 3, dtype=float)
    assert iou_nms(same, np.array([0.5, 0.5, 0.5])).tolist() == [0]  # equal scores: the first survives
    assert iou_nms(same, np.array([0.5, 0.5, 0.5]), group=np.array([3, 1, 3])).tolist() == [0, 1]


# --------------------------------------------------------------------------------------------------
# Rescoring
# --------------------------------------------------------------------------------------------------

def test_keypoint_instance_score():
    joints = np.array([[0.1, 0.5, 0.9, 0.2], [0.1, 0.0, 0.2, 0.15]])
    np.testing.assert_allclose(keypoint_instance_score(joints, thr=0.2), [0.7, 0.0])  # 0.2 itself is not above
    assert keypoint_instance_score(np.zeros((0, 17))).shape == (0,)


def test_rescore_modes():
    box = np.array([0.9, 0.5, 0.8])
    joints = np.array([[0.9, 0.7, 0.1], [0.1, 0.1, 0.1], [0.4, 0.4, 0.4]])
    kpt = np.array([0.8, 0.0, 0.4])
    np.testing.assert_allclose(rescore(box, joints, "box"), box)
    np.testing.assert_allclose(rescore(box, joints, "keypoint"), kpt)
    np.testing.assert_allclose(rescore(box, joints, "box*keypoint"), box * kpt)
    np.testing.assert_allclose(rescore(box, joints), box * kpt)  # Team OKS's default
    np.testing.assert_allclose(rescore(box, kpt, "box*keypoint"), box * kpt)  # already per instance
    np.testing.assert_allclose(rescore(box, joints, "keypoint", kpt_thr=0.05), joints.mean(1))
    with pytest.raises(ValueError, match="mode"):
        rescore(box, joints, "oks")
    with pytest.raises(ValueError, match="do not match"):
        rescore(box[:2], joints)



# --------------------------------------------------------------------------------------------------
# The OKS area setting
# --------------------------------------------------------------------------------------------------

def test_crop_areas_are_padded_aspect_fixed_boxes():
    boxes = np.array([[5.0, 5.0, 100.0, 200.0], [0.0, 0.0, 300.0, 100.0]])
    # aspect 0.75 (192 x 256 input): the tall box is widened to 150 x 200, the wide one heightened to 300 x 400
    np.testing.assert_allclose(crop_areas(boxes, 0.75, 1.25), [150 * 200 * 1.25**2, 300 * 400 * 1.25**2])
    np.testing.assert_allclose(crop_areas(boxes, 1.0, 1.0), [200 * 200, 300 * 300])


def test_oks_area_setting_changes_the_area_used():
    """Two poses whose OKS is below 0.5 at the box-only scale (0.53 x w x h, the metric's and mining's) and
    above it at the whole box's and at the (larger) crop's: oks_area=box keeps both, crop suppresses one."""
    rng = np.random.default_rng(6)
    a = np.concatenate([person(rng, np.array([50.0, 100.0]), 100), np.full((K, 1), 0.9)], 1)
    box = np.array([0.0, 0.0, 100.0, 200.0])
    box_area, whole_box = 0.53 * 100.0 * 200.0, 100.0 * 200.0  # the crop is larger still: 250 x 250
    shift = next(d for d in np.arange(1.0, 60.0, 0.5)
                 if ref_oks(a, a + [d, 0, 0], box_area, box_area)
                 < 0.5 < ref_oks(a, a + [d, 0, 0], whole_box, whole_box))
    records = records_from_detections({1: "a.jpg"}, {1: (np.stack([box, box]), np.array([0.9, 0.8]))}, K)
    posed = PosedInstances(records, np.stack([a, a + [shift, 0, 0]]), crop_areas(records.boxes, 1.0, 1.25))
    kept = {}
    for area in ("box", "crop"):
        test = dataclasses.replace(Config().test, iou_nms=False, oks_area=area)
        kept[area] = select_instances(posed, test, SIGMAS)[0].tolist()
    assert kept == {"box": [0, 1], "crop": [0]}
