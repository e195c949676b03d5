"""The real COCO persons with pictures here (coco-mini + coco128, ../shared/data) as one COCO file per split,
for the benchmarks on real people."""

from __future__ import annotations

from pathlib import Path

from okspose.data.merge import merge_coco_sets

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETS = {"coco-mini": SHARED / "data" / "coco-mini", "coco128": SHARED / "data" / "coco128"}  # first wins an image
YOLOX_NANO = SHARED / "models" / "yolox_nano.onnx"


def set_annotations(name: str, split: str) -> Path:
    return SETS[name] / "annotations" / f"person_keypoints_{split}2017.json"


def merged(out: Path, split: str) -> Path:
    """Every set's ``split`` persons in one file in ``out`` (each picture once)."""
    return merge_coco_sets(list(SETS.values()), split, out)
