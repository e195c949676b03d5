"""COCO keypoint AP/AR through pycocotools, with inputs checked up front.

pycocotools is the reference implementation of the metric, so the numbers come from it unchanged; but it
fails on bad input with bare asserts, IndexErrors or silently wrong numbers (NaN keypoints, unknown
categories). Everything is therefore validated here first and reported as a ``DataError`` that names the
file and the offending record. Other schemas than COCO-17 (AI Challenger, CrowdPose, ...) are scored with
their own OKS sigmas (``COCOeval.params.kpt_oks_sigmas``), and every keypoint list must have their length.

A CrowdPose file (its images carry a ``crowdIndex``, its persons no ``area``) is scored with CrowdPose's own
metric, that of crowdposetools and of xtcocotools' ``keypoints_crowd``: OKS scaled by 0.53 x the box, AP/AR
over every image, and AP over its easy, medium and hard images by crowd index. Built on pycocotools too: its
COCOeval run on a copy of the ground truth whose ``area`` is the box's, once over every image and once over
each crowd group. Other files without ``area`` can take the same box scale (``area="box"``).

Keypoints in both ground truth and results are flat COCO lists ``[x1, y1, v1/s1, ...]`` of 3K numbers, with
(x, y) in image pixels and a visibility label (ground truth) or score (results).
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from okspose.data.records import SkipReport
from okspose.errors import DataError
from okspose.fileio import read_json
from okspose.keypoints import COCO17, SCHEMAS, box_oks_area, check_category_joints

# Names of COCOeval's ten keypoint statistics, in the order of ``COCOeval.stats``.
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# CrowdPose's nine, in the order of xtcocotools' ``keypoints_crowd`` stats (crowdposetools has the same
# numbers in an 11-long array whose entries 3 and 4 are never set): AP and AR over every image at up to 20
# persons per image, then AP over the easy, medium and hard images.
CROWD_STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APeasy", "APmedium", "APhard")

# Crowd index bounds of the medium and the hard images, as CrowdPose's evaluation code splits them (both
# crowdposetools and xtcocotools: easy < 0.2 <= medium < 0.8 <= hard), which its published numbers use.
CROWD_BOUNDS = (0.2, 0.8)

# Where the OKS scale of a ground-truth person comes from: its ``area`` field, or its box.
Area = Literal["file", "box"]

# The fields every result record must have, and the only ones kept (see :func:`load_results`).
RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Swallow pycocotools' progress prints unless the caller asked for them."""
    if verbose:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# --------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------

_GT_ANN_KEYS = ("id", "image_id", "category_id", "keypoints", "num_keypoints", "iscrowd")


def _crowd_index(dataset: dict, source: str) -> dict[int, float] | None:
    """``{image id: crowd index}`` of a CrowdPose file, None for a file without crowd indices.

    Raises:
        DataError: when only some images carry one, or one is not a finite number.
    """
    images = dataset["images"]
    have = ["crowdIndex" in img for img in images]
    if not any(have):
        return None
    if not all(have):
        raise DataError(f"{source}: images[{have.index(False)}] lacks 'crowdIndex' (other images have one)")
    for i, img in enumerate(images):
        if not _is_real(img["crowdIndex"]) or not math.isfinite(img["crowdIndex"]):
            raise DataError(f"{source}: images[{i}] crowdIndex must be a finite number, got {img['crowdIndex']!r}")
    return {img["id"]: float(img["crowdIndex"]) for img in images}


def _finite(x: Any) -> bool:
    return _is_real(x) and math.isfinite(x)


def _value_problem(ann: dict, num_joints: int, box_area: bool, img_ids: set, cat_ids: set) -> str | None:
    """What makes one annotation unusable by the metric (the field and its value), or None.

    Each of these would give a wrong number inside COCOeval rather than an error: a NaN OKS passes every
    threshold, a negative area leaves the person out of every area range, an unknown image or category
    drops the person silently.
    """
    if ann["image_id"] not in img_ids:
        return f"image_id {ann['image_id']!r} is not among the images"
    if ann["category_id"] not in cat_ids:
        return f"category_id {ann['category_id']!r} is not among the categories {sorted(cat_ids)}"
    kps = ann["keypoints"]
    if not all(_finite(v) for v in kps):
        return "keypoints must be finite numbers (NaN, infinite or non-numbers found)"
    if box_area:
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)) or min(box[2:]) <= 0:
            return f"bbox must be 4 finite numbers [x, y, w, h] with w, h > 0, got {box!r}"
    elif not _finite(ann["area"]) or ann["area"] <= 0:
        return f"area must be a finite number above 0, got {ann['area']!r}"
    return None


