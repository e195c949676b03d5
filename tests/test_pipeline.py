"""End to end with detector boxes: detections file -> pose -> rescoring -> IoU/OKS-NMS -> COCO results,
and Team OKS's ablation table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from pycocotools.coco import COCO

from okspose.cli import main
from okspose.config import load_config
from okspose.fileio import save_checkpoint
from okspose.inference.ablation import ROWS
from okspose.models.build import build_model

SAMPLES = SHARED_DATA / "samples" / "coco"
TINY = ["model.num_features=32", "train.workers=0", "test.batch_size=32"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small untrained network: these tests check the plumbing and the file contract, not accuracy."""
    cfg = load_config(CONFIGS / "coco_mini_tiny.yaml", TINY)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    save_checkpoint({"model": build_model(cfg).state_dict()}, path)
    return path


def _samples_args() -> list[str]:
    if not SAMPLES.is_dir():
        pytest.skip("samples/coco not found")
    return [f"data.root={SAMPLES}", "data.val_ann=test_coco.json", "data.val_images=.", *TINY]


def test_real_detections_end_to_end(checkpoint, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["test", str(CONFIGS / "coco_mini_tiny.yaml"), *_samples_args(), "--checkpoint", str(checkpoint),
                 "--detections", str(SAMPLES / "test_coco_det_AP_H_56.json"), "--out", str(out)])
    assert code == 0
    assert "AP50" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results and all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in results)
    per_image = np.bincount([r["image_id"] for r in results])
    assert per_image.max() <= 20
    gt = COCO(str(SAMPLES / "test_coco.json"))
    gt.loadRes(str(out))  # pycocotools accepts the file


def test_empty_detections_give_an_empty_valid_results_file(checkpoint, tmp_path):
    empty = tmp_path / "dets.json"
    empty.write_text("[]")
    out = tmp_path / "results.json"
    code = main(["test", str(CONFIGS / "coco_mini_tiny.yaml"), *_samples_args(), "--checkpoint", str(checkpoint),
                 "--detections", str(empty), "--out", str(out)])
    assert code == 0 and json.loads(out.read_text()) == []


def _noisy_detections(gt_file: Path, out: Path, seed: int = 0) -> Path:
    """Detector-like boxes from the GT: jittered boxes, near-duplicates and false positives, with scores."""
    rng = np.random.default_rng(seed)
    data = json.loads(gt_file.read_text())
    dets = []
    for ann in data["annotations"]:
        if ann["iscrowd"]:
            continue
        x, y, w, h = ann["bbox"]
        for k in range(int(rng.integers(1, 4))):  # the box and up to two duplicates
            j = rng.normal(0, 0.05 + 0.05 * k, 4) * [w, h, w, h]
            box = [x + j[0], y + j[1], w + j[2], h + j[3]]
            dets.append({"image_id": ann["image_id"], "category_id": 1, "bbox": box,
                         "score": float(np.clip(0.95 - 0.2 * k + rng.normal(0, 0.03), 0.05, 1))})
    for image in data["images"]:
        for _ in range(int(rng.integers(0, 3))):
            w, h = rng.uniform(20, 120, 2)
            dets.append({"image_id": image["id"], "category_id": 1,
                         "bbox": [float(rng.uniform(0, image["width"] - w)), float(rng.uniform(0, image["height"] - h)),
                                  float(w), float(h)], "score": float(rng.uniform(0.05, 0.5))})
    out.write_text(json.dumps(dets))
    return out


def test_ablation_table_rows_in_the_seeds_order(coco_mini, checkpoint, tmp_path, capsys):
    dets = _noisy_detections(coco_mini / "annotations/person_keypoints_val2017.json", tmp_path / "dets.json")
    md = tmp_path / "ablation.md"
    code = main(["ablation", str(CONFIGS / "coco_mini_tiny.yaml"), f"data.root={coco_mini}", *TINY,
                 "--checkpoint", str(checkpoint), "--detections", str(dets), "--out", str(md)])
    assert code == 0
    text = md.read_text()
    names = [row.name for row in ROWS] + ["ground-truth boxes"]
    positions = [text.index(f"| {name} |") for name in names]
    assert positions == sorted(positions)
    assert text.index("**Instance score**") < text.index("**NMS**") < text.index("**Boxes**")
    assert text in capsys.readouterr().out
