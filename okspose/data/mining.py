"""Hard-example mining as plain functions: each person's OKS against its own label over the joints two
schemas share, the hardest persons by an OKS threshold or a fraction, and the mined subset written back
in the layout it was read from (AI Challenger's original layout, or COCO).

Team OKS added AI Challenger persons that a COCO-trained model gets wrong. "Wrong" is measured the way
COCO scores a pose: OKS = mean over the labeled joints of exp(-d^2 / (2 A (2 sigma)^2)), with the COCO
sigmas of the shared joints and A the person's segmentation area, or for a person without one (all of AI
Challenger) the box-only scale :func:`okspose.keypoints.box_oks_area` that the metric and OKS-NMS use too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from okspose.config import Config
from okspose.data.aic import read_aic
from okspose.data.records import OnError, PersonRecords, SkipReport, records_from_coco
from okspose.data.remap import joint_map
from okspose.errors import DataError
from okspose.fileio import read_json
from okspose.keypoints import AIC14, COCO17, SCHEMAS, KeypointSchema, box_oks_area, get_schema

_EPS = np.spacing(1)  # pycocotools' guard against a zero area


def label_oks(pred: np.ndarray, labels: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS [N] of predictions [N, K, 2+] against labels [N, K, 3] of the same persons, as pycocotools
    computes it for a matched pair (the mean over the joints labeled v > 0); NaN for a person without one."""
    pred, labels = np.asarray(pred, np.float64), np.asarray(labels, np.float64)
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    d2 = ((pred[..., :2] - labels[..., :2]) ** 2).sum(-1)
    terms = np.exp(-d2 / var / (np.asarray(areas, np.float64)[:, None] + _EPS) / 2.0)
    labeled = labels[..., 2] > 0
    count = labeled.sum(1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (terms * labeled).sum(1) / count, np.nan)


def shared_joint_oks(pred: np.ndarray, pred_schema: KeypointSchema, labels: np.ndarray,
                     label_schema: KeypointSchema, areas: np.ndarray) -> np.ndarray:
    """:func:`label_oks` over the joints both schemas name, with the predicting schema's sigmas
    (COCO's for a COCO-trained model)."""
    src, dst = joint_map(label_schema, pred_schema)
    if not pred_schema.sigmas:
        raise ValueError(f"schema {pred_schema.name} has no OKS sigmas")
    sigmas = np.asarray(pred_schema.sigmas)[dst]
    return label_oks(np.asarray(pred)[:, dst], np.asarray(labels)[:, src], areas, sigmas)


def hardest(oks: np.ndarray, oks_thr: float | None = None, fraction: float | None = None) -> np.ndarray:
    """Mask of the mined persons: OKS below ``oks_thr``, or the lowest ``fraction`` (rounded up; ties
    broken by position). Persons with NaN OKS (nothing shared to judge) are never mined."""
    if (oks_thr is None) == (fraction is None):
        raise ValueError("give exactly one of oks_thr and fraction")
    oks = np.asarray(oks, np.float64)
    judged = ~np.isnan(oks)
    if oks_thr is not None:
        return judged & (np.nan_to_num(oks, nan=np.inf) < oks_thr)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    order = np.argsort(np.where(judged, oks, np.inf), kind="stable")[: math.ceil(fraction * judged.sum())]
    mask = np.zeros(len(oks), dtype=bool)
    mask[order] = True
    return mask


@dataclass
class ExternalSet:
    """A set of labeled persons as read for mining: its records (``ann_ids`` index ``data``'s annotations),
    the raw file as read (to write a subset in the same layout), and how to write it."""

    path: Path
    layout: str  # "aic" (original layout) or "coco"
    schema: KeypointSchema
    raw: object  # the parsed file
    data: dict  # as a COCO dict (AIC: with aic_image_id / aic_human per image / person)
    records: PersonRecords
    areas: np.ndarray  # [N] OKS scale per record: the annotation's area, else box_oks_area (all of AIC)
    from_box: np.ndarray  # [N] bool: the scale is box_oks_area (no segmentation area)


def _guess_layout(raw: object, path: Path) -> str:
    if isinstance(raw, list):
        return "aic"
    if isinstance(raw, dict) and isinstance(raw.get("annotations"), list):
        return "coco"
    raise DataError(f"{path}: neither AI Challenger's original layout (a list of records) nor a COCO file")


