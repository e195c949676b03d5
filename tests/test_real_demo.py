"""``okspose demo --real`` end to end at toy scale: real coco-mini + coco128 train persons -> a small backbone
network -> every real val picture (each once) posed with YOLOX-nano's boxes, rescored, NMS'd, scored, drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from okspose.cli import main
from okspose.fileio import read_json

SHARED = Path(__file__).resolve().parents[2] / "shared"
VAL_IMAGES = 79 + 70 - 1  # coco-mini val + coco128 val, image 139 in both


def test_real_demo_poses_the_real_val_pictures_with_yolox_boxes(tmp_path: Path, capsys) -> None:
    if not (SHARED / "models" / "yolox_nano.onnx").is_file() or not (SHARED / "data" / "coco128").is_dir():
        pytest.skip(f"real data or YOLOX-nano not found under {SHARED}")
    assert main(["demo", "--real", "--out", str(tmp_path), "--shared", str(SHARED), "train.epochs=1",
                 "train.lr_steps=[1]", "data.max_train_persons=8", "data.input_size=[64,64]",
                 "data.heatmap_size=[16,16]", "model.num_features=16", "model.pretrained=''", "train.progress=false",
                 # pinned: the same on every CPU; no compile time, few crops
                 "train.amp=none", "test.amp=none", "test.engine=torch", "test.compile=false",
                 "test.flip_test=false", "test.det_top_k=3"]) == 0
    assert "real COCO persons: 8 train, 299 val" in capsys.readouterr().out
    detector = read_json(tmp_path / "results_summary.json", "summary")
    assert detector["boxes"].startswith("YOLOX") and detector["images"] == VAL_IMAGES
    assert read_json(tmp_path / "results_gt_boxes_summary.json", "summary")["images"] == VAL_IMAGES
    assert read_json(tmp_path / "results.json", "results")  # YOLOX found persons, and they were posed
    assert (tmp_path / "pictures" / "overview.jpg").is_file()
