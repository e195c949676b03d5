"""Keypoint schemas: joint names, left/right flip pairs, skeletons, half-body joints and OKS sigmas.

Every other module takes a :class:`KeypointSchema` instead of hard-coding COCO, so AI Challenger, MPII and
CrowdPose data can be trained on jointly, and OKS-NMS, evaluation and pictures work for any of them. Joints
are matched across schemas by name (``head_top`` everywhere: :func:`okspose.data.remap.joint_map`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from okspose.errors import ConfigError, DataError


@dataclass(frozen=True)
class KeypointSchema:
    """A named set of joints, with what flipping, drawing, half-body crops and OKS need to know of them.

    ``sigmas`` are the per-joint OKS falloffs (kappa_k = 2 sigma_k), used by OKS-NMS and the metric.
    The constructor checks that the pieces fit together and raises :class:`ConfigError` otherwise, since a
    custom schema comes from the user's config.
    """

    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body: tuple[int, ...] = field(default=())  # joints of the upper half, for half-body crops
    sigmas: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        k, where = len(self.joints), f"keypoint schema {self.name!r}"
        if k == 0 or len(set(self.joints)) != k:
            raise ConfigError(f"{where}: joint names must be non-empty and unique, got {list(self.joints)}")
        if len(self.sigmas) != k or not all(s > 0 for s in self.sigmas):
            raise ConfigError(f"{where}: needs {k} positive OKS sigmas (one per joint), got {list(self.sigmas)}")
        used = [i for pair in (*self.flip_pairs, *self.skeleton) for i in pair] + list(self.upper_body)
        if any(not 0 <= i < k for i in used):
            raise ConfigError(f"{where}: joint index out of range 0..{k - 1} in flip pairs, skeleton or upper body")
        flipped = [i for pair in self.flip_pairs for i in pair]
        if len(set(flipped)) != len(flipped) or any(a == b for a, b in self.flip_pairs):
            raise ConfigError(f"{where}: each joint may appear in at most one flip pair, never with itself")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def flip_index(self) -> np.ndarray:
        """Permutation that maps each joint to its mirror image (identity for centre joints)."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


COCO17 = KeypointSchema(
    name="coco17",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
        (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    upper_body=tuple(range(11)),
    # Per-joint OKS falloff from the COCO keypoint evaluation (pycocotools cocoeval.py).
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)


_AIC_JOINTS = (
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck",
)
AIC14 = KeypointSchema(
    name="aic14",
    joints=_AIC_JOINTS,
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)),
    skeleton=(
        (12, 13), (13, 0), (13, 3), (0, 1), (1, 2), (3, 4), (4, 5), (0, 6), (3, 9), (6, 9),
        (6, 7), (7, 8), (9, 10), (10, 11),
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
    # The official AI Challenger evaluation's per-joint deltas halved (delta = 2 sigma): AI_Challenger_2017
    # Evaluation/keypoint_eval/keypoint_eval.py, as listed in mmpose configs/_base_/datasets/aic.py.
    sigmas=(0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
            0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173),
)

_MPII_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)
MPII16 = KeypointSchema(
    name="mpii16",
    joints=_MPII_JOINTS,
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    # MPII has no official OKS (its metric is PCKh). Limbs take COCO's sigma of the same joint; the centre
    # joints COCO lacks take what CrowdPose's evaluation uses for its head top and neck (0.079, for
    # thorax, upper neck and head top) and the hips' 0.107 for the pelvis, the hips' midpoint. (mmpose's
    # mpii.py lists another "adapted from COCO" set, with the nose's 0.026 for all four centre joints,
    # far stricter than their annotation spread, and 0.179 for the shoulders, apparently a typo of 0.079.)
    sigmas=(0.089, 0.087, 0.107, 0.107, 0.087, 0.089, 0.107, 0.079, 0.079, 0.079,
            0.062, 0.072, 0.079, 0.079, 0.072, 0.062),
)

_CROWDPOSE_JOINTS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head_top", "neck",
)
CROWDPOSE14 = KeypointSchema(
    name="crowdpose14",
    joints=_CROWDPOSE_JOINTS,  # CrowdPose calls the head joint "top_head"; named as AIC's here
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3),
        (2, 4), (3, 5), (12, 13), (1, 13), (0, 13),
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
    # The official CrowdPose evaluation (crowdposetools cocoeval.py, also xtcocotools and mmpose
    # configs/_base_/datasets/crowdpose.py): COCO's values for the limbs, 0.079 for head top and neck.
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
)

SCHEMAS: dict[str, KeypointSchema] = {s.name: s for s in (COCO17, AIC14, MPII16, CROWDPOSE14)}


def get_schema(name: str) -> KeypointSchema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ConfigError(f"unknown keypoint schema {name!r}; choose from {sorted(SCHEMAS)} "
                          "or 'custom' with data.custom_schema") from None


# Other spellings of one joint across the datasets' files (CrowdPose writes "top_head")
_JOINT_ALIASES = {"top_head": "head_top"}


