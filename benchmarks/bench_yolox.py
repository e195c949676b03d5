"""YOLOX-nano (../shared/models/yolox_nano.onnx) as okspose's person detector (``--detector yolox``) on the
real val pictures here: person box AP (pycocotools ``bbox`` over every labelled person) and the share of
the persons with keypoints (the ones the pose table scores) that a box finds at IoU >= 0.5, on coco-mini
val, coco128 val and both (each image once), with okspose's default box settings (test.det_top_k 20,
test.det_score_floor 0) and at score >= 0.3. Writes each set's boxes as a COCO results file.

    python benchmarks/bench_yolox.py [--out work/bench_yolox]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from datetime import date
from pathlib import Path

import numpy as np
from bench_startup import bf16_support, cpu_flags
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from real_sets import SETS, YOLOX_NANO, merged, set_annotations

from okspose.data.records import read_image
from okspose.fileio import read_json, save_json
from okspose.inference.detections import DEFAULT_SCORE_FLOOR, DEFAULT_TOP_K
from okspose.inference.yolox import YoloxDetector


def detect_file(ann: Path, images: Path | None, out: Path, weights: Path = YOLOX_NANO) -> Path:
    """YOLOX's person boxes on every picture of ``ann`` (pictures under ``images``, or absolute paths) as a
    COCO results file at ``out``, with okspose's default top-k and score floor."""
    detector = YoloxDetector(weights, top_k=DEFAULT_TOP_K, score_floor=DEFAULT_SCORE_FLOOR)
    results = []
    for im in read_json(ann, "annotation")["images"]:
        boxes, scores = detector.detect([read_image(str(Path(images or "") / im["file_name"]))])[0]
        results += [{"image_id": im["id"], "category_id": 1, "bbox": [round(v, 2) for v in b], "score": float(s)}
                    for b, s in zip(boxes.tolist(), scores)]
    return save_json(results, out)


def box_metrics(ann: Path, dets: Path) -> dict[str, float]:
    """Person box AP / AP50 (pycocotools bbox) and recall at IoU 0.5 of the persons with keypoints."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        res = gt.loadRes(str(dets))
        ev = COCOeval(gt, res, "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    found, persons = {0.0: 0, 0.3: 0}, 0
    for image_id in gt.getImgIds():
        truth = [a["bbox"] for a in gt.loadAnns(gt.getAnnIds(imgIds=image_id, iscrowd=False))
                 if a.get("num_keypoints", 0) > 0]
        boxes = [(d["bbox"], d["score"]) for d in res.imgToAnns.get(image_id, [])] if truth else []
        persons += len(truth)
        for floor in found:
            kept = [b for b, s in boxes if s >= floor]
            if kept:
                found[floor] += int((np.asarray(mask_utils.iou(truth, kept, [0] * len(kept))).max(1) >= 0.5).sum())
    return {"AP": ev.stats[0], "AP50": ev.stats[1], "persons": persons,
            **{f"recall50_score{floor}": n / persons for floor, n in found.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("work/bench_yolox"))
    args = parser.parse_args()
    out = args.out.resolve()
    model, flags = cpu_flags()
    print(f"CPU: {model}, native bf16: {bf16_support(flags)}; {date.today()}; {YOLOX_NANO.name}")
    sets = {name: (set_annotations(name, "val"), root / "val2017") for name, root in SETS.items()}
    sets["both (each image once)"] = (merged(out, "val"), None)
    rows = {}
    for name, (ann, images) in sets.items():
        start = time.perf_counter()
        dets = detect_file(ann, images, out / f"yolox_{name.split()[0]}_val.json")
        seconds = time.perf_counter() - start
        rows[name] = {**box_metrics(ann, dets), "images": len(read_json(ann, "annotation")["images"]),
                      "seconds": seconds}
    print("\n| val set | images | persons with keypoints | person box AP | box AP50 | recall@0.5 (all boxes) | "
          "recall@0.5 (score >= 0.3) | s/image |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['images']} | {r['persons']} | {100 * r['AP']:.1f} | {100 * r['AP50']:.1f} | "
              f"{100 * r['recall50_score0.0']:.1f} | {100 * r['recall50_score0.3']:.1f} | "
              f"{r['seconds'] / r['images']:.3f} |")
    save_json({"cpu": model, "rows": rows}, out / "results.json")


if __name__ == "__main__":
    main()
