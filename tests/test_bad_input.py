"""Bad data gives a clear error naming the file and record, or (on_error=skip) a counted skip."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from conftest import CONFIGS

from okspose.cli import main
from okspose.data.codec import HeatmapCodec
from okspose.data.dataset import TopDownDataset, collate_skipping
from okspose.data.records import DataError, SkipReport, load_person_records
from okspose.keypoints import COCO17


@pytest.fixture()
def small_set(coco_mini, tmp_path) -> tuple[Path, Path, dict]:
    """Three real coco-mini train images with their annotations, copied to a scratch folder."""
    data = json.loads((coco_mini / "annotations/person_keypoints_train2017.json").read_text())
    with_kps = {a["image_id"] for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]}
    images = [im for im in data["images"] if im["id"] in with_kps][:3]
    ids = {im["id"] for im in images}
    subset = dict(data, images=images, annotations=[a for a in data["annotations"] if a["image_id"] in ids])
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for im in images:
        shutil.copy(coco_mini / "train2017" / im["file_name"], image_dir / im["file_name"])
    return tmp_path, image_dir, subset


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _first_kp_ann(data: dict) -> dict:
    return next(a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"])


def test_clean_subset_loads(small_set):
    tmp, image_dir, data = small_set
    records = load_person_records(_write(tmp, data), image_dir, COCO17)
    assert len(records) == sum(1 for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"])


@pytest.mark.parametrize("text", ["{not json", '{"images": []}', "[1, 2, 3]"])
def test_malformed_annotation_file_names_the_file(tmp_path, text):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(DataError, match="broken.json"):
        load_person_records(path, tmp_path, COCO17)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_person_records(tmp_path / "nope.json", tmp_path, COCO17)


def _corrupt(data: dict, how: str) -> tuple[dict, int]:
    data = copy.deepcopy(data)
    ann = _first_kp_ann(data)
    if how == "zero-area box":
        ann["bbox"][2] = 0
    elif how == "outside the":
        j = next(j for j in range(17) if ann["keypoints"][3 * j + 2] > 0)
        ann["keypoints"][3 * j] = -5000  # farther out than the picture's own size: no position in it
    elif how == "malformed keypoints":
        ann["keypoints"] = ann["keypoints"][:-3]
    elif how == "malformed bbox":
        ann["bbox"] = "box"
    return data, ann["id"]


@pytest.mark.parametrize("how", ["zero-area box", "outside the", "malformed keypoints", "malformed bbox"])
def test_bad_record_raises_with_file_and_record(small_set, how):
    tmp, image_dir, data = small_set
    bad, ann_id = _corrupt(data, how)
    path = _write(tmp, bad)
    with pytest.raises(DataError) as err:
        load_person_records(path, image_dir, COCO17)
    assert how in str(err.value) and str(ann_id) in str(err.value) and "ann.json" in str(err.value)


@pytest.mark.parametrize("how", ["zero-area box", "outside the", "malformed keypoints"])
def test_bad_record_is_skipped_and_counted(small_set, how):
    tmp, image_dir, data = small_set
    good = load_person_records(_write(tmp, data), image_dir, COCO17)
    bad, ann_id = _corrupt(data, how)
    report = SkipReport()
    records = load_person_records(_write(tmp, bad), image_dir, COCO17, on_error="skip", report=report)
    assert len(records) == len(good) - 1
    assert report.total == 1 and str(ann_id) in report.summary()


@pytest.mark.parametrize("unlabeled", [
    {"bbox": [10, 10, 0, 0], "num_keypoints": 0},  # a zero-area box
    {"bbox": [10, 10, 0, 0]},  # no num_keypoints: every v is 0
    {"bbox": "box", "num_keypoints": 0},
    {"bbox": [10, 10, 20, 20], "num_keypoints": 0, "image_id": -1},  # an image that is not listed
])
def test_person_without_keypoints_is_ignored_before_other_checks(small_set, unlabeled):
    """COCO's metric and training ignore a person with no labeled keypoint, so its box is not checked."""
    tmp, image_dir, data = small_set
    good = load_person_records(_write(tmp, data), image_dir, COCO17)
    person = dict({"id": 999999, "image_id": data["images"][0]["id"], "category_id": 1, "iscrowd": 0,
                   "keypoints": [0] * 51}, **unlabeled)
    with_it = dict(data, annotations=[*data["annotations"], person])
    report = SkipReport()
    records = load_person_records(_write(tmp, with_it), image_dir, COCO17, report=report)
    assert len(records) == len(good) and report.total == 0
    person["keypoints"] = [0] * 50  # a malformed list is still an error
    with pytest.raises(DataError, match="999999.*malformed keypoints"):
        load_person_records(_write(tmp, with_it), image_dir, COCO17)


def test_missing_image(small_set):
    tmp, image_dir, data = small_set
    victim = data["images"][0]["file_name"]
    (image_dir / victim).unlink()
    path = _write(tmp, data)
    with pytest.raises(DataError, match=victim):
        load_person_records(path, image_dir, COCO17)
    report = SkipReport()
    records = load_person_records(path, image_dir, COCO17, on_error="skip", report=report)
    lost = sum(1 for a in data["annotations"]
               if a["image_id"] == data["images"][0]["id"] and a["num_keypoints"] > 0 and not a["iscrowd"])
    assert report.reasons["missing image"] == lost and len(records) > 0


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_undecodable_image_raises_or_is_skipped(small_set, damage):
    tmp, image_dir, data = small_set
    victim = image_dir / data["images"][0]["file_name"]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    records = load_person_records(_write(tmp, data), image_dir, COCO17)
    codec = HeatmapCodec((128, 128), (32, 32))
    bad_index = records.image_paths.index(str(victim))
    with pytest.raises(DataError, match=victim.name):
        TopDownDataset(records, codec, COCO17)[bad_index]
    skipping = TopDownDataset(records, codec, COCO17, on_error="skip")
    assert skipping[bad_index] is None
    batch = collate_skipping([skipping[i] for i in range(len(records))])
    n_bad = records.image_paths.count(str(victim))
    assert int(batch["skipped"]) == n_bad and batch["image"].shape[0] == len(records) - n_bad


def test_cli_reports_bad_data_without_traceback(small_set, capsys):
    tmp, image_dir, data = small_set
    bad, ann_id = _corrupt(data, "zero-area box")
    path = _write(tmp, bad)
    code = main(["train", str(CONFIGS / "coco_mini_tiny.yaml"), f"data.train_ann={path}",
                 f"data.train_images={image_dir}", f"train.output_dir={tmp / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "zero-area box" in err and str(ann_id) in err and "Traceback" not in err


def test_cli_bad_config_key(capsys):
    assert main(["model-info", str(CONFIGS / "coco_mini_tiny.yaml"), "model.stacks=3"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_cli_undecodable_image_in_a_loader_worker(small_set, capsys):
    """An image that breaks mid-epoch inside a DataLoader worker still ends in one clear line."""
    tmp, image_dir, data = small_set
    victim = image_dir / data["images"][0]["file_name"]
    victim.write_bytes(victim.read_bytes()[:1000])
    code = main(["train", str(CONFIGS / "coco_mini_tiny.yaml"), f"data.train_ann={_write(tmp, data)}",
                 f"data.train_images={image_dir}", f"train.output_dir={tmp / 'run'}", "train.workers=1",
                 "train.epochs=1", "train.progress=false", "model.num_features=16"])
    err = capsys.readouterr().err
    assert code == 2 and victim.name in err and "truncated" in err and "Traceback" not in err
