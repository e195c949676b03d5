"""The smallest config really learns: it overfits 8 real coco-mini persons to AP >= 0.90 (GT boxes)."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from conftest import CONFIGS

from okspose.builders import build_codec, build_model, build_records, build_schema, load_model_weights
from okspose.cli import main
from okspose.config import load_config
from okspose.evaluation import evaluate_keypoints
from okspose.posing import predict_keypoints


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


def test_speed_mode_agrees_with_fp32(coco_mini, tmp_path):
    """The speed mode (BatchNorm folded, channels_last, and bf16 autocast where the CPU has AMX) decodes
    joints within 0.5 px of the fp32 reference for >= 99% of joints, on a network trained on real data."""
    ann = _eight_persons(coco_mini, tmp_path / "eight.json")
    overrides = [f"data.root={coco_mini}", f"data.train_ann={ann}", f"train.output_dir={tmp_path / 'run'}",
                 "train.progress=false", "train.epochs=40"]
    assert main(["train", str(CONFIGS / "coco_mini_tiny.yaml"), *overrides]) == 0
    cfg = load_config(CONFIGS / "coco_mini_tiny.yaml", overrides + ["test.flip_test=true"])
    model = load_model_weights(build_model(cfg), tmp_path / "run" / "checkpoint.pth").eval()
    records = build_records(cfg, "train")
    device = torch.device("cpu")
    args = (records, build_codec(cfg), build_schema(cfg))
    ref, _ = predict_keypoints(model, *args, dataclasses.replace(cfg.test, fast=False, amp="none"), device)
    fast, _ = predict_keypoints(model, *args, dataclasses.replace(cfg.test, fast=True, amp="auto"), device)
    dist = np.linalg.norm(fast[..., :2] - ref[..., :2], axis=-1)
    assert (dist <= 0.5).mean() >= 0.99, np.quantile(dist, [0.5, 0.99, 1.0])
