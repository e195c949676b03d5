"""A synthetic external data set in the original AI Challenger layout: the proxy for Team OKS's AIC data.

The same cartoon people as :mod:`okspose.data.synthetic`, labeled with AIC's 14 joints (head top and
neck from the 3D skeleton, no face joints), in other scenes than the COCO-like set: rooms instead of
outdoor clutter, smaller people (20-60 % of the picture height), up to six per picture, and whole
bodies tilted in the picture plane (leaning, falling). A model trained on the COCO-like set finds part
of it hard, which is what hard-example mining needs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from okspose.data.remap import remap_keypoints
from okspose.data.synthetic import MIN_VISIBLE_AREA, SceneParams, _split_key, _write_jpeg, render_scene
from okspose.fileio import save_json
from okspose.keypoints import AIC14, COCO17

AIC_LIKE = SceneParams(height_range=(0.2, 0.6), tilt_std=25.0, background="indoor")
COCO_TO_AIC_VISIBILITY = np.array([3, 2, 1])  # indexed by COCO's v: 0 unlabeled, 1 occluded, 2 visible


def aic_keypoints(coco17: np.ndarray, head_neck: np.ndarray) -> list[float]:
    """COCO-17 joints [17, 3] and (head top, neck) [2, 3] with COCO flags -> AIC's flat [x, y, v] * 14."""
    kp = remap_keypoints(coco17[None], COCO17, AIC14)[0]
    kp[12:] = head_neck
    kp[:, 2] = COCO_TO_AIC_VISIBILITY[kp[:, 2].astype(np.int64)]
    return [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(kp.ravel())]


def generate_synthetic_aic(root: str | Path, num_images: int = 100, seed: int = 0,
                           image_size: tuple[int, int] = (400, 300), max_people: int = 6) -> Path:
    """Write ``root/images/<40-hex id>.jpg`` and ``root/keypoint_annotations.json`` (AIC's original layout:
    boxes [x1, y1, x2, y2], keypoints with v = 1 visible, 2 occluded, 3 unlabeled). Deterministic per
    (seed, index) like the COCO-like set; returns the annotation path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    width, height = image_size
    records = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _split_key("aic"), index])
        scene = render_scene(rng, width, height, max_people, AIC_LIKE)
        image_id = hashlib.sha1(f"okspose-aic-{seed}-{index}".encode()).hexdigest()
        _write_jpeg(root / "images" / f"{image_id}.jpg", scene.image)
        boxes, keypoints = {}, {}
        for k, (kp, head_neck) in enumerate(zip(scene.keypoints, scene.head_neck)):
            mask = scene.label == k + 1
            if mask.sum() < MIN_VISIBLE_AREA:
                continue
            x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
            name = f"human{len(boxes) + 1}"
            boxes[name] = [float(x), float(y), float(x + w), float(y + h)]
            keypoints[name] = aic_keypoints(kp, head_neck)
        records.append({"image_id": image_id, "human_annotations": boxes, "keypoint_annotations": keypoints})
    return save_json(records, root / "keypoint_annotations.json")
