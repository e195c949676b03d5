"""The real COCO persons with pictures here (coco-mini + coco128, ../shared/data) as one COCO file per split,
for the benchmarks on real people."""

from __future__ import annotations

from pathlib import Path

from okspose.fileio import read_json, write_coco

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETS = {"coco-mini": SHARED / "data" / "coco-mini", "coco128": SHARED / "data" / "coco128"}  # first wins an image
YOLOX_NANO = SHARED / "models" / "yolox_nano.onnx"


def set_annotations(name: str, split: str) -> Path:
    return SETS[name] / "annotations" / f"person_keypoints_{split}2017.json"


def merged(out: Path, split: str) -> Path:
    """One COCO file of every set's ``split`` persons (each once per epoch in training): absolute picture
    paths, an image listed in two sets taken from the first, annotations numbered anew."""
    images, annotations, categories = {}, [], None
    for name, root in SETS.items():
        data = read_json(set_annotations(name, split), "annotation")
        categories = categories or data["categories"]
        new = {im["id"]: {**im, "file_name": str(root / f"{split}2017" / im["file_name"])} for im in data["images"]
               if im["id"] not in images}
        images.update(new)
        annotations += [a for a in data["annotations"] if a["image_id"] in new]
    annotations = [{**a, "id": i + 1} for i, a in enumerate(annotations)]
    return write_coco({"images": list(images.values()), "annotations": annotations, "categories": categories},
                      out / f"person_keypoints_{split}_merged.json")
