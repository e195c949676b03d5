"""The smallest config really learns: it overfits 8 real coco-mini persons to AP >= 0.90 (GT boxes)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from conftest import CONFIGS

from okspose.cli import main
from okspose.evaluation import evaluate_keypoints


def _eight_persons(coco_mini: Path, out: Path) -> Path:
    """Whole images (every person in them annotated, 8+ joints each) until 8 persons are collected,
    so the evaluation has no unposed GT person."""
    data = json.loads((coco_mini / "annotations/person_keypoints_train2017.json").read_text())
    per_image = defaultdict(list)
    for ann in data["annotations"]:
        per_image[ann["image_id"]].append(ann)
    images, count = [], 0
    for image in data["images"]:
        anns = per_image[image["id"]]
        if not anns or any(a["iscrowd"] or a["num_keypoints"] < 8 for a in anns) or count + len(anns) > 8:
            continue
        images.append(image)
        count += len(anns)
        if count == 8:
            break
    assert count == 8
    ids = {im["id"] for im in images}
    out.write_text(json.dumps(dict(data, images=images,
                                   annotations=[a for a in data["annotations"] if a["image_id"] in ids])))
    return out


def test_tiny_config_overfits_eight_real_persons(coco_mini, tmp_path, capsys):
    ann = _eight_persons(coco_mini, tmp_path / "eight.json")
    overrides = [f"data.root={coco_mini}", f"data.train_ann={ann}", f"data.val_ann={ann}",
                 "data.val_images=train2017", f"train.output_dir={tmp_path / 'run'}", "train.progress=false"]
    assert main(["train", str(CONFIGS / "coco_mini_tiny.yaml"), *overrides]) == 0
    results = tmp_path / "results.json"
    assert main(["test", str(CONFIGS / "coco_mini_tiny.yaml"), *overrides,
                 "--checkpoint", str(tmp_path / "run" / "checkpoint.pth"), "--boxes", "gt",
                 "--out", str(results), "--vis", str(tmp_path / "vis")]) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed
    stats = evaluate_keypoints(ann, results)
    assert stats["AP"] >= 0.90, stats
    assert len(json.loads(results.read_text())) == 8
    assert (tmp_path / "vis" / "overview.jpg").exists()
