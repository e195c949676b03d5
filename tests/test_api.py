"""The Python API (okspose.PoseEstimator / PoseResult): the README's snippet runs, the API and
`okspose predict --detections` give the same keypoints, bad input is one OksposeError naming the argument,
and tracking keeps identities (crossing, leaving, entering) while smoothing lowers a still person's jitter."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

import okspose
from okspose.cli import main
from okspose.data.records import read_image
from okspose.data.video import VideoFrames
from okspose.errors import OksposeError
from okspose.inference import estimator as estimator_module
from okspose.inference.tracking import Smoothing, Tracker

# pinned, so that posing means the same on every CPU (the checkpoint leaves the machine settings to the machine)
PINNED = {"engine": "torch", "amp": "none", "fast": False, "compile": False}
CLI_PINNED = [f"test.{k}={json.dumps(v)}" for k, v in PINNED.items()]
IMAGES = (217285, 350679, 183709, 151938, 311002, 397133)  # coco-mini val pictures with the most persons


def _val(coco_mini: Path) -> tuple[dict[int, Path], dict[int, np.ndarray]]:
    """(image id -> path, image id -> GT boxes xyxy) of IMAGES."""
    data = json.loads((coco_mini / "annotations" / "person_keypoints_val2017.json").read_text())
    paths = {im["id"]: coco_mini / "val2017" / im["file_name"] for im in data["images"] if im["id"] in IMAGES}
    boxes: dict[int, list] = {i: [] for i in IMAGES}
    for ann in data["annotations"]:
        if ann["image_id"] in boxes and not ann.get("iscrowd"):
            x, y, w, h = ann["bbox"]
            boxes[ann["image_id"]].append([x, y, x + w, y + h])
    return paths, {i: np.array(b) for i, b in boxes.items()}


@pytest.fixture(scope="module")
def estimator(tiny_checkpoint: Path) -> okspose.PoseEstimator:
    return okspose.PoseEstimator.from_checkpoint(tiny_checkpoint, device="cpu", **PINNED)


def test_readme_snippet_runs(tiny_checkpoint, coco_mini, tmp_path, monkeypatch):
    """The README's Python lines, read from the README, run as written: only the Mask R-CNN weights (not
    on this machine) are replaced by a detector that returns the picture's labelled boxes."""
    snippet = re.search(r"## Quick start.*?```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    assert len(snippet.strip().splitlines()) == 3
    paths, boxes = _val(coco_mini)
    (tmp_path / "model_best.pth").symlink_to(tiny_checkpoint)
    (tmp_path / "photo.jpg").symlink_to(paths[IMAGES[0]])
    asked = []

    def fake_make_detector(source, cfg, device):
        asked.append(source.kind)
        return lambda rgb: (boxes[IMAGES[0]], np.full(len(boxes[IMAGES[0]]), 0.9))

    monkeypatch.setattr(estimator_module, "make_detector", fake_make_detector)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(snippet, scope)
    result = scope["result"]
    assert asked == ["maskrcnn"] and isinstance(result, okspose.PoseResult)
    assert 1 <= len(result) <= len(boxes[IMAGES[0]]) and result.keypoints.shape == (len(result), 17, 2)
    assert np.isfinite(result.keypoints).all() and (np.diff(result.scores) <= 0).all()  # best first


def test_api_and_predict_give_the_same_keypoints(estimator, tiny_checkpoint, coco_mini, tmp_path, capsys):
    paths, boxes = _val(coco_mini)
    folder = tmp_path / "pictures"
    folder.mkdir()
    detections = []
    for image_id, path in paths.items():
        (folder / path.name).symlink_to(path)
        for j, (x0, y0, x1, y1) in enumerate(boxes[image_id]):
            detections.append({"image_id": image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                               "score": 0.95 - 0.05 * j})
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(detections))
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), "--detections", str(det_file), "--out", str(out),
                 "--no-vis", "--device", "cpu", str(folder), *CLI_PINNED]) == 0
    from_cli = json.loads((out / "results.json").read_text())

    ids = sorted(paths)
    scores = [np.array([d["score"] for d in detections if d["image_id"] == i]) for i in ids]
    results = estimator([paths[i] for i in ids], boxes=[boxes[i] for i in ids], box_scores=scores)
    from_api = [r for i, result in zip(ids, results) for r in result.to_coco(i)]
    assert [r["image_id"] for r in from_api] == [r["image_id"] for r in from_cli]
    assert len(from_api) >= len(IMAGES)
    diff = np.abs(np.array([r["keypoints"] for r in from_api]) - np.array([r["keypoints"] for r in from_cli])).max()
    print(f"API vs predict --detections, {len(from_api)} persons on {len(ids)} coco-mini val pictures: "
          f"max keypoint difference {diff}")
    assert diff <= 5e-4 + 1e-9  # both round to 3 decimals in results.json: only that rounding may differ
    assert np.abs(np.array([r["score"] for r in from_api]) - np.array([r["score"] for r in from_cli])).max() < 1e-9

    one = results[0]
    assert one.boxes.shape == (len(one), 4) and one.box_scores.shape == one.scores.shape == (len(one),)
    assert one.keypoint_scores.shape == (len(one), 17) and one.track_ids is None
    picture = read_image(str(paths[ids[0]]))
    assert np.array_equal(one.draw(picture), picture)  # a barely trained network: every joint under 0.3
    drawn = dataclasses.replace(one, draw_thresholds=(0.0, 0.0)).draw(picture)
    assert drawn.shape == picture.shape and (drawn != picture).any()
    bgr = estimator(picture[..., ::-1].copy(), boxes=boxes[ids[0]], box_scores=scores[0], color="bgr")
    assert np.array_equal(bgr.keypoints, one.keypoints)  # BGR input is converted, not posed as is


