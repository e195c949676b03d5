"""The synthetic people data set: COCO-valid, deterministic, and its labels agree with what is drawn."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, SHARED_DATA
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from okspose.data.synthetic import MIN_VISIBLE_AREA, generate_synthetic_coco, sample_body
from okspose.keypoints import COCO17

W, H = 320, 256


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    path = generate_synthetic_coco(tmp_path_factory.mktemp("synth"), "train", num_images=50, seed=0)
    coco = json.loads(path.read_text())
    coco["path"] = path
    return coco


def _keypoints(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)


def _by_image(coco: dict) -> dict[int, list[dict]]:
    """Annotations per image in draw order (ids are assigned back to front)."""
    out: dict[int, list[dict]] = defaultdict(list)
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        out[ann["image_id"]].append(ann)
    return out


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    a = generate_synthetic_coco(tmp_path / "a", "train", num_images=4, seed=3)
    b = generate_synthetic_coco(tmp_path / "b", "train", num_images=4, seed=3)
    assert a == tmp_path / "a" / "annotations" / "person_keypoints_train.json"
    assert a.read_bytes() == b.read_bytes()
    for name in ("000000000001.jpg", "000000000004.jpg"):
        image_a, image_b = (tmp_path / d / "train" / name for d in ("a", "b"))
        assert image_a.read_bytes() == image_b.read_bytes()


def test_seed_and_split_change_the_pictures(tmp_path: Path) -> None:
    generate_synthetic_coco(tmp_path / "a", "train", num_images=2, seed=0)
    generate_synthetic_coco(tmp_path / "b", "train", num_images=2, seed=1)
    generate_synthetic_coco(tmp_path / "a", "val", num_images=2, seed=0)
    first = (tmp_path / "a" / "train" / "000000000001.jpg").read_bytes()
    assert first != (tmp_path / "b" / "train" / "000000000001.jpg").read_bytes()
    assert first != (tmp_path / "a" / "val" / "000000000001.jpg").read_bytes()


def test_images_do_not_depend_on_each_other(tmp_path: Path) -> None:
    generate_synthetic_coco(tmp_path / "a", "train", num_images=1, seed=0)
    generate_synthetic_coco(tmp_path / "b", "train", num_images=3, seed=0)
    name = "000000000001.jpg"
    assert (tmp_path / "a" / "train" / name).read_bytes() == (tmp_path / "b" / "train" / name).read_bytes()


def test_pycocotools_loads_it(dataset: dict) -> None:
    coco = COCO(str(dataset["path"]))
    assert len(coco.getImgIds()) == 50
    assert coco.getCatIds(catNms=["person"]) == [1]
    cat = coco.loadCats(1)[0]
    assert cat["keypoints"] == list(COCO17.joints)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO17.skeleton]
    assert dataset["info"]["synthetic"] is True and dataset["info"]["seed"] == 0
    img = coco.loadImgs(1)[0]
    assert (img["width"], img["height"], img["file_name"]) == (W, H, "000000000001.jpg")
    assert (dataset["path"].parents[1] / "train" / img["file_name"]).is_file()
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    assert coco.annToMask(ann).sum() == ann["area"]


def test_flags_follow_coco(dataset: dict) -> None:
    for ann in dataset["annotations"]:
        kp = _keypoints(ann)
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert np.all(kp[v == 0, :2] == 0)
        xy = kp[v > 0, :2]
        assert np.all((xy >= 0) & (xy <= [W - 1, H - 1]))
        assert ann["num_keypoints"] == int((v > 0).sum())
        assert ann["category_id"] == 1 and ann["iscrowd"] == 0


def test_area_bbox_and_segmentation_agree(dataset: dict) -> None:
    for ann in dataset["annotations"]:
        rle = dict(ann["segmentation"])
        assert rle["size"] == [H, W] and isinstance(rle["counts"], str)
        assert ann["area"] == float(mask_utils.area(rle)) >= MIN_VISIBLE_AREA
        x, y, w, h = ann["bbox"]
        assert np.allclose(ann["bbox"], mask_utils.toBbox(rle))
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= W and y + h <= H


def test_occlusion_flags_agree_with_masks(dataset: dict) -> None:
    """v=1 exactly where a person drawn later covers the joint (or a face point is behind the head)."""
    checked = 0
    for anns in _by_image(dataset).values():
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in anns]
        for k, ann in enumerate(anns):
            kp = _keypoints(ann)
            for j in np.flatnonzero(kp[:, 2] > 0):
                col, row = np.round(kp[j, :2]).astype(int)
                in_front = any(m[row, col] for m in masks[k + 1:])
                own = masks[k][row, col]
                if in_front:
                    assert kp[j, 2] == 1
                    checked += 1
                elif kp[j, 2] == 2:
                    assert own
                else:  # far side of the head, or behind a person too small to be annotated
                    assert j < 5 or not own
    assert checked > 0


def test_set_has_crowds_occlusion_and_truncation(dataset: dict) -> None:
    per_image = _by_image(dataset)
    kps = np.stack([_keypoints(a) for a in dataset["annotations"]])
    v = kps[..., 2]
    assert sum(len(a) > 1 for a in per_image.values()) >= 10
    assert (v[:, 5:] == 1).any(axis=1).sum() >= 5  # body joints hidden by someone in front
    assert (v == 0).any(axis=1).sum() >= 5  # people cut by the image border
    heights = np.array([a["bbox"][3] for a in dataset["annotations"]])
    assert heights.min() < 0.5 * H and heights.max() > 0.8 * H


def test_projected_arm_proportions(dataset: dict) -> None:
    """Foreshortening varies single poses, but the typical upper-arm / forearm ratio must look human."""
    ratios = []
    for ann in dataset["annotations"]:
        kp = _keypoints(ann)
        for sh, el, wr in ((5, 7, 9), (6, 8, 10)):
            if (kp[[sh, el, wr], 2] > 0).all():
                upper = np.linalg.norm(kp[el, :2] - kp[sh, :2])
                fore = np.linalg.norm(kp[wr, :2] - kp[el, :2])
                if fore > 3:
                    ratios.append(upper / fore)
    assert 1.0 < np.median(ratios) < 1.6


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def test_bodies_have_human_proportions_and_joint_limits() -> None:
    for i in range(200):
        j = sample_body(np.random.default_rng(i)).joints

        def seg(a: int, b: int, j=j) -> float:
            return float(np.linalg.norm(j[b] - j[a]))

        for sh, el, wr, hip, kn, an in ((5, 7, 9, 11, 13, 15), (6, 8, 10, 12, 14, 16)):
            assert 1.1 < seg(sh, el) / seg(el, wr) < 1.45
            assert 0.85 < seg(hip, kn) / seg(kn, an) < 1.15
            assert 0.15 < seg(sh, el) < 0.22 and 0.22 < seg(hip, kn) < 0.27  # fractions of body height
            assert _angle(j[el] - j[sh], j[wr] - j[el]) <= 145 + 1e-6
            assert _angle(j[kn] - j[hip], j[an] - j[kn]) <= 130 + 1e-6
        assert 0.19 < seg(5, 6) < 0.27 and seg(11, 12) < seg(5, 6)
        # Never seen from behind: the person's left is always on the image right.
        assert j[5, 0] > j[6, 0] and j[11, 0] > j[12, 0] and j[1, 0] > j[2, 0]


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_synthetic_coco(tmp_path, num_images=1, max_people=0)
    with pytest.raises(ValueError):
        generate_synthetic_coco(tmp_path, num_images=1, seed=-1)


@pytest.fixture(scope="module")
def corrupted_set(tmp_path_factory) -> Path:
    from okspose.cli import main

    root = tmp_path_factory.mktemp("corrupt")
    assert main(["make-synthetic", str(root), "--train", "30", "--val", "0", "--corrupt", "0.25", "--seed", "1",
                 "--aic", "12"]) == 0
    return root


def test_corrupted_persons_are_recorded_and_only_their_keypoints_lie(corrupted_set: Path) -> None:
    ann = corrupted_set / "annotations"
    clean = json.loads((ann / "person_keypoints_train_clean.json").read_text())
    bad = json.loads((ann / "person_keypoints_train.json").read_text())
    record = json.loads((ann / "person_keypoints_train_corrupted.json").read_text())["corrupted"]
    ids = {r["id"] for r in record}
    people = [a for a in clean["annotations"] if a["num_keypoints"] > 0]
    assert len(ids) == len(record) == round(0.25 * len(people))
    assert {r["kind"] for r in record} == {"swap", "displace"}
    clean_by_id = {a["id"]: a for a in clean["annotations"]}
    for a in bad["annotations"]:
        c = clean_by_id[a["id"]]
        assert (a["bbox"], a["area"], a["segmentation"]) == (c["bbox"], c["area"], c["segmentation"])
        assert (a["keypoints"] != c["keypoints"]) == (a["id"] in ids)
    for r in record:
        if r["kind"] == "swap":
            assert clean_by_id[r["source_id"]]["image_id"] == r["image_id"]
            assert next(a for a in bad["annotations"] if a["id"] == r["id"])["keypoints"] == \
                clean_by_id[r["source_id"]]["keypoints"]


def test_selection_drops_corrupted_persons_far_more_often_than_clean_ones(corrupted_set: Path, tmp_path: Path) -> None:
    """select-data end to end on the corrupted synthetic set. The corruption moves poses 0.5-1 box sizes away,
    which this rule catches by construction, so this is a plumbing check; whether the rule finds COCO's real
    false annotations is test_selection_on_real_coco_labels_drops_poses_off_their_box_and_keeps_centred_ones."""
    from okspose.cli import main

    ann = corrupted_set / "annotations"
    out = tmp_path / "kept.json"
    assert main(["select-data", "--gt", str(ann / "person_keypoints_train.json"), "--out", str(out),
                 "--aspect-ratio", "1"]) == 0
    corrupted = {r["id"] for r in json.loads((ann / "person_keypoints_train_corrupted.json").read_text())["corrupted"]}
    judged = {a["id"] for a in json.loads((ann / "person_keypoints_train.json").read_text())["annotations"]
              if a["num_keypoints"] > 0}
    kept = {a["id"] for a in json.loads(out.read_text())["annotations"]}
    bad_dropped = len(corrupted - kept) / len(corrupted)
    clean_dropped = len((judged - corrupted) - kept) / len(judged - corrupted)
    print(f"\nselection drops {bad_dropped:.0%} of {len(corrupted)} corrupted persons and {clean_dropped:.0%} of "
          f"{len(judged - corrupted)} clean ones")
    assert bad_dropped >= 0.7 and clean_dropped <= 0.1


COCO_VAL_LABELS = SHARED_DATA / "coco-labels" / "person_keypoints_val2017.json.gz"


def test_selection_on_real_coco_labels_drops_poses_off_their_box_and_keeps_centred_ones() -> None:
    """Real COCO val persons whose answer is known from the geometry alone, computed here without the rule:
    persons whose labelled keypoints all lie outside their box, with their mean more than half the box's
    longer side L from the box centre (COCO's false annotations), must be dropped; persons with >= 10
    labelled keypoints, all inside a box of >= 50 px, their mean within 0.05 L of its centre, must be kept.
    Both hold for any input aspect ratio in [0.75, 1]: the padded area is between 1.17 L^2 and 2.08 L^2, so
    ks < exp(-0.25 / (0.08 * 2.08)) = 0.22 < 0.45 for the first and ks > exp(-0.0025 / (0.08 * 1.17)) = 0.97
    > 0.65 for the second (s = 0.2; the line's ks runs from 0.45 to 0.65)."""
    from okspose.config import load_config
    from okspose.data.selection import SelectionRule, select_coco

    if not COCO_VAL_LABELS.is_file():
        pytest.skip(f"{COCO_VAL_LABELS} not found")
    with gzip.open(COCO_VAL_LABELS) as f:
        coco = json.load(f)
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    far, centred = set(), set()
    for a in coco["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        xy = kp[kp[:, 2] > 0, :2]
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        if not len(xy) or x < 0 or y < 0 or x + w > width or y + h > height:
            continue  # boxes inside their image only: no clipping to reason about
        longer = max(w, h)
        off = np.hypot(*(xy.mean(0) - [x + w / 2, y + h / 2]))
        inside = (xy[:, 0] >= x) & (xy[:, 0] <= x + w) & (xy[:, 1] >= y) & (xy[:, 1] <= y + h)
        if off > 0.5 * longer and not inside.any():
            far.add(a["id"])
        elif len(xy) >= 10 and min(w, h) >= 50 and off < 0.05 * longer and inside.all():
            centred.add(a["id"])
    assert len(far) >= 5 and len(centred) >= 300, (len(far), len(centred))
    training = load_config(CONFIGS / "coco_hg8_256.yaml")
    for rule in (SelectionRule(), SelectionRule.from_config(training.data)):  # HRNet's 0.75, okspose's 256x256
        kept, _ = select_coco(coco, rule)
        kept_ids = {a["id"] for a in kept["annotations"]}
        assert not far & kept_ids, (rule, sorted(far & kept_ids))
        assert centred <= kept_ids, (rule, sorted(centred - kept_ids)[:10])


def test_aic_layout_set_has_head_top_and_neck_and_other_scenes(corrupted_set: Path) -> None:
    from okspose.data.aic import load_aic_records
    from okspose.keypoints import AIC14

    path = corrupted_set / "aic" / "keypoint_annotations.json"
    raw = json.loads(path.read_text())
    assert len(raw) == 12 and all(len(r["image_id"]) == 40 for r in raw)
    people = [(r["human_annotations"][k], v) for r in raw for k, v in r["keypoint_annotations"].items()]
    assert all(len(v) == 42 and set(v[2::3]) <= {1, 2, 3} for _, v in people)
    records = load_aic_records(path, corrupted_set / "aic" / "images", schema=AIC14)  # validated like COCO
    assert len(records) == len(people)
    kp = records.keypoints
    both = (kp[:, 12, 2] > 0) & (kp[:, 13, 2] > 0) & (kp[:, [0, 3], 2] > 0).all(1)
    shoulders = kp[both][:, [0, 3], :2].mean(1)
    neck, top = kp[both, 13, :2], kp[both, 12, :2]
    width = np.linalg.norm(kp[both, 0, :2] - kp[both, 3, :2], axis=1)
    torso = np.linalg.norm(shoulders - kp[both][:, [6, 9], :2].mean(1), axis=1)
    assert both.sum() >= 10
    assert np.median(np.linalg.norm(neck - shoulders, axis=1) / torso) < 0.35  # the neck sits between the shoulders
    assert np.median(np.linalg.norm(top - neck, axis=1) / torso) > 0.5  # the head top well above it
    assert (width < 2 * torso).all()
    # Other scenes: smaller people than the COCO-like set, more of them per picture.
    coco = json.loads((corrupted_set / "annotations" / "person_keypoints_train_clean.json").read_text())
    coco_heights = np.median([a["bbox"][3] / 256 for a in coco["annotations"]])
    aic_heights = np.median([(b[3] - b[1]) / 300 for b, _ in people])
    assert aic_heights < 0.75 * coco_heights
    assert len(people) / 12 > len(coco["annotations"]) / 30
