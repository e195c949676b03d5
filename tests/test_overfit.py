"""The smallest config really learns: it overfits 8 real coco-mini persons to AP >= 0.90 (GT boxes); and on
that trained network the speed mode agrees with fp32 as a user measures it, in fp32 and in bf16."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS

from okspose.cli import main
from okspose.evaluation import evaluate_keypoints

CONFIG = str(CONFIGS / "coco_mini_tiny.yaml")


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


@pytest.fixture(scope="module")
def trained(coco_mini, tmp_path_factory) -> tuple[Path, list[str]]:
    """The tiny config trained on the 8 persons (also its val set): (annotation file, CLI overrides)."""
    tmp = tmp_path_factory.mktemp("overfit")
    ann = _eight_persons(coco_mini, tmp / "eight.json")
    overrides = [f"data.root={coco_mini}", f"data.train_ann={ann}", f"data.val_ann={ann}",
                 "data.val_images=train2017", f"train.output_dir={tmp / 'run'}", "train.progress=false"]
    assert main(["train", CONFIG, *overrides]) == 0
    return ann, overrides + ["--checkpoint", str(tmp / "run" / "checkpoint.pth"), "--boxes", "gt"]


def _pose(trained: tuple[Path, list[str]], out: Path, fast: bool, amp: str) -> tuple[np.ndarray, float]:
    """`okspose test` with GT boxes and flip test: keypoints [8, 17, 3] in record order (no OKS-NMS, so
    nothing is reordered), and the COCO AP."""
    ann, args = trained
    assert main(["test", CONFIG, f"test.fast={fast}", f"test.amp={amp}", "test.flip_test=true",
                 "test.oks_nms=false", *args, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    return np.array([r["keypoints"] for r in results]).reshape(len(results), -1, 3), evaluate_keypoints(ann, out)["AP"]


def test_tiny_config_overfits_eight_real_persons(trained, tmp_path, capsys):
    ann, args = trained
    results = tmp_path / "results.json"
    assert main(["test", CONFIG, *args, "--out", str(results), "--vis", str(tmp_path / "vis")]) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed
    stats = evaluate_keypoints(ann, results)
    assert stats["AP"] >= 0.90, stats
    assert len(json.loads(results.read_text())) == 8
    assert (tmp_path / "vis" / "overview.jpg").exists()


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_speed_mode_agrees_with_fp32(trained, tmp_path, amp):
    """The speed mode (BatchNorm folded, channels_last; with amp=bf16 also bf16 autocast, emulated where the
    CPU lacks it) against plain fp32: AP within 0.005, and >= 99% of the confidently found joints (fp32
    score >= 0.3) within 0.5 px."""
    ref, ref_ap = _pose(trained, tmp_path / "ref.json", fast=False, amp="none")
    fast, fast_ap = _pose(trained, tmp_path / "fast.json", fast=True, amp=amp)
    assert abs(fast_ap - ref_ap) <= 0.005, (ref_ap, fast_ap)
    confident = ref[..., 2] >= 0.3
    assert confident.sum() >= 50, "the network should find most joints"
    dist = np.linalg.norm(fast[..., :2] - ref[..., :2], axis=-1)[confident]
    assert (dist <= 0.5).mean() >= 0.99, np.quantile(dist, [0.5, 0.99, 1.0])
