"""CrowdPose's own metric and ground truth without 'area', against the reference implementation.

A CrowdPose annotation file has no 'area' and its images carry a crowd index; its results are scored with
CrowdPose's metric (OKS scaled by 0.53 x the box, AP/AR at up to 20 persons per image, AP over its easy,
medium and hard images). The reference is xtcocotools' COCOeval with iouType 'keypoints_crowd' (the
evaluation mmpose reports CrowdPose with), run on CrowdPose-format files made here from real COCO persons.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, SHARED_DATA
from xtcocotools.coco import COCO as RefCOCO
from xtcocotools.cocoeval import COCOeval as RefCOCOeval

from okspose.cli import main
from okspose.errors import DataError
from okspose.evaluation import CROWD_STAT_NAMES, STAT_NAMES, evaluate_keypoints
from okspose.fileio import read_json, save_json
from okspose.keypoints import COCO17, CROWDPOSE14

COCO_VAL = SHARED_DATA / "coco-labels" / "person_keypoints_val2017.json.gz"
pytestmark = pytest.mark.skipif(not COCO_VAL.is_file(), reason=f"COCO labels not found at {COCO_VAL}")

LIMBS = [COCO17.joints.index(name) for name in CROWDPOSE14.joints[:12]]  # CrowdPose's 12 limb joints


@pytest.fixture(scope="module")
def coco_val() -> dict:
    return read_json(COCO_VAL, "annotation")


def crowdpose_keypoints(coco: list[float]) -> np.ndarray:
    """CrowdPose's 14 joints [14, 3] from COCO's 17: the limbs by name, the nose as head top and the
    shoulders' midpoint as neck (labelled where both shoulders are)."""
    k = np.asarray(coco, dtype=np.float64).reshape(17, 3)
    shoulders = k[[5, 6]]
    neck = np.r_[shoulders[:, :2].mean(0), shoulders[:, 2].min()] if (shoulders[:, 2] > 0).all() else np.zeros(3)
    return np.vstack([k[LIMBS], k[0], neck])


def crowdpose_file(coco: dict, image_ids: list[int], crowd_index: np.ndarray, path: Path) -> Path:
    """A CrowdPose-format file of COCO's persons in ``image_ids``: 14 joints, no 'area' or segmentation,
    images with a 'crowdIndex', 'num_keypoints' counting the visible (v = 2) joints as CrowdPose's does."""
    index = dict(zip(image_ids, crowd_index.tolist(), strict=True))
    images = [{**{k: im[k] for k in ("id", "file_name", "width", "height")}, "crowdIndex": index[im["id"]]}
              for im in coco["images"] if im["id"] in index]
    anns = []
    for a in coco["annotations"]:
        if a["image_id"] in index:
            k = crowdpose_keypoints(a["keypoints"])
            anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                         "iscrowd": a["iscrowd"], "keypoints": k.ravel().tolist(),
                         "num_keypoints": int((k[:, 2] == 2).sum())})
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(CROWDPOSE14.joints)}
    return save_json({"images": images, "annotations": anns, "categories": [category]}, path)


def coco_file_without_area(coco: dict, image_ids: list[int], path: Path) -> Path:
    ids = set(image_ids)
    anns = [{k: v for k, v in a.items() if k not in ("area", "segmentation")}
            for a in coco["annotations"] if a["image_id"] in ids]
    return save_json({"images": [im for im in coco["images"] if im["id"] in ids], "annotations": anns,
                      "categories": coco["categories"]}, path)


