"""One OKS scale for a person known only by its box (no segmentation area): hard-example mining, OKS-NMS and
the metric all take ``keypoints.box_oks_area`` (0.53 x w x h), so "OKS < t" means the same in each."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from okspose.data.mining import read_external_set, shared_joint_oks
from okspose.evaluation import _with_box_area, load_coco
from okspose.keypoints import BOX_AREA_SCALE, COCO17, box_oks_area
from okspose.recipe.mine import format_summary

BOXES = [[10.0, 20.0, 60.0, 150.0], [100.0, 30.0, 80.0, 200.0]]


def _pictures(folder, names: list[str]) -> None:
    for name in names:
        cv2.imwrite(str(folder / name), np.zeros((400, 400, 3), np.uint8))


def _labels(rng: np.random.Generator) -> np.ndarray:
    """[2, 17, 3] labels inside BOXES, every joint labeled visible."""
    boxes = np.array(BOXES)
    xy = boxes[:, None, :2] + rng.uniform(0.1, 0.9, (2, 17, 2)) * boxes[:, None, 2:]
    return np.concatenate([xy, np.full((2, 17, 1), 2.0)], axis=2)


def test_mining_and_the_metric_give_a_box_only_person_the_same_oks(tmp_path):
    """A COCO-layout file without ``area``: mining's OKS of each person equals pycocotools' OKS under the
    metric's box rule (``area="box"``), the same predictions against the same labels."""
    rng = np.random.default_rng(0)
    labels = _labels(rng)
    pred = labels.copy()
    pred[..., :2] += rng.normal(0, 6, (2, 17, 2))
    gt = {"images": [{"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 400, "height": 400} for i in range(2)],
          "categories": [{"id": 1, "name": "person"}],
          "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": BOXES[i],
                           "keypoints": labels[i].ravel().tolist(), "num_keypoints": 17} for i in range(2)]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    _pictures(tmp_path, ["1.jpg", "2.jpg"])
    ext = read_external_set(path, tmp_path, "coco17")
    assert ext.from_box.all()
    mined = shared_joint_oks(pred, COCO17, ext.records.keypoints, ext.schema, ext.areas)
    coco = _with_box_area(load_coco(path, 17, area="box"))  # what evaluate_keypoints(area="box") scores
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes([{"image_id": i + 1, "category_id": 1, "keypoints": pred[i].ravel().tolist(), "score": 1.0}
                           for i in range(2)])
    ev = COCOeval(coco, dt, "keypoints")
    ev._prepare()  # computeOks reads the per-image ground truth and detections it indexes
    metric = [float(ev.computeOks(i + 1, 1)[0, 0]) for i in range(2)]
    np.testing.assert_allclose(mined, metric, rtol=1e-12)
    assert min(metric) > 0.05 and max(metric) < 0.95  # errors at which the scale changes OKS


def test_ai_challenger_persons_take_the_box_only_scale(tmp_path):
    """AI Challenger's original layout has no segmentation: its persons' OKS scale is 0.53 x the box, not the
    whole box (AI Challenger's own evaluator's)."""
    rng = np.random.default_rng(1)
    labels = _labels(rng)
    humans = {f"human{i + 1}": [b[0], b[1], b[0] + b[2], b[1] + b[3]] for i, b in enumerate(BOXES)}
    aic = np.concatenate([labels[:, :14, :2], np.ones((2, 14, 1))], axis=2)  # v = 1: visible
    rec = {"image_id": "a", "human_annotations": humans,
           "keypoint_annotations": {f"human{i + 1}": aic[i].ravel().tolist() for i in range(2)}}
    path = tmp_path / "aic.json"
    path.write_text(json.dumps([rec]))
    _pictures(tmp_path, ["a.jpg"])
    ext = read_external_set(path, tmp_path)
    assert ext.layout == "aic" and ext.from_box.all()
    expected = [BOX_AREA_SCALE * b[2] * b[3] for b in BOXES]
    np.testing.assert_allclose(ext.areas, expected, rtol=1e-12)
    np.testing.assert_allclose(box_oks_area(np.array(BOXES)), expected, rtol=1e-12)
    assert [a["area"] for a in ext.data["annotations"]] == pytest.approx(expected, rel=1e-12)


def test_mine_hard_prints_the_scale_it_used():
    summary = {"source": "aic.json", "layout": "aic", "schema": "aic14", "judged": 3, "persons": 3,
               "shared_joints": ["a"] * 12, "rule": {"oks_thr": 0.5}, "cut": 0.5, "mined": 1, "rest": 2,
               "mean_oks_mined": 0.3, "mean_oks_rest": 0.8, "mean_oks_all": 0.6, "unreadable_images": [],
               "oks_scale": {"box_only": 3, "area": 0, "box_scale": BOX_AREA_SCALE},
               "out": "m.json", "summary": "s.json", "plot": "p.png"}
    line = "OKS scale: 0.53 x box (no segmentation area) for 3 persons, the file's 'area' for 0"
    assert line in format_summary(summary).splitlines()