@pytest.mark.parametrize("call, names", [
    (lambda est: est(np.zeros((8, 8, 3), np.float32)), ["image", "uint8", "float32"]),
    (lambda est: est(np.zeros((8, 8), np.uint8)), ["image", "[8, 8]"]),
    (lambda est: est("no/such/picture.jpg"), ["image", "no/such/picture.jpg"]),
    (lambda est: est(np.zeros((32, 32, 3), np.uint8), boxes=[[0, 0, 10]]), ["boxes", "[N, 4]"]),
    (lambda est: est(np.zeros((32, 32, 3), np.uint8), boxes=[[0, 0, 10, 10]], box_scores=[1, 2]), ["scores"]),
    (lambda est: est([np.zeros((32, 32, 3), np.uint8)] * 2, boxes=[None]), ["boxes", "list of 2"]),
    (lambda est: est(np.zeros((32, 32, 3), np.uint8), color="hsv"), ["color"]),
    (lambda est: list(est.track([np.zeros((32, 32, 3), np.uint8), "x"])), ["frame 1"]),
])
def test_bad_input_is_one_error_naming_the_argument(estimator, call, names):
    with pytest.raises(OksposeError) as err:
        call(estimator)
    assert all(n in str(err.value) for n in names) and "\n" not in str(err.value), str(err.value)


def test_bad_settings_and_detectors_are_one_line(tiny_checkpoint, tmp_path):
    with pytest.raises(OksposeError, match="flip_tset"):
        okspose.PoseEstimator.from_checkpoint(tiny_checkpoint, device="cpu", flip_tset=False)
    with pytest.raises(OksposeError, match="test.batch_size"):
        okspose.PoseEstimator.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=0)
    with pytest.raises(OksposeError, match="nope.pth"):
        okspose.PoseEstimator.from_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(OksposeError, match="'yolo9000'"):
        okspose.PoseEstimator.from_checkpoint(tiny_checkpoint, detector="yolo9000", device="cpu")
    est = okspose.PoseEstimator.from_checkpoint(tiny_checkpoint, detector=lambda rgb: ([[0, 0, 5]], [1.0]),
                                                device="cpu", **PINNED)
    with pytest.raises(OksposeError, match="detector boxes"):
        est(np.zeros((32, 32, 3), np.uint8))


def test_skipped_frames_are_counted():
    class Capture:  # a decoder that fails on the second frame and at the end
        def __init__(self) -> None:
            self.reads = iter([np.ones((4, 4, 3), np.uint8), None, np.zeros((4, 4, 3), np.uint8), None, None])

        def read(self):
            frame = next(self.reads, None)
            return frame is not None, frame

        def release(self) -> None:
            pass

    video = VideoFrames(Path("clip.mp4"), 25.0, 3, Capture(), max_bad=2)
    assert [f.max() for f in video] == [1, 0] and video.skipped == 1  # the failure at the end is the end


# ------------------------------------------------------------------------------------------------ tracking


def _scene(coco_mini: Path) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    """24 frames 320 x 240: a real picture (shifted 2 px per frame) as background, four real persons pasted in
    moving: A right and B left (they cross), C leaves on the right by frame 8, D enters from the left at 14.
    Returns the RGB frames and, per frame, each visible person's box (xyxy)."""
    paths, boxes = _val(coco_mini)
    picture = read_image(str(paths[217285]))
    people = [cv2.resize(picture[int(y0):int(y1), int(x0):int(x1)], (50, 100))
              for x0, y0, x1, y1 in boxes[217285][:4]]
    background = cv2.resize(read_image(str(paths[397133])), (360, 240))
    paths_of = {"A": lambda t: (20 + 10 * t, 30), "B": lambda t: (250 - 10 * t, 90),
                "C": lambda t: (230 + 12 * t, 130), "D": lambda t: (-50 + 8 * (t - 14), 120)}
    frames, truth = [], []
    for t in range(24):
        frame = background[:, 2 * t % 40:][:, :320].copy()
        visible = {}
        for person, (name, where) in zip(people, paths_of.items()):
            x, y = where(t)
            if name == "D" and t < 14 or x > 320 - 25 or x < -25:  # not in, or less than half in
                continue
            x0, x1 = max(0, x), min(320, x + 50)
            frame[y:y + 100, x0:x1] = person[:, x0 - x:x1 - x]
            visible[name] = np.array([x0, y, x1, y + 100], dtype=np.float64)
        frames.append(frame)
        truth.append(visible)
    return frames, truth