def _schema_hint(values: object, crowd: bool) -> str:
    """The built-in schemas a keypoint list of ``values`` numbers fits (CrowdPose's for a CrowdPose file),
    as the words that choose one."""
    names = [n for n, s in SCHEMAS.items() if values == 3 * s.num_joints]
    if crowd and "crowdpose14" in names:
        names = ["crowdpose14"]
    if not names:
        return ""
    return f" (for {' or '.join(names)}: eval-results --schema {names[0]}, data.schema={names[0]})"


def _check_gt(dataset: Any, source: str, num_joints: int, area: Area, report: SkipReport | None = None,
              joints: Sequence[str] | None = None) -> dict:
    """The one check of a ground-truth file, shared by every command that scores: the fields
    COCOeval('keypoints') reads, so a bad file fails here with the annotation id and field, not deep inside
    COCOeval or as a wrong number. A person COCO's metric ignores (a crowd region, or no labelled joint)
    whose values are unusable is dropped and counted in ``report`` instead. The box gives the OKS scale
    where ``area="box"`` or in a CrowdPose file, else the ``area``.

    Returns:
        The dataset, without the dropped persons (the same object when none is dropped).
    """
    if not isinstance(dataset, dict):
        raise DataError(f"{source}: expected a JSON object at the top level, got {type(dataset).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(f"{source}: missing or non-list {key!r}")
    for i, img in enumerate(dataset["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise DataError(f"{source}: images[{i}] has no integer 'id'")
    for i, cat in enumerate(dataset["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DataError(f"{source}: categories[{i}] has no integer 'id'")
    if joints is not None:
        check_category_joints(dataset["categories"], joints, source)
    img_ids = {img["id"] for img in dataset["images"]}
    cat_ids = {cat["id"] for cat in dataset["categories"]}
    crowd = _crowd_index(dataset, source) is not None
    box_area = area == "box" or crowd
    keys = _GT_ANN_KEYS + (("bbox",) if box_area else ("area",))
    seen: set[int] = set()
    dropped: set[int] = set()
    for i, ann in enumerate(dataset["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{source}: annotations[{i}] is not an object")
        missing = [k for k in keys if k not in ann]
        if missing:
            hint = " (to scale OKS by 0.53 x the box instead: eval-results --area box, test.metric_area=box)"
            raise DataError(f"{source}: annotations[{i}] lacks {', '.join(map(repr, missing))}"
                             f"{hint if 'area' in missing else ''}")
        where = f"{source}: annotation {ann['id']!r} (annotations[{i}])"
        for key in ("id", "image_id", "category_id", "num_keypoints"):
            if not _is_int(ann[key]) or (key == "num_keypoints" and ann[key] < 0):
                raise DataError(f"{where}: {key} must be {'a count' if key == 'num_keypoints' else 'an integer'}, "
                                f"got {ann[key]!r}")
        if ann["id"] in seen:  # COCO's index keeps one of them, so both would be scored as the same person
            raise DataError(f"{where}: id {ann['id']} is used by another annotation too")
        seen.add(ann["id"])
        if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], float):
            raise DataError(f"{where}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
        if not isinstance(ann["keypoints"], list) or len(ann["keypoints"]) != 3 * num_joints:
            got = len(ann["keypoints"]) if isinstance(ann["keypoints"], list) else repr(ann["keypoints"])
            raise DataError(f"{where}: keypoints must be a list of {3 * num_joints} numbers ({num_joints} joints "
                            f"of the schema evaluated), got {got}{_schema_hint(got, crowd)}")
        problem = _value_problem(ann, num_joints, box_area, img_ids, cat_ids)
        if problem is None:
            continue
        if not (ann["iscrowd"] or ann["num_keypoints"] == 0):
            raise DataError(f"{where}: {problem}")
        dropped.add(i)
        if report is not None:
            report.add("ignored person with unusable values", f"{where}: {problem}")
    if not dropped:
        return dataset
    return {**dataset, "annotations": [a for i, a in enumerate(dataset["annotations"]) if i not in dropped]}


def _coco_from_dataset(dataset: dict) -> COCO:
    """Build a COCO index from an already-parsed dict (COCO() itself only reads files)."""
    coco = COCO()
    coco.dataset = dataset
    with _quiet(False):
        coco.createIndex()
    return coco


def load_coco(path: str | Path, num_joints: int = COCO17.num_joints, area: Area = "file",
              report: SkipReport | None = None, joints: Sequence[str] | None = None) -> COCO:
    """Load and validate a COCO-format keypoint annotation file, so a bad file fails with its name.

    Args:
        path: the annotation file (``.json`` or gzipped ``.json.gz``).
        num_joints: K; every annotation's ``keypoints`` must hold 3K numbers.
        area: ``file``: every annotation needs an ``area`` (not in a CrowdPose file); ``box``: a ``bbox``.
        report: counts the persons COCO's metric ignores that were dropped for unusable values.
        joints: the schema's joint names, which a category's ``keypoints`` names must be (None: not checked).

    Returns:
        COCO: the indexed ground truth.

    Raises:
        DataError: when the file is missing, not JSON, or has an annotation the metric cannot score right.
    """
    return _coco_from_dataset(_check_gt(read_json(path, "annotation"), str(path), num_joints, area, report, joints))


def _as_coco(gt: str | Path | COCO, num_joints: int, area: Area, report: SkipReport | None,
             joints: Sequence[str] | None) -> COCO:
    if isinstance(gt, COCO):
        dataset = _check_gt(gt.dataset, "ground truth", num_joints, area, report, joints)
        return gt if dataset is gt.dataset else _coco_from_dataset(dataset)
    return load_coco(gt, num_joints, area, report, joints)


def _with_box_area(coco_gt: COCO) -> COCO:
    """A copy whose persons' ``area`` is 0.53 x their box: pycocotools then scales OKS (and sorts persons
    into its area ranges) as CrowdPose's and xtcocotools' evaluations do for files without one."""
    anns = [{**a, "area": float(box_oks_area(a["bbox"])[0])} for a in coco_gt.dataset["annotations"]]
    return _coco_from_dataset({**coco_gt.dataset, "annotations": anns})


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------

def _clean_record(rec: Any, i: int, source: str, img_ids: set[int], cat_ids: set[int], num_joints: int,
                  with_box: bool) -> dict:
    """Validate one result and return a fresh plain-Python copy (loadRes mutates what it is given), with
    its ``bbox`` when ``with_box``."""
    where = f"{source}: record {i}"
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
    missing = [k for k in RESULT_KEYS if k not in rec]
    if missing:
        raise DataError(f"{where}: missing {', '.join(map(repr, missing))}")
    image_id, category_id, score = rec["image_id"], rec["category_id"], rec["score"]
    if not _is_int(image_id):
        raise DataError(f"{where}: image_id must be an integer, got {image_id!r}")
    if int(image_id) not in img_ids:
        raise DataError(f"{where}: image_id {image_id} is not in the ground truth")
    if not _is_int(category_id) or int(category_id) not in cat_ids:
        raise DataError(f"{where}: category_id {category_id!r} is not a ground-truth category "
                         f"{sorted(cat_ids)}")
    if not _is_real(score) or not math.isfinite(score):
        raise DataError(f"{where}: score must be a finite number, got {score!r}")
    kpts = np.asarray(rec["keypoints"]) if isinstance(rec["keypoints"], Sequence | np.ndarray) else None
    n = 3 * num_joints
    if kpts is None or kpts.ndim != 1 or kpts.dtype.kind not in "iuf" or kpts.size != n:
        raise DataError(f"{where}: keypoints must be a flat list of {n} numbers (x, y, score for each of the "
                         f"schema's {num_joints} joints)")
    if not np.isfinite(kpts).all():
        raise DataError(f"{where}: keypoints contain NaN or infinite values")
    clean = {"image_id": int(image_id), "category_id": int(category_id),
             "keypoints": kpts.astype(float).tolist(), "score": float(score)}
    if with_box:
        box = rec.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_real(v) and math.isfinite(v) for v in box)):
            raise DataError(f"{where}: bbox must be 4 finite numbers [x, y, w, h] as in record 0 (pycocotools "
                            f"takes the boxes of every record when the first has one), got {box!r}")
        clean["bbox"] = [float(v) for v in box]
    return clean


def load_results(
    path_or_list: str | Path | list[dict], coco_gt: COCO, num_joints: int = COCO17.num_joints
) -> list[dict]:
    """Validate COCO keypoint results against ``coco_gt`` and return clean copies of the fields pycocotools
    reads: the four, and ``bbox`` when the first record has a non-empty one. pycocotools' ``loadRes`` then
    takes each detection's area (which sorts unmatched detections into the area ranges: APm, APl) from its
    box instead of its keypoints' extent, so keeping it keeps the metric pycocotools gives the file.

    Args:
        path_or_list: a results file (``.json`` or ``.json.gz``), or the records themselves (not modified).
        coco_gt: the ground truth the image and category ids must belong to.
        num_joints: K; every record's ``keypoints`` must be a flat list of 3K finite numbers.

    Returns:
        list[dict]: one ``{"image_id": int, "category_id": int, "keypoints": list[float] (3K), "score": float}``
        (and ``"bbox": list[float]``) per record, in input order.

    Raises:
        DataError: naming the source and record index of the first invalid record.
    """
    if isinstance(path_or_list, str | Path):
        source = str(path_or_list)
        records = read_json(path_or_list, "results")
    else:
        source, records = "results", path_or_list
    if not isinstance(records, list):
        raise DataError(f"{source}: results must be a list of objects, got {type(records).__name__}")
    img_ids = set(coco_gt.getImgIds())
    cat_ids = set(coco_gt.getCatIds())
    with_box = bool(records) and isinstance(records[0], dict) and records[0].get("bbox") not in (None, [])
    return [_clean_record(rec, i, source, img_ids, cat_ids, num_joints, with_box) for i, rec in enumerate(records)]


# --------------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------------

def _check_img_ids(img_ids: list[int], coco_gt: COCO) -> list[int]:
    """Unknown ids would silently count as empty images, so reject them."""
    if len(img_ids) == 0:
        raise ValueError("img_ids is empty; pass None to evaluate on all ground-truth images")
    ids = sorted(set(map(int, img_ids)))
    unknown = sorted(set(ids) - set(coco_gt.getImgIds()))
    if unknown:
        more = " ..." if len(unknown) > 10 else ""
        raise ValueError(f"img_ids not in the ground truth: {unknown[:10]}{more}")
    return ids


def _cocoeval(coco_gt: COCO, coco_dt: COCO, sigmas: Sequence[float], ids: list[int] | None) -> COCOeval:
    """pycocotools' keypoint evaluation over the images ``ids`` (None: every image), summarised."""
    ev = COCOeval(coco_gt, coco_dt, "keypoints")
    ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
    if ids is not None:
        ev.params.imgIds = ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def _detections(coco_gt: COCO, dets: list[dict]) -> COCO:
    """The results as pycocotools' ``loadRes`` indexes them; none (which ``loadRes`` cannot load) as an index
    without annotations, which COCOeval scores as it would any missed person: 0 where a range has ground
    truth, -1 where it has none."""
    if dets:
        return coco_gt.loadRes(dets)
    keep = ("images", "categories")
    return _coco_from_dataset({**{k: coco_gt.dataset[k] for k in keep}, "annotations": []})


def _crowdpose_stats(coco_gt: COCO, dets: list[dict], sigmas: Sequence[float], ids: list[int],
                     index: dict[int, float]) -> dict[str, float]:
    """CrowdPose's metric on a ground truth that already has the box areas: AP/AR over ``ids``, then AP over
    its easy, medium and hard images, rounded to 4 decimals as CrowdPose's code reports them (-1 for a
    group without images). A group's AP is COCOeval's over its images; CrowdPose's code averages the raw
    precision array instead, which is the same for its one category. Like xtcocotools, predictions whose
    joints all score 0 are left out."""
    coco_dt = _detections(coco_gt, [d for d in dets if max(d["keypoints"][2::3]) > 0])
    every = _cocoeval(coco_gt, coco_dt, sigmas, ids).stats
    stats = [every[i] for i in (0, 1, 2, 5, 6, 7)]
    crowd = np.array([index[i] for i in ids])
    low, high = CROWD_BOUNDS
    for group in (crowd < low, (crowd >= low) & (crowd < high), crowd >= high):
        members = np.asarray(ids)[group].tolist()
        stats.append(np.round(_cocoeval(coco_gt, coco_dt, sigmas, members).stats[0], 4) if members else -1.0)
    return {name: float(v) for name, v in zip(CROWD_STAT_NAMES, stats, strict=True)}


def evaluate_keypoints(
    gt: str | Path | COCO,
    results: str | Path | list[dict],
    img_ids: list[int] | None = None,
    verbose: bool = False,
    sigmas: Sequence[float] = COCO17.sigmas,
    area: Area = "file",
    report: SkipReport | None = None,
    joints: Sequence[str] | None = None,
) -> dict[str, float]:
    """Compute COCO keypoint AP/AR with pycocotools after checking both inputs, or CrowdPose's metric for
    a CrowdPose file (one whose images carry a ``crowdIndex``).

    COCOeval's keypoint settings: at most 20 detections per image, OKS thresholds 0.50:0.05:0.95. OKS uses
    ``sigmas``, the schema's per-joint falloffs (COCO-17's by default); ground truth and results must have
    one keypoint per sigma. As in pycocotools, an area range with no ground truth in the evaluated images
    reports -1, with results or without (an empty list, which pycocotools' ``loadRes`` cannot load, scores
    as no detection does in COCOeval).

    Args:
        gt: the ground-truth annotation file or an already loaded :class:`COCO`.
        results: a results JSON file or a list of result records (see :func:`load_results`).
        img_ids: the images to evaluate, or None for every ground-truth image.
        verbose: let pycocotools print its progress and summary.
        sigmas: [K] per-joint OKS falloffs.
        area: the OKS scale (and area range) of a ground-truth person: ``file``, its ``area``; ``box``,
            0.53 x its box, for files without ``area``. A CrowdPose file always takes the box.
        report: counts the ignored ground-truth persons dropped for unusable values (see :func:`load_coco`).
        joints: the schema's joint names, checked against the file's category (see :func:`load_coco`).

    Returns:
        dict[str, float]: ``{name: value}`` for every name of ``STAT_NAMES`` (``CROWD_STAT_NAMES`` for a
        CrowdPose file), in that order; values in [0, 1], or -1.0 where an area range (a crowd group) has
        no ground truth.

    Raises:
        DataError: on an invalid ground-truth or results file or record.
        ValueError: when ``img_ids`` is empty or names images absent from the ground truth.
    """
    coco_gt = _as_coco(gt, len(sigmas), area, report, joints)
    index = _crowd_index(coco_gt.dataset, "ground truth")
    dets = load_results(results, coco_gt, len(sigmas))
    ids = _check_img_ids(img_ids, coco_gt) if img_ids is not None else None
    if area == "box" or index is not None:
        coco_gt = _with_box_area(coco_gt)
    with _quiet(verbose):
        if index is not None:
            return _crowdpose_stats(coco_gt, dets, sigmas, ids or sorted(coco_gt.getImgIds()), index)
        ev = _cocoeval(coco_gt, _detections(coco_gt, dets), sigmas, ids)
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}


def format_stats(stats: dict[str, float]) -> str:
    """Format metric values as a small Markdown table for logs and reports.

    Args:
        stats: ``{name: value}``, e.g. the output of :func:`evaluate_keypoints`.

    Returns:
        str: three lines (names, alignment rule, values to 3 decimals); -1 (no GT in that range) shows as n/a.
    """
    names = list(stats)
    values = ["n/a" if stats[n] < 0 else f"{stats[n]:.3f}" for n in names]
    widths = [max(len(n), len(v)) for n, v in zip(names, values, strict=True)]

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join((row(names), rule, row(values)))
