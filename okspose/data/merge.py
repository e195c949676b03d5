"""Several COCO sets of one split as one annotation file, so that training takes every person of them and an
evaluation scores each picture once (coco-mini and coco128 share a val picture)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from okspose.data.records import read_annotation_file
from okspose.fileio import write_coco


def merge_coco_sets(roots: Sequence[Path], split: str, out: Path) -> Path:
    """``OUT/person_keypoints_{split}_merged.json`` of every root's ``annotations/person_keypoints_{split}2017.json``
    (pictures in ``ROOT/{split}2017``): absolute picture paths, a picture listed in two sets taken from the first,
    annotations numbered anew."""
    images, annotations, categories = {}, [], None
    for root in roots:
        data = read_annotation_file(root / "annotations" / f"person_keypoints_{split}2017.json")
        categories = categories or data["categories"]
        new = {im["id"]: {**im, "file_name": str(root / f"{split}2017" / im["file_name"])} for im in data["images"]
               if im["id"] not in images}
        images.update(new)
        annotations += [a for a in data["annotations"] if a["image_id"] in new]
    annotations = [{**a, "id": i + 1} for i, a in enumerate(annotations)]
    return write_coco({"images": list(images.values()), "annotations": annotations, "categories": categories},
                      out / f"person_keypoints_{split}_merged.json")
