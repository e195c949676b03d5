"""``okspose predict`` end to end with a tiny random network: folders with a corrupt image, detections
matched by file-name number, an empty detections file, a video in and out, and input errors."""

from __future__ import annotations

import errno
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from pycocotools.coco import COCO

from okspose.cli import main
from okspose.config import load_config, split_overrides
from okspose.fileio import folder_lock, save_checkpoint
from okspose.inference import predictions as predictions_module
from okspose.keypoints import COCO17
from okspose.models.build import build_model

SAMPLES = SHARED_DATA / "samples" / "coco"
DETECTIONS = SAMPLES / "test_coco_det_AP_H_56.json"
CONFIG = CONFIGS / "coco_mini_tiny.yaml"
OVERRIDES = ["model.num_features=32", "test.batch_size=32"]  # a tiny, fast network
IMAGES = ("000000000785.jpg", "000000196141.jpg", "000000197388.jpg")  # 197388 has 37 detections


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DETECTIONS.is_file():
        pytest.skip(f"sample images not found at {SAMPLES}")
    torch.manual_seed(0)
    model = build_model(load_config(CONFIG, OVERRIDES))
    return save_checkpoint({"model": model.state_dict()}, tmp_path_factory.mktemp("ckpt") / "model.pth")


@pytest.fixture
def image_dir(tmp_path: Path, checkpoint: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in IMAGES:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def predict(checkpoint: Path, out: Path, *args: str) -> int:
    return main(["predict", str(CONFIG), "--checkpoint", str(checkpoint), "--out", str(out), *args, *OVERRIDES])


def test_folder_with_a_corrupt_image(checkpoint, image_dir, tmp_path, capsys):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--whole-image", str(image_dir)) == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "skipped 1 (1 unreadable image)" in captured.out

    coco = COCO(str(out / "predictions.json"))
    assert sorted(coco.getImgIds()) == [785, 196141, 197388]  # ids are the file names' numbers
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 3  # one whole-picture person each
    for ann in anns:
        image = coco.loadImgs(ann["image_id"])[0]
        kp = np.array(ann["keypoints"]).reshape(17, 3)
        assert set(kp[:, 2]) <= {0, 2} and ann["num_keypoints"] == int((kp[:, 2] == 2).sum())
        assert (kp[kp[:, 2] == 0, :2] == 0).all() and len(ann["keypoint_scores"]) == 17
        assert ann["bbox"] == [0.0, 0.0, image["width"], image["height"]]
    category = coco.loadCats(1)[0]
    assert category["keypoints"] == list(COCO17.joints) and category["skeleton"][0] == [16, 14]

    results = json.loads((out / "results.json").read_text())
    assert [r["image_id"] for r in results] == [a["image_id"] for a in anns]
    assert all(set(r) == {"image_id", "category_id", "keypoints", "score"} and len(r["keypoints"]) == 51
               for r in results)
    coco.loadRes(str(out / "results.json"))  # pycocotools accepts it as keypoint results

    assert sorted(p.name for p in (out / "vis").iterdir()) == list(IMAGES)
    drawn = cv2.imread(str(out / "vis" / IMAGES[0]))
    assert drawn.shape == cv2.imread(str(image_dir / IMAGES[0])).shape


def test_detections_matched_by_file_name_number(checkpoint, image_dir, tmp_path, capsys):
    shutil.copy(SAMPLES / "000000040083.jpg", image_dir / "person.jpg")  # no number: no boxes
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--detections", str(DETECTIONS), str(image_dir)) == 0
    assert "person.jpg" in capsys.readouterr().err

    results = json.loads((out / "results.json").read_text())
    per_image = Counter(r["image_id"] for r in results)
    assert set(per_image) == {785, 196141, 197388} and max(per_image.values()) <= 20
    predictions = json.loads((out / "predictions.json").read_text())
    ids = {im["file_name"]: im["id"] for im in predictions["images"]}
    assert ids["person.jpg"] == 197389  # a fresh id above the numbered ones
    dets = {}
    for d in json.loads(DETECTIONS.read_text()):
        dets.setdefault(d["image_id"], []).append(d["bbox"])
    sizes = {im["id"]: (im["width"], im["height"]) for im in predictions["images"]}
    for ann in predictions["annotations"]:  # every posed box is one of the file's boxes, clipped
        w, h = sizes[ann["image_id"]]
        boxes = np.array(dets[ann["image_id"]])
        x0, y0 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
        x1, y1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w), np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
        clipped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
        assert np.abs(clipped - np.array(ann["bbox"])).max(axis=1).min() < 0.01


def test_empty_detections_give_empty_results(checkpoint, image_dir, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--detections", str(empty), str(image_dir)) == 0
    assert json.loads((out / "results.json").read_text()) == []
    coco = COCO(str(out / "predictions.json"))
    assert len(coco.getImgIds()) == 3 and coco.getAnnIds() == []
    assert len(list((out / "vis").iterdir())) == 3  # the pictures, with nothing drawn


def test_video_in_video_out(checkpoint, tmp_path):
    frame = cv2.resize(cv2.imread(str(SAMPLES / IMAGES[0])), (320, 212))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 212))
    for i in range(6):
        writer.write(np.roll(frame, 8 * i, axis=1))
    writer.release()
    still = tmp_path / IMAGES[0]
    shutil.copy(SAMPLES / IMAGES[0], still)
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--whole-image", str(video), str(still)) == 0

    cap = cv2.VideoCapture(str(out / "vis" / "clip_pose.mp4"))
    assert cap.isOpened()
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert size == (320, 212) and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 6

    predictions = json.loads((out / "predictions.json").read_text())
    frames = [im for im in predictions["images"] if "video" in im]
    assert [im["frame_index"] for im in frames] == list(range(6))
    assert [im["id"] for im in frames] == list(range(786, 792))  # unique across inputs: after 785
    assert frames[0]["file_name"] == "clip/000000.jpg" and (frames[0]["width"], frames[0]["height"]) == (320, 212)
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == [785, *range(786, 792)]
    tracked = [a for a in predictions["annotations"] if a["image_id"] > 785]
    assert len(tracked) == 6 and {a["track_id"] for a in tracked} == {1}  # the one person keeps its id
    assert (out / "vis" / IMAGES[0]).is_file()


