"""Keypoint schemas: joint names, left/right flip pairs, skeletons, OKS sigmas, and mappings onto COCO-17.

Every other module takes a :class:`KeypointSchema` instead of hard-coding COCO, so AI Challenger and
MPII data can be trained on jointly through :attr:`KeypointSchema.to_coco`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from okspose.errors import ConfigError


@dataclass(frozen=True)
class KeypointSchema:
    """A named set of joints. ``to_coco[i]`` is the COCO-17 index of joint ``i`` or -1 when COCO lacks it."""

    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    to_coco: tuple[int, ...]
    upper_body: tuple[int, ...] = field(default=())  # joints of the upper half, for half-body crops
    sigmas: tuple[float, ...] = field(default=())

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def flip_index(self) -> np.ndarray:
        """Permutation that maps each joint to its mirror image (identity for centre joints)."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def coco_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(source joint indices, COCO joint indices) of the joints shared with COCO-17."""
        src = np.array([i for i, c in enumerate(self.to_coco) if c >= 0], dtype=np.int64)
        dst = np.array([self.to_coco[i] for i in src], dtype=np.int64)
        return src, dst


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
    to_coco=tuple(range(17)),
    upper_body=tuple(range(11)),
    # Per-joint OKS falloff from the COCO keypoint evaluation (cocoeval.py).
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)

AIC14 = KeypointSchema(
    name="aic14",
    joints=(
        "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "head_top", "neck",
    ),
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)),
    skeleton=(
        (12, 13), (13, 0), (13, 3), (0, 1), (1, 2), (3, 4), (4, 5), (0, 6), (3, 9), (6, 9),
        (6, 7), (7, 8), (9, 10), (10, 11),
    ),
    to_coco=(6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, -1, -1),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
)

MPII16 = KeypointSchema(
    name="mpii16",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
    to_coco=(16, 14, 12, 11, 13, 15, -1, -1, -1, -1, 10, 8, 6, 5, 7, 9),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
)

SCHEMAS: dict[str, KeypointSchema] = {s.name: s for s in (COCO17, AIC14, MPII16)}


def get_schema(name: str) -> KeypointSchema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ConfigError(f"unknown keypoint schema {name!r}; choose from {sorted(SCHEMAS)}") from None