def _coco_schema(data: dict, path: Path) -> KeypointSchema:
    """The schema of a COCO-layout file, from its keypoint count (17: COCO, 14: COCO-style AIC)."""
    lengths = {len(a["keypoints"]) for a in data["annotations"] if isinstance(a, dict) and a.get("keypoints")}
    if len(lengths) != 1:
        raise DataError(f"{path}: persons with keypoint lists of {sorted(lengths) or 'no'} lengths")
    n = lengths.pop() // 3
    schema = next((s for s in SCHEMAS.values() if s.num_joints == n), None)
    if schema is None:
        raise DataError(f"{path}: {n} keypoints per person fits no known schema ({sorted(SCHEMAS)})")
    return schema


def read_external_set(path: str | Path, image_dir: str | Path, schema: str = "", on_error: OnError = "raise",
                      report: SkipReport | None = None) -> ExternalSet:
    """Read a labeled set for mining, whatever its layout: AIC's original layout (a list of records) or
    COCO (17 joints: COCO, 14: COCO-style AIC; ``schema`` names it otherwise)."""
    path, report = Path(path), report if report is not None else SkipReport()
    raw = read_json(path, "annotation")
    layout = _guess_layout(raw, path)
    if layout == "aic":
        data, sch = read_aic(path, "aic", image_dir, on_error, report), AIC14
    else:
        data = raw
        sch = get_schema(schema) if schema else _coco_schema(data, path)
    records = records_from_coco(data, path, image_dir, sch, on_error, report)
    by_id = {a.get("id"): a for a in data["annotations"] if isinstance(a, dict)}
    areas = np.array([by_id[i].get("area") or 0.0 for i in records.ann_ids.tolist()], dtype=np.float64)
    from_box = (areas <= 0) | (layout == "aic")  # AIC's area is read_aic's box_oks_area
    areas = np.where(from_box, box_oks_area(records.boxes), areas)
    return ExternalSet(path, layout, sch, raw, data, records, areas, from_box)


def subset_in_layout(ext: ExternalSet, keep_ann_ids: np.ndarray) -> object:
    """The persons ``keep_ann_ids`` of ``ext`` in its own layout; pictures left without a person go."""
    keep = set(np.asarray(keep_ann_ids).tolist())
    anns = [a for a in ext.data["annotations"] if isinstance(a, dict) and a.get("id") in keep]
    if ext.layout == "coco":
        images = {a["image_id"] for a in anns}
        return {**ext.raw, "images": [im for im in ext.raw["images"] if im["id"] in images], "annotations": anns}
    aic_ids = {im["id"]: im["aic_image_id"] for im in ext.data["images"]}
    humans: dict[str, set[str]] = {}
    for a in anns:
        humans.setdefault(aic_ids[a["image_id"]], set()).add(a["aic_human"])
    out = []
    for rec in ext.raw:
        names = humans.get(rec["image_id"])
        if names:
            out.append({**rec, "human_annotations": {k: v for k, v in rec["human_annotations"].items() if k in names},
                        "keypoint_annotations": {k: v for k, v in rec["keypoint_annotations"].items()
                                                 if k in names}})
    return out


def external_set_from_config(cfg: Config, name: str = "") -> tuple[Path, Path, str]:
    """(annotation file, image folder, schema) of the external set a config lists in ``data.datasets``:
    the set named ``name``, or the only set that is not COCO-17."""
    sets = cfg.data.datasets
    if name:
        chosen = [ds for ds in sets if ds.name == name]
        if not chosen:
            raise DataError(f"data.datasets has no set named {name!r} (sets: {[ds.name for ds in sets]})")
    else:
        chosen = [ds for ds in sets if ds.format != "coco" or (ds.schema or COCO17.name) != COCO17.name]
        if len(chosen) != 1:
            raise DataError(f"the config lists {len(chosen)} external (non-COCO-17) sets in data.datasets: "
                            f"name the one to mine with --dataset ({[ds.name for ds in sets]})")
    ds = chosen[0]
    return Path(ds.root) / ds.ann, Path(ds.root) / ds.images, ds.schema
