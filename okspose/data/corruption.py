"""Team OKS's "false annotations", made on purpose: a chosen fraction of persons get wrong keypoints.

Two kinds, as on Team OKS's slide: ``swap`` (another person's pose in the same picture attached to this
person's box) and ``displace`` (the pose shifted off the body by 0.5-1 box sizes; joints pushed out of
the picture become unlabeled). Boxes, masks and areas stay right: only the keypoints lie. A record of
which annotation ids were corrupted, and how, is kept so a selection step can be scored against it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from okspose.data.records import read_annotation_file
from okspose.fileio import save_json

MAX_TRIES = 20  # directions tried before a displacement that keeps a joint in the picture is given up


def _displace(kp: np.ndarray, box: list[float], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray | None:
    """The pose moved 0.5-1 box sizes in a random direction; None when no joint stays in the picture."""
    w, h = size
    labeled = kp[:, 2] > 0
    for _ in range(MAX_TRIES):
        angle = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(0.5, 1.0) * max(box[2], box[3]) * np.array([np.cos(angle), np.sin(angle)])
        xy = kp[:, :2] + shift
        inside = labeled & (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
        if inside.sum() >= max(1, labeled.sum() // 2):
            out = np.zeros_like(kp)
            out[inside, :2] = np.round(xy[inside], 2)
            out[inside, 2] = kp[inside, 2]
            return out
    return None


def corrupt_annotations(coco: dict, fraction: float, seed: int = 0) -> tuple[dict, list[dict]]:
    """(a copy of ``coco`` with round(fraction * persons) persons' keypoints made wrong, the record).

    A person in a picture with another labeled person gets that person's pose (``swap``) half of the
    time, otherwise and in single-person pictures its own pose is displaced off the body.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    anns = [dict(a) for a in coco["annotations"]]
    people = [i for i, a in enumerate(anns) if any(a.get("keypoints", [])[2::3])]
    by_image: dict[int, list[int]] = defaultdict(list)
    for i in people:
        by_image[anns[i]["image_id"]].append(i)
    target = round(fraction * len(people))
    record: list[dict] = []
    original = {i: np.asarray(anns[i]["keypoints"], np.float64).reshape(-1, 3) for i in people}
    for i in rng.permutation(people):
        if len(record) == target:
            break
        a = anns[i]
        others = [j for j in by_image[a["image_id"]] if j != i]
        if others and rng.random() < 0.5:
            j = int(others[rng.integers(len(others))])
            kp, entry = original[j], {"kind": "swap", "source_id": anns[j]["id"]}
        else:
            kp = _displace(original[i], a["bbox"], sizes[a["image_id"]], rng)
            if kp is None:
                continue
            entry = {"kind": "displace"}
        a["keypoints"] = [float(v) if k % 3 < 2 else int(v) for k, v in enumerate(kp.ravel())]
        a["num_keypoints"] = int((kp[:, 2] > 0).sum())
        record.append({"id": a["id"], "image_id": a["image_id"], **entry})
    return {**coco, "annotations": anns}, sorted(record, key=lambda r: r["id"])


def corrupt_coco_file(ann_file: str | Path, fraction: float, seed: int = 0) -> tuple[Path, Path]:
    """Corrupt ``ann_file`` in place, keeping the clean labels next to it as ``<stem>_clean.json`` and the
    record as ``<stem>_corrupted.json``; returns (clean copy, record)."""
    ann_file = Path(ann_file)
    coco = read_annotation_file(ann_file)
    corrupted, record = corrupt_annotations(coco, fraction, seed)
    clean = save_json(coco, ann_file.with_name(f"{ann_file.stem}_clean.json"))
    rec = save_json({"source": ann_file.name, "fraction": fraction, "seed": seed, "corrupted": record},
                    ann_file.with_name(f"{ann_file.stem}_corrupted.json"))
    save_json(corrupted, ann_file)
    return clean, rec
