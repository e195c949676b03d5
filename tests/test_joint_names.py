"""Keypoints are matched by name (issue 23 item 7): a file whose category names its joints otherwise than
the schema read stops with one line naming the slots; a joint a little outside its picture is a label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONFIGS

from okspose.cli import main
from okspose.config import load_config
from okspose.data.records import load_person_records
from okspose.errors import DataError
from okspose.fileio import save_checkpoint
from okspose.keypoints import AIC14, COCO17, CROWDPOSE14, check_category_joints, joint_key
from okspose.models.build import build_model

CONFIG = CONFIGS / "coco_mini_tiny.yaml"
# PoseTrack18's person category: COCO's order, with head_bottom and head_top where COCO has the eyes
POSETRACK18 = ["nose", "head_bottom", "head_top", *COCO17.joints[3:]]


def _val(coco_mini: Path) -> dict:
    return json.loads((coco_mini / "annotations/person_keypoints_val2017.json").read_text())


def _write(data: object, path: Path) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_the_datasets_own_spellings_are_the_schemas_joints():
    assert joint_key("Head top") == "head_top" == joint_key("top_head") == joint_key("head-top")
    check_category_joints([{"id": 1, "keypoints": ["Right Shoulder", *AIC14.joints[1:12], "Head top", "Neck"]}],
                          AIC14.joints, "aic.json")
    check_category_joints([{"id": 1, "keypoints": [*CROWDPOSE14.joints[:12], "top_head", "neck"]}],
                          CROWDPOSE14.joints, "crowdpose.json")
    check_category_joints([{"id": 1, "name": "person"}], COCO17.joints, "no names.json")  # nothing to compare


@pytest.mark.parametrize("names, words", [
    (POSETRACK18, ("slot 1: 'head_bottom' (schema: 'left_eye'), 2: 'head_top' (schema: 'right_eye')",)),
    (list(COCO17.joints[::-1]), ("the schema's joints in another order",)),
    ([*CROWDPOSE14.joints], ("14 joints where the schema read has 17", "crowdpose14 schema's",
                             "--schema crowdpose14")),
    ([1, 2], ("'keypoints' must be a list of joint names",)),
])
def test_other_names_stop_with_the_slots_that_differ(names, words):
    with pytest.raises(DataError) as err:
        check_category_joints([{"id": 1, "keypoints": names}], COCO17.joints, "gt.json")
    message = str(err.value)
    assert "gt.json: category 1" in message and "\n" not in message and all(w in message for w in words), message


def test_a_posetrack_file_is_not_scored_or_trained_as_coco(coco_mini, tmp_path, capsys):
    data = _val(coco_mini)
    data["categories"][0]["keypoints"] = POSETRACK18
    gt = _write(data, tmp_path / "posetrack.json")
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in data["annotations"] if a["num_keypoints"]]
    res = _write(results, tmp_path / "r.json")
    assert main(["eval-results", "--gt", str(gt), "--results", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "head_bottom" in err and "head_top" in err and "posetrack.json" in err, err
    with pytest.raises(DataError, match="head_bottom"):
        load_person_records(gt, coco_mini / "val2017", COCO17)


def test_a_keypoint_a_little_outside_its_picture_is_a_label(coco_mini, tmp_path):
    """PoseTrack18's y = -24.9: ``test --boxes gt`` runs under the default data.on_error=raise; a joint farther
    out than the picture's own size is still refused."""
    data = _val(coco_mini)
    ann = next(a for a in data["annotations"] if a["num_keypoints"] and not a["iscrowd"])  # among the 8 posed
    j = next(j for j in range(17) if ann["keypoints"][3 * j + 2] > 0)
    ann["keypoints"][3 * j + 1] = -24.9
    gt = _write(data, tmp_path / "gt.json")
    records = load_person_records(gt, coco_mini / "val2017", COCO17)
    assert ann["id"] in records.ann_ids.tolist()
    cfg = load_config(CONFIG, ["model.num_features=16"])
    weights = save_checkpoint({"model": build_model(cfg).state_dict()}, tmp_path / "w.pth")
    assert main(["test", str(CONFIG), f"data.root={coco_mini}", f"data.val_ann={gt}", "model.num_features=16",
                 "data.max_val_persons=8", "--checkpoint", str(weights), "--boxes", "gt",
                 "--out", str(tmp_path / "r.json")]) == 0
    height = next(i["height"] for i in data["images"] if i["id"] == ann["image_id"])
    ann["keypoints"][3 * j + 1] = -height - 1
    with pytest.raises(DataError, match=f"annotation {ann['id']} .*outside the .* image by more than its own size"):
        load_person_records(_write(data, tmp_path / "far.json"), coco_mini / "val2017", COCO17)
