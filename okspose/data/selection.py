"""Data selection: drop persons whose labeled keypoints sit far from their box centre.

Team OKS removed COCO's "false annotations" (a pose attached to the wrong box, a pose displaced off the
body) with one rule per person: the keypoint-box similarity

    ks = exp(-||c_box - c_kps||^2 / (2 s^2 A))

(c_box the box centre, c_kps the mean of the n labeled keypoints, A an area) is compared with a line in
the (ks, n) plane through (ks0, n0) = (0.45, 1) and (ks1, n1) = (0.65, 17); a person is kept when its ks
lies right of the line, ``ks > ks0 + (n - n0) (ks1 - ks0) / (n1 - n0)``, so a person with many labeled
joints must agree more closely with its box. The slide writes ks without s and over the raw box area;
taken literally (``SelectionRule.literal()``) it drops almost nothing.

The defaults follow the public implementation of the rule (HRNet's ``select_data`` and ``_box2cs``):

* s = 0.2; a keypoint is labeled when v > 0; a person with no labeled keypoint is never kept;
* the box is the annotation's xywh box clipped to the image (okspose's loader: x0 = max(x, 0),
  x1 = min(x + w, W)), then HRNet's inclusive-pixel size w - 1, h - 1 (floored at 0). For a box that
  starts inside the image this is exactly HRNet's ``clean_bbox`` (all COCO person boxes do);
* c_box = (x0 + w/2, y0 + h/2) of that box;
* area ``padded`` (default): the box grown along one side to the network input's aspect ratio (w / h,
  0.75 for HRNet's 192x256 input) and then by the crop padding 1.25 on both sides, A = w' h' — HRNet's
  ``scale[0] * scale[1] * 200**2``; area ``box``: A = w h of the box itself. Training
  (``data.selection``) and ``okspose select-data`` take the aspect ratio and padding from a training
  config (:meth:`SelectionRule.from_config`; okspose's 256x256 inputs give aspect 1).

Everything is one array expression over all persons, so the 149,813 COCO train persons take well under
a second once parsed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from okspose.config import DataConfig
from okspose.data.records import PersonRecords
from okspose.errors import DataError

AreaKind = Literal["padded", "box"]


@dataclass(frozen=True)
class SelectionRule:
    """The rule's settings; the defaults are the public implementation's (see the module docstring)."""

    s: float = 0.2
    area: AreaKind = "padded"
    line: tuple[float, float, float, float] = (0.45, 1.0, 0.65, 17.0)  # (ks0, n0, ks1, n1)
    aspect_ratio: float = 0.75  # input width / height, for the padded area
    padding: float = 1.25  # crop enlargement, for the padded area

    @classmethod
    def literal(cls) -> SelectionRule:
        """The slide's formula taken literally: no s, the raw box area."""
        return cls(s=1.0, area="box")

    @classmethod
    def from_config(cls, data: DataConfig) -> SelectionRule:
        """The rule ``data.selection`` applies in training, at the config's input aspect ratio and padding."""
        w, h = data.input_size
        return cls(data.selection_s, data.selection_area, tuple(data.selection_line), w / h, data.padding)

    def to_dict(self) -> dict:
        return asdict(self)


