"""Pose drawing: pixels change where joints and limbs are, nowhere else, and thresholds are honoured."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from okspose.errors import OksposeError
from okspose.inference.instances import records_from_detections
from okspose.keypoints import COCO17, MPII16
from okspose.visualize import (
    _limb_side,
    draw_pictures,
    draw_poses,
    joint_colors,
    limb_colors,
    make_grid,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_MINI = DATA / "coco-mini"

H, W = 240, 320


def blank() -> np.ndarray:
    return np.full((H, W, 3), 90, np.uint8)


def person(x0: float = 100.0, y0: float = 40.0, score: float = 0.9) -> np.ndarray:
    """A plausible upright COCO-17 stick figure [1, 17, 3] in the top-left part of the image."""
    xy = np.array([
        [30, 0], [33, -3], [27, -3], [37, 0], [23, 0], [45, 20], [15, 20], [50, 45], [10, 45],
        [52, 70], [8, 70], [40, 75], [20, 75], [42, 105], [18, 105], [44, 135], [16, 135],
    ], dtype=float) + [x0, y0]
    return np.concatenate([xy, np.full((17, 1), score)], axis=1)[None]


def changed(a: np.ndarray, b: np.ndarray, x: float, y: float) -> bool:
    return not np.array_equal(a[round(y), round(x)], b[round(y), round(x)])


def test_joints_drawn_far_pixels_untouched():
    img = blank()
    kpts = person()
    out = draw_poses(img, kpts)
    assert out is not img and out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, blank())  # the input is left alone
    for x, y, _ in kpts[0]:
        assert changed(img, out, x, y)
    assert np.array_equal(out[:, 230:], img[:, 230:])  # right of the figure
    assert np.array_equal(out[200:, :], img[200:, :])  # below it


def test_limbs_drawn_between_joints():
    kpts = person()
    out = draw_poses(blank(), kpts)
    for a, b in COCO17.skeleton:
        mid = (kpts[0, a, :2] + kpts[0, b, :2]) / 2
        assert changed(blank(), out, *mid), (a, b)


def test_kpt_thr_hides_joint_and_its_limbs():
    kpts = person()
    kpts[0, 9, 2] = 0.2  # left wrist
    wrist = kpts[0, 9, :2]
    forearm_mid = (kpts[0, 7, :2] + wrist) / 2
    hidden = draw_poses(blank(), kpts, kpt_thr=0.3)
    assert not changed(blank(), hidden, *wrist)
    assert not changed(blank(), hidden, *forearm_mid)
    shown = draw_poses(blank(), kpts, kpt_thr=0.1)
    assert changed(blank(), shown, *wrist)
    assert changed(blank(), shown, *forearm_mid)


def test_non_finite_joints_are_skipped():
    kpts = person()
    kpts[0, 9, :2] = np.nan
    out = draw_poses(blank(), kpts)
    assert changed(blank(), out, *kpts[0, 7, :2])


@pytest.mark.parametrize("kpts", [np.zeros((0, 17, 3)), np.zeros((0,)), []])
def test_zero_people(kpts):
    out = draw_poses(blank(), kpts)
    assert np.array_equal(out, blank())
    assert np.array_equal(draw_poses(blank(), kpts, boxes=np.zeros((0, 4)), scores=np.zeros(0)), blank())


def test_boxes_and_scores():
    kpts = person()
    box = np.array([[90.0, 30.0, 80.0, 170.0]])
    out = draw_poses(blank(), kpts, boxes=box, scores=np.array([0.87]))
    assert changed(blank(), out, 90, 120)  # left edge of the box
    assert changed(blank(), out, 170, 120)  # right edge
    assert np.array_equal(out[:, 260:], blank()[:, 260:])
    labelled = draw_poses(blank(), kpts, scores=np.array([0.87]))
    assert not np.array_equal(labelled, draw_poses(blank(), kpts))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="keypoints must be"):
        draw_poses(blank(), np.zeros((1, 16, 3)))
    with pytest.raises(ValueError, match="boxes has 2 rows"):
        draw_poses(blank(), person(), boxes=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="uint8"):
        draw_poses(blank().astype(np.float32), person())


def test_other_schema():
    kpts = np.concatenate([np.random.default_rng(0).uniform(20, 200, (2, 16, 2)), np.ones((2, 16, 1))], -1)
    out = draw_poses(blank(), kpts, schema=MPII16)
    assert changed(blank(), out, *kpts[1, 5, :2])


def test_palette_sides_distinct():
    colors = limb_colors(COCO17)
    assert len({tuple(c) for c in colors}) == len(COCO17.skeleton)  # every limb its own colour
    hue = cv2.cvtColor(colors[None], cv2.COLOR_BGR2HSV)[0, :, 0].astype(int) * 2  # degrees
    sides = np.array([_limb_side(COCO17, a, b) for a, b in COCO17.skeleton])
    assert set(sides) == {"left", "right", "centre"}
    left, right, centre = (hue[sides == s] for s in ("left", "right", "centre"))
    assert left.min() >= 170 and left.max() <= 290  # cyan..violet
    assert np.all((right <= 45) | (right >= 340))  # red..orange
    assert centre.min() >= 90 and centre.max() <= 150  # green
    joints = joint_colors(COCO17)
    assert not np.array_equal(joints[5], joints[6])  # left vs right shoulder


def test_line_width_scales_with_image_size():
    small, big = blank(), cv2.resize(blank(), (W * 4, H * 4))
    n_small = np.count_nonzero((draw_poses(small, person()) != small).any(-1))
    big_kpts = person()
    big_kpts[..., :2] *= 4
    n_big = np.count_nonzero((draw_poses(big, big_kpts) != big).any(-1))
    assert n_big > 6 * n_small  # 4x the length alone would give about 4x the pixels


def test_low_scoring_people_are_not_drawn():
    """The person above the instance threshold is drawn with its box; the one below leaves no pixel."""
    kpts = np.concatenate([person(20.0), person(200.0)])
    boxes = np.array([[10.0, 30.0, 80.0, 170.0], [190.0, 30.0, 80.0, 170.0]])
    out = draw_poses(blank(), kpts, boxes=boxes, scores=np.array([0.9, 0.1]))
    assert all(changed(blank(), out, x, y) for x, y, _ in kpts[0])
    assert changed(blank(), out, 10, 120)  # the kept person's box
    assert np.array_equal(out[:, 180:], blank()[:, 180:])  # nothing of the other one: skeleton, box or label
    lowered = draw_poses(blank(), kpts, boxes=boxes, scores=np.array([0.9, 0.1]), instance_thr=0.05)
    assert changed(blank(), lowered, *kpts[1, 5, :2]) and changed(blank(), lowered, 190, 120)


def test_people_without_a_shown_joint_leave_no_empty_box():
    kpts = np.concatenate([person(20.0), person(200.0, score=0.2)])  # second: every joint below 0.3
    boxes = np.array([[10.0, 30.0, 80.0, 170.0], [190.0, 30.0, 80.0, 170.0]])
    out = draw_poses(blank(), kpts, boxes=boxes, scores=np.array([0.9, 0.9]))
    assert changed(blank(), out, 10, 120)
    assert np.array_equal(out[:, 180:], blank()[:, 180:])


@pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"shared data not found at {DATA}")
def test_real_image_ground_truth():
    from okspose.evaluation import load_coco

    coco = load_coco(COCO_MINI / "annotations" / "person_keypoints_val2017.json")
    ann = next(a for a in coco.dataset["annotations"] if a["num_keypoints"] >= 10)
    info = coco.loadImgs(ann["image_id"])[0]
    img = cv2.imread(str(COCO_MINI / "val2017" / info["file_name"]))
    assert img is not None
    k = np.array(ann["keypoints"], float).reshape(-1, 3)
    k[:, 2] = k[:, 2] > 0  # labelled joints drawn, unlabelled ones not
    out = draw_poses(img, k)
    for x, y, v in k:
        if v > 0:
            assert changed(img, out, x, y)


def test_make_grid_layout():
    imgs = [np.full((100, 200, 3), 50 * (i + 1), np.uint8) for i in range(3)]
    grid = make_grid(imgs, cols=2, cell=(160, 120), gap=4)
    assert grid.shape == (2 * 124 + 4, 2 * 164 + 4, 3)
    # 200x100 into 160x120: scaled to 160x80, centred vertically
    assert np.all(grid[4 + 20: 4 + 100, 4:164] == 50)
    assert np.all(grid[4 + 20: 4 + 100, 168:328] == 100)
    assert np.all(grid[128 + 20: 128 + 100, 4:164] == 150)
    assert np.all(grid[4:4 + 19, 4:164] == 32)  # letterbox bars
    assert np.all(grid[128:, 168:] == 32)  # missing fourth cell
    assert make_grid(imgs[:1], cols=4, cell=(50, 50)).shape == (58, 58, 3)
    assert make_grid([np.zeros((10, 10), np.uint8)], cols=1, cell=(20, 20)).shape == (28, 28, 3)
    with pytest.raises(ValueError):
        make_grid([], cols=2, cell=(10, 10))


def _draw_one(tmp_path: Path, name: str, out_dir: Path) -> list[Path]:
    """draw_pictures on one picture (JPEG bytes, whatever its name says) with one person."""
    src = tmp_path / name
    src.write_bytes(cv2.imencode(".jpg", blank())[1].tobytes())
    records = records_from_detections({1: str(src)}, {1: (np.array([[100.0, 40.0, 60.0, 140.0]]), np.ones(1))}, 17)
    return draw_pictures(records, person(), np.ones(1), COCO17, out_dir, kpt_thr=0.3, instance_thr=0.3)


def test_pictures_are_written_whole(tmp_path):
    written = _draw_one(tmp_path, "pic.jpg", tmp_path / "out")
    assert written == [tmp_path / "out" / "pic.jpg"]
    for path in (*written, tmp_path / "out" / "overview.jpg"):
        assert cv2.imread(str(path)) is not None, path
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_a_picture_that_cannot_be_written_is_an_error(tmp_path):
    """An extension OpenCV cannot encode is a one-line error naming the file; a target that cannot be written
    (a folder is in the way) fails too instead of being skipped without a word."""
    with pytest.raises(OksposeError, match=r"pic\.xyz: .*cannot encode"):
        _draw_one(tmp_path, "pic.xyz", tmp_path / "out")
    (tmp_path / "blocked" / "pic.jpg").mkdir(parents=True)
    with pytest.raises(OSError, match="pic.jpg"):
        _draw_one(tmp_path, "pic.jpg", tmp_path / "blocked")