def joint_key(name: str) -> str:
    """A joint name as files are compared by: lower case, words joined by "_" (AIC's "Head top" is
    ``head_top``), with the known aliases."""
    key = "_".join(name.lower().replace("-", " ").split())
    return _JOINT_ALIASES.get(key, key)


def check_category_joints(categories: Sequence[Any], joints: Sequence[str], source: str) -> None:
    """Stop when a category of a COCO-format file names its keypoints otherwise than ``joints``, the
    schema they are read as: a PoseTrack18 file's head_bottom and head_top in COCO's eye slots would
    otherwise be trained and scored as eyes, with the eyes' sigmas. A category without names passes.

    Raises:
        DataError: naming the file, the category and the slots that differ, with the built-in schema the
            file's names are, if one is.
    """
    want = [joint_key(j) for j in joints]
    for cat in categories:
        names = cat.get("keypoints") if isinstance(cat, dict) else None
        if names is None:
            continue
        where = f"{source}: category {cat.get('id')!r}"
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{where}: 'keypoints' must be a list of joint names, got {str(names)[:80]}")
        got = [joint_key(n) for n in names]
        if got == want:
            continue
        same = [s.name for s in SCHEMAS.values() if [joint_key(j) for j in s.joints] == got]
        if len(got) != len(want):
            diff = f"{len(got)} joints where the schema read has {len(want)}"
        elif sorted(got) == sorted(want):
            diff = "the schema's joints in another order"
        else:
            slots = [f"{i}: {n!r} (schema: {joints[i]!r})" for i, n in enumerate(names) if joint_key(n) != want[i]]
            diff = "slot " + ", ".join(slots[:4]) + (f" and {len(slots) - 4} more" if len(slots) > 4 else "")
        hint = f"; they are the {same[0]} schema's (--schema {same[0]}, data.schema={same[0]})" if same else ""
        raise DataError(f"{where} names its keypoints otherwise than the schema read: {diff}{hint}")


_CUSTOM_KEYS = {"name", "joints", "flip_pairs", "skeleton", "sigmas", "upper_body"}


def schema_from_mapping(spec: dict[str, Any], where: str = "data.custom_schema") -> KeypointSchema:
    """A schema from a config mapping that names joints instead of numbering them::

        joints: [head, left_hand, right_hand]
        flip_pairs: [[left_hand, right_hand]]
        skeleton: [[head, left_hand], [head, right_hand]]
        sigmas: [0.05, 0.06, 0.06]
        upper_body: [head]          # optional
        name: hands3                # optional, default "custom"

    Joints named as in COCO map onto COCO-17 by name. Unknown keys or joint names raise ConfigError.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with joints, flip_pairs, skeleton and sigmas, got {spec!r}")
    unknown = set(spec) - _CUSTOM_KEYS
    missing = {"joints", "sigmas"} - set(spec)
    if unknown or missing:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}, missing {sorted(missing)}; "
                          f"known: {sorted(_CUSTOM_KEYS)}")
    if not isinstance(spec["joints"], list | tuple) or not spec["joints"]:
        raise ConfigError(f"{where}.joints: expected a list of joint names, got {spec['joints']!r}")
    joints = tuple(str(j) for j in spec["joints"])

    def index(name: Any, key: str) -> int:
        if name not in joints:
            raise ConfigError(f"{where}.{key}: unknown joint {name!r}; joints are {list(joints)}")
        return joints.index(name)

    def pairs(key: str) -> tuple[tuple[int, int], ...]:
        items = spec.get(key) or []
        if not all(isinstance(p, list | tuple) and len(p) == 2 for p in items):
            raise ConfigError(f"{where}.{key}: expected a list of [joint, joint] pairs, got {items!r}")
        return tuple((index(a, key), index(b, key)) for a, b in items)

    try:
        sigmas = tuple(float(s) for s in spec["sigmas"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.sigmas: expected a list of numbers, got {spec['sigmas']!r}") from None
    return KeypointSchema(
        name=str(spec.get("name", "custom")),
        joints=joints,
        flip_pairs=pairs("flip_pairs"),
        skeleton=pairs("skeleton"),
        upper_body=tuple(index(j, "upper_body") for j in spec.get("upper_body") or []),
        sigmas=sigmas,
    )


# The OKS scale of a person known only by its box (no segmentation area: AI Challenger, detections, files
# without ``area``): 0.53 x width x height, CrowdPose's and xtcocotools' rule, about what COCO's own
# segmentation areas are of their boxes. Mining, OKS-NMS and the metric all take it from here, so that
# "OKS < t" means the same in each; the full box would make every OKS higher (AI Challenger's own
# evaluator uses it, so its OKS is not COCO's).
BOX_AREA_SCALE = 0.53


def box_oks_area(boxes_xywh: np.ndarray) -> np.ndarray:
    """OKS scale [N] of box-only persons from their boxes [N, 4] (xywh): ``BOX_AREA_SCALE`` x w x h."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    return boxes[:, 2] * boxes[:, 3] * BOX_AREA_SCALE