def box_center_area(boxes: np.ndarray, rule: SelectionRule) -> tuple[np.ndarray, np.ndarray]:
    """Box centres [N, 2] and areas [N] under the rule's conventions; ``boxes`` [N, 4] xywh, already
    clipped to the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = np.maximum(boxes[:, 2:] - 1.0, 0.0)  # HRNet's inclusive-pixel box size
    centers = boxes[:, :2] + wh / 2.0
    w, h = wh[:, 0], wh[:, 1]
    if rule.area == "box":
        return centers, w * h
    a = rule.aspect_ratio
    w_fixed = np.where(w > a * h, w, h * a)
    h_fixed = np.where(w > a * h, w / a, h)
    return centers, w_fixed * h_fixed * rule.padding**2


def keypoint_box_similarity(
    boxes: np.ndarray, keypoints: np.ndarray, rule: SelectionRule
) -> tuple[np.ndarray, np.ndarray]:
    """(ks [N], n [N]) of persons with ``boxes`` [N, 4] xywh (clipped) and ``keypoints`` [N, K, 3].

    ks is 0 for a person without labeled keypoints or with a zero area (nothing to trust).
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    labeled = kps[..., 2] > 0
    n = labeled.sum(1)
    sums = (kps[..., :2] * labeled[..., None]).sum(1)
    c_kps = sums / np.maximum(n, 1)[:, None]
    centers, area = box_center_area(boxes, rule)
    d2 = ((centers - c_kps) ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ks = np.exp(-d2 / (2.0 * rule.s**2 * area))
    ks = np.where((n > 0) & (area > 0), ks, 0.0)
    return ks, n


def line_threshold(n: np.ndarray, rule: SelectionRule) -> np.ndarray:
    """The line's ks at ``n`` labeled keypoints."""
    ks0, n0, ks1, n1 = rule.line
    return ks0 + (np.asarray(n, dtype=np.float64) - n0) * (ks1 - ks0) / (n1 - n0)


def keep_mask(ks: np.ndarray, n: np.ndarray, rule: SelectionRule) -> np.ndarray:
    """True for the persons right of the line (kept); a person with no labeled keypoint is dropped."""
    return (np.asarray(ks) > line_threshold(n, rule)) & (np.asarray(n) > 0)


def select_records(records: PersonRecords, rule: SelectionRule) -> PersonRecords:
    """The records the rule keeps (records' boxes are already clipped to their images)."""
    ks, n = keypoint_box_similarity(records.boxes, records.keypoints, rule)
    return records.subset(np.flatnonzero(keep_mask(ks, n, rule)))


@dataclass
class CocoSelection:
    """The rule applied to a COCO dict: per judged person its annotation index, ks, n and verdict."""

    index: np.ndarray  # [P] position in data["annotations"] of each judged person
    ks: np.ndarray  # [P]
    n: np.ndarray  # [P] labeled keypoints
    keep: np.ndarray  # [P] bool
    boxes: np.ndarray  # [P, 4] clipped xywh
    keypoints: np.ndarray  # [P, K, 3]
    not_judged: int  # crowd regions, other categories, persons without keypoints: passed through

    def by_n(self, num_joints: int) -> dict[int, dict[str, int]]:
        """Kept and dropped persons for each n = 1..num_joints."""
        kept = np.bincount(self.n[self.keep], minlength=num_joints + 1)
        dropped = np.bincount(self.n[~self.keep], minlength=num_joints + 1)
        return {k: {"kept": int(kept[k]), "dropped": int(dropped[k])} for k in range(1, num_joints + 1)}


def _judged_arrays(data: dict, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(annotation index, clipped boxes, keypoints [P, K, 3], image sizes) of the non-crowd persons
    with at least one labeled keypoint; malformed ones raise a DataError naming the record."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    anns = data["annotations"]
    index = [i for i, a in enumerate(anns)
             if not a.get("iscrowd", 0) and a.get("category_id", 1) == 1
             and any(a.get("keypoints", [])[2::3])]
    if not index:
        return np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros((0, 0, 3)), np.zeros((0, 2))
    lengths = {len(anns[i]["keypoints"]) for i in index}
    if len(lengths) != 1 or lengths.pop() % 3:
        raise DataError(f"{source}: annotations have keypoint lists of different lengths or not x,y,v triples")
    missing = [i for i in index if anns[i]["image_id"] not in sizes]
    if missing:
        raise DataError(f"{source}: annotation {anns[missing[0]].get('id')}: image_id not among the images")
    try:
        kps = np.array([anns[i]["keypoints"] for i in index], dtype=np.float64)
        boxes = np.array([anns[i]["bbox"] for i in index], dtype=np.float64).reshape(len(index), 4)
    except (KeyError, ValueError, TypeError) as err:
        raise DataError(f"{source}: malformed bbox or keypoints ({err})") from None
    wh = np.array([sizes[anns[i]["image_id"]] for i in index], dtype=np.float64)
    x0y0 = np.maximum(boxes[:, :2], 0.0)
    x1y1 = np.minimum(boxes[:, :2] + boxes[:, 2:], wh)
    clipped = np.concatenate([x0y0, np.maximum(x1y1 - x0y0, 0.0)], axis=1)
    return np.array(index, np.int64), clipped, kps.reshape(len(index), -1, 3), wh


def select_coco(data: dict, rule: SelectionRule, source: str = "annotations") -> tuple[dict, CocoSelection]:
    """(the COCO dict with the dropped persons removed, the per-person verdicts).

    Only non-crowd persons with at least one labeled keypoint are judged; every other annotation and
    every image record is passed through unchanged, so the result has the same layout.
    """
    index, boxes, kps, _ = _judged_arrays(data, source)
    ks, n = keypoint_box_similarity(boxes, kps, rule)
    keep = keep_mask(ks, n, rule)
    dropped = set(index[~keep].tolist())
    filtered = {**data, "annotations": [a for i, a in enumerate(data["annotations"]) if i not in dropped]}
    sel = CocoSelection(index, ks, n, keep, boxes, kps, len(data["annotations"]) - len(index))
    return filtered, sel