def jittered_results(gt: dict, seed: int, zero_scored: bool) -> list[dict]:
    """Results made from the ground truth with a fixed seed: each person found with its own error, or
    missed (15%); duplicates; false positives copied to other places, also on images without people; one
    image with more than 20 persons predicted; with ``zero_scored`` one prediction whose joints all score 0."""
    rng = np.random.default_rng(seed)
    per_image = defaultdict(list)
    for a in gt["annotations"]:
        per_image[a["image_id"]].append(a)

    def pose(a: dict, shift: np.ndarray, spread: float, score: float) -> dict:
        k = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        x, y, w, h = a["bbox"]
        xy = k[:, :2] + rng.normal(0.0, spread * np.sqrt(max(w * h, 1.0)), (len(k), 2))
        unlabeled = k[:, 2] == 0
        xy[unlabeled] = rng.uniform([x, y], [x + w + 1, y + h + 1], (unlabeled.sum(), 2))
        kp = np.hstack([xy + shift, rng.uniform(0.05, 1.0, (len(k), 1))])
        return {"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": score}

    out = []
    for a in gt["annotations"]:
        if a["iscrowd"] or rng.random() < 0.15:
            continue
        spread = 0.04 * rng.uniform(0.1, 2.5)
        out.append(pose(a, np.zeros(2), spread, float(rng.uniform(0.2, 1.0))))
        if rng.random() < 0.2:
            out.append(pose(a, np.zeros(2), 2 * spread, float(rng.uniform(0.0, 0.6))))
    people = [a for a in gt["annotations"] if not a["iscrowd"]]
    for im in gt["images"]:
        for _ in range(rng.poisson(0.8)):
            a = people[rng.integers(len(people))]
            fp = pose(a, rng.uniform(-0.5, 0.5, 2) * np.array(a["bbox"][2:]), 0.05, float(rng.uniform(0.0, 0.7)))
            out.append({**fp, "image_id": im["id"]})
    busy = max(per_image, key=lambda i: len(per_image[i]))
    out += [pose(per_image[busy][i % len(per_image[busy])], rng.normal(0.0, 30.0, 2), 0.1,
                 float(rng.uniform(0.0, 1.0))) for i in range(25)]
    if zero_scored:
        out[0]["keypoints"][2::3] = [0.0] * (len(out[0]["keypoints"]) // 3)
    return out


def reference_stats(gt: Path, results: Path, iou_type: str, sigmas: tuple[float, ...]) -> np.ndarray:
    """xtcocotools' statistics, with the box for the area (its use_area=False, for files without one)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = RefCOCO(str(gt))
        ev = RefCOCOeval(coco_gt, coco_gt.loadRes(str(results)), iou_type, sigmas=np.asarray(sigmas),
                         use_area=False)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


# Two files: crowd indices over the whole range (with images exactly on CrowdPose's bounds 0.2 and 0.8),
# and a crowded set with no easy image at all (its AP easy is -1, as in the reference).
CROWD_FILES = {"spread": (0, lambda rng, n: np.r_[0.2, 0.8, 0.0, 1.0, 0.1, rng.uniform(0.0, 1.0, n - 5)]),
               "crowded": (1, lambda rng, n: rng.uniform(0.3, 1.0, n))}


@pytest.mark.parametrize("name", list(CROWD_FILES))
def test_crowdpose_metric_equals_xtcocotools(coco_val, tmp_path, capsys, name):
    part, crowd_index = CROWD_FILES[name]
    rng = np.random.default_rng(part)
    image_ids = sorted(im["id"] for im in coco_val["images"])[part * 150:(part + 1) * 150]
    gt = crowdpose_file(coco_val, image_ids, crowd_index(rng, len(image_ids)), tmp_path / "crowdpose.json")
    results = save_json(jittered_results(read_json(gt, "gt"), part, zero_scored=True), tmp_path / "res.json")
    reference = reference_stats(gt, results, "keypoints_crowd", CROWDPOSE14.sigmas)
    assert len(reference) == len(CROWD_STAT_NAMES) == 9  # xtcocotools' keypoints_crowd has no 10th number

    stats = evaluate_keypoints(gt, results, sigmas=CROWDPOSE14.sigmas)
    assert tuple(stats) == CROWD_STAT_NAMES
    np.testing.assert_allclose(list(stats.values()), reference, rtol=0, atol=1e-9)
    assert 0.2 < stats["AP"] < 0.95 and 0.2 < stats["AR"] < 0.95
    easy, medium, hard = stats["APeasy"], stats["APmedium"], stats["APhard"]
    assert (easy == -1.0) if name == "crowded" else len({easy, medium, hard, stats["AP"]}) == 4

    assert main(["eval-results", "--gt", str(gt), "--results", str(results), "--schema", "crowdpose14",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats
    assert main(["eval-results", "--gt", str(gt), "--results", str(results), "--schema", "crowdpose14"]) == 0
    assert "| APeasy | APmedium | APhard |" in capsys.readouterr().out.replace("  ", " ")


def test_area_box_scores_an_area_less_coco_file_as_xtcocotools(coco_val, tmp_path, capsys):
    image_ids = sorted(im["id"] for im in coco_val["images"])[300:450]
    gt = coco_file_without_area(coco_val, image_ids, tmp_path / "gt.json")
    results = save_json(jittered_results(read_json(gt, "gt"), 2, zero_scored=False), tmp_path / "res.json")
    with pytest.raises(DataError, match=r"annotations\[0\] lacks 'area'.*--area box"):
        evaluate_keypoints(gt, results)
    assert main(["eval-results", "--gt", str(gt), "--results", str(results)]) == 2
    assert "--area box" in capsys.readouterr().err

    stats = evaluate_keypoints(gt, results, area="box")
    assert tuple(stats) == STAT_NAMES and 0.2 < stats["AP"] < 0.95
    np.testing.assert_allclose(list(stats.values()), reference_stats(gt, results, "keypoints", COCO17.sigmas),
                               rtol=0, atol=1e-9)
    assert main(["eval-results", "--gt", str(gt), "--results", str(results), "--area", "box", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats


def test_crowd_index_on_some_images_only_is_an_error(coco_val, tmp_path):
    image_ids = sorted(im["id"] for im in coco_val["images"])[:20]
    gt = crowdpose_file(coco_val, image_ids, np.full(20, 0.5), tmp_path / "crowdpose.json")
    data = read_json(gt, "gt")
    del data["images"][3]["crowdIndex"]
    save_json(data, gt)
    with pytest.raises(DataError, match=r"images\[3\] lacks 'crowdIndex'"):
        evaluate_keypoints(gt, [], sigmas=CROWDPOSE14.sigmas)


@pytest.mark.parametrize("kind", ["crowdpose", "coco without area"])
def test_okspose_test_on_a_set_without_area(coco_mini, tmp_path, monkeypatch, capsys, kind):
    """``okspose test`` scores a CrowdPose set with CrowdPose's metric, and an area-less COCO set with
    ``test.metric_area=box``, as the reference scores the results it wrote. The network is test_inference's
    stand-in that knows each val person's joints."""
    from test_inference import GroundTruthNet

    from okspose.config import load_config
    from okspose.fileio import save_checkpoint

    coco = read_json(coco_mini / "annotations" / "person_keypoints_val2017.json", "annotation")
    image_ids = sorted({a["image_id"] for a in coco["annotations"]})
    if kind == "crowdpose":
        crowd_index = np.random.default_rng(4).uniform(0.0, 1.0, len(image_ids))
        gt = crowdpose_file(coco, image_ids, crowd_index, tmp_path / "val.json")
        settings, iou_type, schema, names = "data.schema=crowdpose14", "keypoints_crowd", CROWDPOSE14, CROWD_STAT_NAMES
    else:
        gt = coco_file_without_area(coco, image_ids, tmp_path / "val.json")
        settings, iou_type, schema, names = "test.metric_area=box", "keypoints", COCO17, STAT_NAMES
    config = CONFIGS / "coco_mini_tiny.yaml"
    overrides = [f"data.root={coco_mini}", f"data.val_ann={gt}", "data.val_images=val2017", settings,
                 f"train.output_dir={tmp_path}"]
    oracle = GroundTruthNet(load_config(config, overrides))
    checkpoint = save_checkpoint({"model": oracle.state_dict()}, tmp_path / "oracle.pth")
    monkeypatch.setattr("okspose.models.build.build_model", lambda cfg: oracle)
    out = tmp_path / "results.json"
    assert main(["test", str(config), *overrides, "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert names[-1] in capsys.readouterr().out
    summary = read_json(tmp_path / "results_summary.json", "summary")
    reference = reference_stats(gt, out, iou_type, schema.sigmas)
    np.testing.assert_allclose([summary[n] for n in names], reference, rtol=0, atol=1e-9)
    assert 0.5 < summary["AP"] < 1.0


def test_ablation_tables_show_the_metric_s_own_columns():
    from okspose.inference.ablation import ROWS, format_ablation

    coco = format_ablation([(ROWS[0], dict.fromkeys(STAT_NAMES, 0.5))])
    crowd = format_ablation([(ROWS[0], {**dict.fromkeys(CROWD_STAT_NAMES, 0.5), "APeasy": -1.0})])
    assert "| setting | AP | AP50 | AP75 | APm | APl | AR |" in coco
    assert "| setting | AP | AP50 | AP75 | APeasy | APmedium | APhard | AR |" in crowd
    assert "| box score | 0.500 | 0.500 | 0.500 | n/a | 0.500 | 0.500 | 0.500 |" in crowd