def test_missing_input_is_a_clear_error(checkpoint, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--whole-image", str(image_dir), str(tmp_path / "nope.jpg")) == 2
    err = capsys.readouterr().err
    assert "input not found" in err and "nope.jpg" in err and "Traceback" not in err
    assert not out.exists()  # stopped before any work


def test_exactly_one_box_source(checkpoint, image_dir, tmp_path, capsys):
    for extra in ([], ["--whole-image", "--detections", str(DETECTIONS)]):
        with pytest.raises(SystemExit) as exit_info:
            predict(checkpoint, tmp_path / "out", *extra, str(image_dir))
        assert exit_info.value.code == 2
    assert "--whole-image" in capsys.readouterr().err


def test_paths_and_overrides_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a.b=1.jpg").touch()  # looks like an override, but is a file
    paths, overrides = split_overrides(["x.jpg", "a.b=1.jpg", "model.num_features=32", "test.flip_test=true"])
    assert paths == ["x.jpg", "a.b=1.jpg"] and overrides == ["model.num_features=32", "test.flip_test=true"]


def test_zero_byte_picture_is_a_counted_skip(checkpoint, image_dir, tmp_path, capsys):
    (image_dir / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--whole-image", "--no-vis", str(image_dir)) == 0
    captured = capsys.readouterr()
    assert "empty.jpg" in captured.err and "skipped 1 (1 unreadable image)" in captured.out
    assert len(json.loads((out / "results.json").read_text())) == 3  # the other pictures are posed and written


@pytest.mark.parametrize("where", ["existing file", "under a file", "results.json a folder"])
def test_outputs_are_checked_before_any_picture(checkpoint, image_dir, tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "out"
    if where == "existing file":
        out.write_text("x")
    elif where == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        (out / "results.json").mkdir(parents=True)
    read = []
    monkeypatch.setattr("okspose.commands.predict.read_image", lambda path: read.append(path))
    assert predict(checkpoint, out, "--whole-image", str(image_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and str(out) in err and not read, err


def test_a_failed_write_at_the_end_keeps_the_results(checkpoint, image_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = predictions_module.save_json

    def full_disk(obj, path):
        if Path(path).parent == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path)

    monkeypatch.setattr(predictions_module, "save_json", full_disk)
    assert predict(checkpoint, out, "--whole-image", "--no-vis", str(image_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line: one error line
    kept = Path(err.split(" are kept in ")[1])
    assert "Traceback" not in err and "No space left" in err and str(out) in err
    assert len(json.loads((kept / "results.json").read_text())) == 3
    assert len(COCO(str(kept / "predictions.json")).getImgIds()) == 3
    shutil.rmtree(kept)


def test_a_second_run_into_a_locked_folder_stops(checkpoint, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    with folder_lock(out, "the first run"):
        assert predict(checkpoint, out, "--whole-image", str(image_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the first run" in err and str(out) in err, err
    assert not (out / "results.json").exists() and not (out / "vis").exists()
    assert predict(checkpoint, out, "--whole-image", "--no-vis", str(image_dir)) == 0  # released


def test_pictures_whose_names_collide_are_all_written(checkpoint, tmp_path, capsys):
    files = [tmp_path / "x" / "1_3.jpg", tmp_path / "a" / "1.jpg", tmp_path / "b" / "1.jpg"]  # issue 23's
    for path, name in zip(files, IMAGES):
        path.parent.mkdir()
        shutil.copy(SAMPLES / name, path)
    out = tmp_path / "out"
    assert predict(checkpoint, out, "--whole-image", *map(str, files)) == 0
    assert sorted(p.name for p in (out / "vis").iterdir()) == ["1.jpg", "1_2.jpg", "1_3.jpg"]
    assert "3 pictures" in capsys.readouterr().out


def test_counts_read_right_and_pictures_left_empty_by_the_thresholds_are_named(tmp_path, capsys):
    """Issue 23 item 9: "1 picture", not "1 pictures"; a network whose every joint scores 0 (all weights 0)
    leaves the picture empty under the default drawing thresholds, and the run says which settings to lower."""
    if not DETECTIONS.is_file():
        pytest.skip(f"sample images not found at {SAMPLES}")
    model = build_model(load_config(CONFIG, OVERRIDES))
    blank = save_checkpoint({"model": {k: torch.zeros_like(v) for k, v in model.state_dict().items()}},
                            tmp_path / "blank.pth")
    picture = str(SAMPLES / IMAGES[0])
    assert predict(blank, tmp_path / "out", "--whole-image", picture) == 0
    out = capsys.readouterr().out
    assert "posed 1 image: 1 person\n" in out and "1 picture in" in out, out
    assert "note: no person is drawn in 1 picture where persons were found" in out, out
    assert "test.vis_kpt_thr=0.3" in out, out
    assert main(["predict", str(CONFIG), "--checkpoint", str(blank), "--out", str(tmp_path / "all"), "--whole-image",
                 picture, *OVERRIDES, "test.vis_kpt_thr=0", "test.vis_instance_thr=0"]) == 0
    assert "note:" not in capsys.readouterr().out
