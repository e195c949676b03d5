"""Keypoints from one schema into another by joint name: how AI Challenger (or MPII) persons join COCO
training. A joint the source lacks comes out unlabeled (v = 0, so target weight 0 and no gradient); a
source joint the target lacks (AIC's head top and neck) is dropped."""

from __future__ import annotations

import numpy as np

from okspose.data.records import PersonRecords
from okspose.keypoints import KeypointSchema


def joint_map(src: KeypointSchema, dst: KeypointSchema) -> tuple[np.ndarray, np.ndarray]:
    """(source indices, target indices) of the joints both schemas name."""
    where = {name: j for j, name in enumerate(dst.joints)}
    pairs = [(i, where[name]) for i, name in enumerate(src.joints) if name in where]
    if not pairs:
        raise ValueError(f"schemas {src.name} and {dst.name} share no joint names")
    s, d = zip(*pairs)
    return np.array(s, np.int64), np.array(d, np.int64)


def remap_keypoints(keypoints: np.ndarray, src: KeypointSchema, dst: KeypointSchema) -> np.ndarray:
    """[N, src.K, 3] -> [N, dst.K, 3]; joints without a same-named source are (0, 0, 0)."""
    kps = np.asarray(keypoints, dtype=np.float64)
    if src == dst:
        return kps
    s, d = joint_map(src, dst)
    out = np.zeros((len(kps), dst.num_joints, 3))
    out[:, d] = kps[:, s]
    return out


def remap_records(records: PersonRecords, src: KeypointSchema, dst: KeypointSchema) -> PersonRecords:
    """The same persons with their keypoints in ``dst``'s joints."""
    return PersonRecords(records.image_paths, records.image_ids, records.ann_ids, records.boxes,
                         remap_keypoints(records.keypoints, src, dst), records.scores)


def remap_coco(data: dict, src: KeypointSchema, dst: KeypointSchema) -> dict:
    """A COCO dict whose person keypoints are in ``dst``'s joints (``num_keypoints`` and the category follow)."""
    anns = [a for a in data["annotations"] if a.get("keypoints")]
    kps = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), src.num_joints, 3)
    mapped = remap_keypoints(kps, src, dst)
    out_anns = []
    by_id = {id(a): k for k, a in enumerate(anns)}
    for a in data["annotations"]:
        k = by_id.get(id(a))
        if k is not None:
            a = {**a, "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(mapped[k].ravel())],
                 "num_keypoints": int((mapped[k, :, 2] > 0).sum())}
        out_anns.append(a)
    return {**data, "annotations": out_anns, "categories": [person_category(dst)]}


def person_category(schema: KeypointSchema) -> dict:
    """The COCO ``person`` category record for ``schema`` (1-based skeleton)."""
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(schema.joints),
            "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton]}
