"""AI Challenger: the original layout and COCO-style files into AIC-14, and into COCO-17 by joint name."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from okspose.data.aic import load_aic_records, read_aic
from okspose.data.records import SkipReport, records_from_coco
from okspose.data.remap import remap_coco
from okspose.errors import DataError
from okspose.keypoints import AIC14, COCO17

AIC_LABELS = SHARED_DATA / "aic-labels" / "keypoint_sample_annotations.json"
SAMPLES = SHARED_DATA / "samples" / "aic"
ORIGINAL = SAMPLES / "keypoint_annotations_aic_format.json"
COCO_STYLE = SAMPLES / "test_aic.json"
# AI Challenger's own joint order (its keypoint README), written out here rather than taken from the schema.
AIC_NAMES = ["right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
             "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck"]


def test_real_aic_file_lands_on_same_named_coco_joints() -> None:
    if not AIC_LABELS.is_file():
        pytest.skip(f"{AIC_LABELS} not found")
    raw = json.loads(AIC_LABELS.read_text())
    coco = remap_coco(read_aic(AIC_LABELS), AIC14, COCO17)
    anns = coco["annotations"]
    assert coco["categories"][0]["keypoints"] == list(COCO17.joints)
    people = [(rec["image_id"], name, rec["human_annotations"][name], kps)
              for rec in raw for name, kps in rec["keypoint_annotations"].items()]
    assert len(people) == len(anns) == 13850
    images = {img["id"]: img for img in coco["images"]}
    expected_v = {1: 2, 2: 1, 3: 0}  # visible -> labeled visible, occluded -> labeled occluded, unlabeled
    shared_labeled = total_labeled = 0
    for (image_id, name, box, kps), ann in zip(people, anns, strict=True):
        assert images[ann["image_id"]]["aic_image_id"] == image_id and ann["aic_human"] == name
        assert ann["bbox"] == [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        assert ann["area"] == pytest.approx(0.53 * (box[2] - box[0]) * (box[3] - box[1]), rel=1e-12)  # box-only
        out = np.array(ann["keypoints"]).reshape(17, 3)
        for j, joint in enumerate(AIC_NAMES):
            x, y, v = kps[3 * j: 3 * j + 3]
            total_labeled += v in (1, 2)
            if joint not in COCO17.joints:
                continue
            got = out[COCO17.joints.index(joint)]
            assert got[2] == expected_v[v]
            if v != 3:
                assert (got[0], got[1]) == (x, y)
                shared_labeled += 1
        assert out[:5].tolist() == [[0, 0, 0]] * 5  # nose, eyes, ears: AIC has none
        assert ann["num_keypoints"] == int((out[:, 2] > 0).sum())
    assert sum(a["num_keypoints"] for a in anns) == shared_labeled
    aic14 = read_aic(AIC_LABELS)
    assert sum(a["num_keypoints"] for a in aic14["annotations"]) == total_labeled
    assert all(img.get("size_from_labels") for img in aic14["images"])  # no images: sizes from the labels


def test_original_and_coco_style_samples_give_the_same_persons() -> None:
    if not ORIGINAL.is_file():
        pytest.skip(f"{ORIGINAL} not found")
    for schema in (AIC14, COCO17):
        a = load_aic_records(ORIGINAL, SAMPLES, "aic", schema)
        b = load_aic_records(COCO_STYLE, SAMPLES, "aic-coco", schema)
        assert len(a) == len(b) == 9
        order_a = np.lexsort((a.boxes[:, 0], [Path(p).name for p in a.image_paths]))
        order_b = np.lexsort((b.boxes[:, 0], [Path(p).name for p in b.image_paths]))
        a, b = a.subset(order_a), b.subset(order_b)
        assert a.image_paths == b.image_paths
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    sizes = {img["file_name"]: (img["width"], img["height"]) for img in read_aic(ORIGINAL, image_dir=SAMPLES)["images"]}
    assert sizes == {img["file_name"]: (img["width"], img["height"])
                     for img in json.loads(COCO_STYLE.read_text())["images"]}  # read from the image headers


def _write(tmp_path: Path, records: list) -> Path:
    path = tmp_path / "aic.json"
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r["keypoint_annotations"]["human2"].pop(), "human2: malformed keypoints (need 42 numbers)"),
    (lambda r: r["human_annotations"]["human2"].__setitem__(2, 500), "human2: box [541, 131, 500, 599] has x2 < x1"),
    (lambda r: r["keypoint_annotations"]["human2"].__setitem__(2, 4), "human2: visibility of joint(s) [0] is not"),
    (lambda r: r["keypoint_annotations"]["human2"].__setitem__(0, 1801), "keypoint(s) [0] outside the 900x600 image"),
])
def test_bad_records_stop_with_the_file_and_record_or_are_skipped(tmp_path: Path, edit, message: str) -> None:
    if not ORIGINAL.is_file():
        pytest.skip(f"{ORIGINAL} not found")
    records = json.loads(ORIGINAL.read_text())
    edit(records[0])
    path = _write(tmp_path, records)
    with pytest.raises(DataError, match=r"aic\.json: .*" + re.escape(message)):
        load_aic_records(path, SAMPLES)
    report = SkipReport()
    kept = load_aic_records(path, SAMPLES, on_error="skip", report=report)
    assert len(kept) == 8 and report.total == 1


def test_without_images_sizes_come_from_the_labels_and_far_negative_coordinates_fail(tmp_path: Path) -> None:
    if not ORIGINAL.is_file():
        pytest.skip(f"{ORIGINAL} not found")
    records = json.loads(ORIGINAL.read_text())
    data = read_aic(_write(tmp_path, records))
    first = data["images"][0]
    assert first["size_from_labels"] and (first["width"], first["height"]) == (870, 599)
    bad = copy.deepcopy(records)
    bad[0]["keypoint_annotations"]["human1"][0] = -871  # farther left than the picture is wide
    data = read_aic(_write(tmp_path, bad))
    with pytest.raises(DataError, match=r"annotation 1 \(image 1\): keypoint\(s\) \[0\] outside"):
        records_from_coco(data, "aic.json", tmp_path, AIC14)
    with pytest.raises(DataError, match="not an AI Challenger keypoint file"):
        read_aic(_write(tmp_path, {"images": []}))