def test_tracking_keeps_identities(tiny_checkpoint, coco_mini):
    est = okspose.PoseEstimator.from_checkpoint(tiny_checkpoint, device="cpu", iou_nms=False, oks_nms=False,
                                                **PINNED)  # the caller's boxes are all kept
    frames, truth = _scene(coco_mini)
    ids: dict[str, list[int]] = {}
    rng = np.random.default_rng(0)  # boxes in a new order every frame: only the matching can keep identities
    order = [rng.permutation(len(v)) for v in truth]
    given = (np.array(list(v.values())).reshape(-1, 4)[o] for v, o in zip(truth, order))
    results = est.track(iter(frames), boxes=given, batch=5)
    for visible, result in zip(truth, results, strict=True):
        assert len(result) == len(visible)
        for name, box in visible.items():
            row = int(np.flatnonzero((result.boxes == box).all(axis=1))[0])
            ids.setdefault(name, []).append(int(result.track_ids[row]))
    switches = sum(int(np.count_nonzero(np.diff(track))) for track in ids.values())
    print(f"tracked {len(ids)} persons over {len(frames)} frames: {switches} identity switches, ids "
          f"{ {k: sorted(set(v)) for k, v in ids.items()} }")
    assert switches == 0 and len({v[0] for v in ids.values()}) == 4  # one id each, four different ones
    assert ids["D"][0] > max(ids[n][0] for n in "ABC")  # the newcomer gets a new id
    assert len(ids["C"]) < 8 and len(ids["D"]) < 10  # C did leave, D did enter late


def test_a_track_ends_after_max_age():
    sigmas = np.full(17, 0.05)
    pose = np.concatenate([np.random.default_rng(0).uniform(0, 100, (1, 17, 2)), np.ones((1, 17, 1))], axis=2)
    box = np.array([[0.0, 0.0, 100.0, 100.0]])
    for gap, same in ((3, True), (4, False)):
        tracker = Tracker(sigmas, max_age=3)
        first = tracker.update(box, pose)[0]
        for _ in range(gap):
            tracker.update(np.zeros((0, 4)), np.zeros((0, 17, 3)))
        assert (tracker.update(box, pose)[0] == first).all() == same


def test_smoothing_lowers_the_jitter_of_a_still_person():
    """A still person whose joints come with +-2 px of noise per frame (a pose network's jitter), tracked
    with and without smoothing. At rest the One-Euro filter is nearly a moving average with alpha =
    1 / (1 + fps / (2 pi min_cutoff)) = 0.17 (1 Hz, 30 fps), which shrinks the frame-to-frame differences of
    white noise by sqrt(alpha^2 / (2 - alpha)) = 0.13; beta lets the cut-off rise with the noise's own speed
    (tens of px/s: + 0.2 Hz, factor 0.16). Half is the bar."""
    rng = np.random.default_rng(0)
    still = np.concatenate([rng.uniform(20, 180, (17, 2)), np.ones((17, 1))], axis=1)
    noisy = [still + np.c_[rng.uniform(-2, 2, (17, 2)), np.zeros(17)] for _ in range(60)]
    box = np.array([[0.0, 0.0, 200.0, 200.0]])

    def moves(smoothing: Smoothing | None) -> float:
        tracker = Tracker(np.full(17, 0.05), smoothing=smoothing)
        poses = np.stack([tracker.update(box, pose[None])[1][0, :, :2] for pose in noisy])
        return float(np.linalg.norm(np.diff(poses, axis=0), axis=-1).mean())

    raw, smoothed = moves(None), moves(Smoothing())
    print(f"still person, mean frame-to-frame joint movement: {raw:.3f} px raw, {smoothed:.3f} px smoothed")
    assert smoothed < 0.5 * raw


def test_track_smooths_through_the_estimator(estimator, coco_mini):
    """track(smooth=True) filters what the network gives: the first frame as posed, later ones pulled
    towards the past (a still picture under a box that jitters)."""
    paths, boxes = _val(coco_mini)
    picture = read_image(str(paths[183709]))
    rng = np.random.default_rng(0)
    jitter = [boxes[183709][:1] + rng.uniform(-4, 4, (1, 4)) for _ in range(4)]
    raw = [r.keypoints for r in estimator.track([picture] * 4, boxes=jitter)]
    smooth = [r.keypoints for r in estimator.track([picture] * 4, boxes=jitter, smooth=True)]
    assert np.array_equal(raw[0], smooth[0]) and not np.array_equal(raw[3], smooth[3])
