"""The smallest config really learns: it overfits 8 real coco-mini persons to AP >= 0.90 (GT boxes); and on
that trained network every engine agrees with plain fp32 as a user measures it: the folded network in fp32
and bf16 and ONNX Runtime (heatmaps and joints within what their arithmetic allows), INT8 (AP within 0.01)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from agreement import HEATMAP_TOL, decode_bounds, poser_heatmaps
from conftest import CONFIGS

from okspose.cli import main
from okspose.data.build import build_records
from okspose.evaluation import evaluate_keypoints
from okspose.inference.poser import Poser
from okspose.run_config import command_config

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


REFERENCE = ["test.engine=torch", "test.fast=false", "test.amp=none"]  # plain fp32: the accuracy reference
ENGINES = {  # pinned, so each means the same on every CPU (bf16 is emulated where the CPU lacks it)
    "fast-fp32": ["test.engine=torch", "test.fast=true", "test.amp=none", "test.compile=false"],
    "fast-bf16": ["test.engine=torch", "test.fast=true", "test.amp=bf16", "test.compile=false"],
    "onnxruntime": ["test.engine=onnxruntime", "test.amp=none"],
}


def _pose(trained: tuple[Path, list[str]], out: Path, settings: list[str]) -> tuple[np.ndarray, float]:
    """`okspose test` with GT boxes and flip test: keypoints [8, 17, 3] in record order (no OKS-NMS, so
    nothing is reordered), and the COCO AP."""
    ann, args = trained
    assert main(["test", CONFIG, *settings, "test.flip_test=true", "test.oks_nms=false", *args,
                 "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    return np.array([r["keypoints"] for r in results]).reshape(len(results), -1, 3), evaluate_keypoints(ann, out)["AP"]


def _moved(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """How far (image pixels) each confidently found joint (fp32 score >= 0.3) moved from the reference."""
    confident = ref[..., 2] >= 0.3
    assert confident.sum() >= 50, "the network should find most joints"
    return np.linalg.norm(got[..., :2] - ref[..., :2], axis=-1)[confident]


def _engine_heatmaps(trained: tuple[Path, list[str]], settings: list[str]) -> tuple[np.ndarray, np.ndarray,
                                                                                 np.ndarray, Poser]:
    """What `okspose test` with ``settings`` computes for the 8 GT persons: heatmaps, crop centres and scales
    (see :func:`agreement.poser_heatmaps`), and its Poser."""
    _, args = trained
    at = args.index("--checkpoint")
    cfg, checkpoint = command_config(CONFIG, [*settings, "test.flip_test=true", *args[:at]], args[at + 1])
    poser = Poser.from_checkpoint(cfg, checkpoint, torch.device("cpu"))
    return (*poser_heatmaps(poser, build_records(cfg, "val")), poser)


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


@pytest.mark.parametrize("engine", list(ENGINES))
def test_engines_agree_with_fp32(trained, tmp_path, engine):
    """Each engine test.engine=auto may pick (the folded network in fp32 or bf16, ONNX Runtime) against plain
    fp32, with tolerances from the arithmetic rather than from one machine's run (the trained network itself
    differs between CPU instances): its heatmaps stay within HEATMAP_TOL of the joint's peak, and in the
    results file of `okspose test` every confident joint whose argmax that tolerance cannot move lies within
    the distance the decoder can move it for such a heatmap; for at least a fifth of the confident joints
    the argmax is that stable, so the check has teeth."""
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    ref_maps, centers, scales, poser = _engine_heatmaps(trained, REFERENCE)
    got_maps = _engine_heatmaps(trained, ENGINES[engine])[0]
    peak = ref_maps.max(axis=(2, 3))
    strayed = np.abs(got_maps - ref_maps).max(axis=(2, 3)) / peak
    ref, ref_ap = _pose(trained, tmp_path / "ref.json", REFERENCE)
    got, ap = _pose(trained, tmp_path / "got.json", ENGINES[engine])
    confident = ref[..., 2] >= 0.3
    assert confident.sum() >= 50, "the network should find most joints"
    assert strayed[confident].max() <= HEATMAP_TOL[engine], np.quantile(strayed[confident], [0.5, 0.99, 1.0])
    bound = decode_bounds(poser, ref_maps, centers, scales, HEATMAP_TOL[engine])[confident]
    moved = np.linalg.norm(got[..., :2] - ref[..., :2], axis=-1)[confident]
    stable = np.isfinite(bound)
    assert stable.mean() >= 1 / 5, f"{stable.sum()} of {stable.size} confident joints have a stable argmax"
    # results files round to 3 decimals: each of the two coordinates of both files moves by <= 5e-4
    over = moved[stable] - bound[stable] - 2e-3
    assert over.max() <= 0, (moved[stable][over > 0], bound[stable][over > 0])
    assert ap >= 0.90 and ref_ap >= 0.90, (ref_ap, ap)


def test_int8_agrees_with_fp32(trained, coco_mini, tmp_path, capsys):
    """ONNX Runtime INT8 against plain fp32 on the 8 persons: calibrating on them (the training split, which is
    also the val split here) is refused; calibrated on other coco-mini persons, AP within 0.01, and the share of
    the confident joints within 1 px is reported (INT8 moves joints more than the fp32 engines do)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ann, args = trained
    int8 = ["test.engine=onnxruntime-int8", "test.amp=none", "test.int8_calibration=8"]
    scored = {im["id"] for im in json.loads(ann.read_text())["images"]}
    assert main(["test", CONFIG, *int8, *args, "--out", str(tmp_path / "refused.json")]) == 2
    assert f"reads {len(scored)} pictures of the scored val split" in capsys.readouterr().err
    data = json.loads((coco_mini / "annotations/person_keypoints_train2017.json").read_text())
    others = [im for im in data["images"] if im["id"] not in scored]
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps(dict(data, images=others, annotations=[
        a for a in data["annotations"] if a["image_id"] not in scored])))
    ref, ref_ap = _pose(trained, tmp_path / "ref.json", REFERENCE)
    got, ap = _pose(trained, tmp_path / "int8.json", [*int8, f"test.int8_calibration_ann={calibration}",
                                                      "test.int8_calibration_images=train2017"])
    assert "pose engine: onnxruntime-int8, folded, int8" in capsys.readouterr().err
    dist = _moved(ref, got)
    with capsys.disabled():
        print(f"\nINT8 (calibrated on 8 other persons) vs fp32: AP {ap:.4f} vs {ref_ap:.4f}; {(dist <= 1).mean():.1%} "
              f"of {dist.size} confident joints within 1 px (median {np.median(dist):.2f} px, max {dist.max():.2f} px)")
    assert abs(ap - ref_ap) <= 0.01, (ref_ap, ap)
