"""Data selection: ks and the line on hand-computed persons, and select-data on all COCO train labels
against an independent computation written here from the rule's definition."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, SHARED_DATA

from okspose.cli import main
from okspose.config import load_config
from okspose.data.build import build_records
from okspose.data.records import load_person_records
from okspose.data.selection import (
    SelectionRule,
    keep_mask,
    keypoint_box_similarity,
    line_threshold,
    select_coco,
    select_records,
)
from okspose.keypoints import COCO17

COCO_TRAIN = SHARED_DATA / "coco-labels" / "person_keypoints_train2017.json.gz"


def _person(box: list[float], points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    kps = np.zeros((1, 17, 3))
    for j, (x, y) in enumerate(points):
        kps[0, j] = (x, y, 2)
    return np.array([box], float), kps


def test_ks_by_hand() -> None:
    # Box 101 x 201 at (10, 20): HRNet's inclusive size 100 x 200, centre (60, 120).
    # Keypoints (70, 120) and (90, 120): mean (80, 120), squared distance 400, n = 2.
    boxes, kps = _person([10, 20, 101, 201], [(70, 120), (90, 120)])
    ks, n = keypoint_box_similarity(boxes, kps, SelectionRule.literal())
    assert n.tolist() == [2]
    assert ks[0] == pytest.approx(math.exp(-400 / (2 * 1.0 * 100 * 200)))
    # Padded: width 100 < 0.75 * 200, so the box becomes 150 x 200, times 1.25^2 -> 46875.
    ks, _ = keypoint_box_similarity(boxes, kps, SelectionRule())
    assert ks[0] == pytest.approx(math.exp(-400 / (2 * 0.2**2 * 46875)))
    # At aspect 1 the box becomes 200 x 200 -> 62500.
    ks, _ = keypoint_box_similarity(boxes, kps, SelectionRule(aspect_ratio=1.0))
    assert ks[0] == pytest.approx(math.exp(-400 / (2 * 0.2**2 * 62500)))
    # A wide box grows in height instead: 301 x 101 -> 300 x 100 -> 300 x 400 -> 187500.
    boxes, kps = _person([0, 0, 301, 101], [(150, 50), (170, 50)])
    ks, _ = keypoint_box_similarity(boxes, kps, SelectionRule())
    assert ks[0] == pytest.approx(math.exp(-100 / (2 * 0.2**2 * 187500)))


def test_the_line_by_hand() -> None:
    rule = SelectionRule()
    assert line_threshold(np.array([1, 9, 17]), rule) == pytest.approx([0.45, 0.55, 0.65])
    ks = np.array([0.451, 0.45, 0.549, 0.551, 0.66, 0.64, 0.99])
    n = np.array([1, 1, 9, 9, 17, 17, 0])
    assert keep_mask(ks, n, rule).tolist() == [True, False, False, True, True, False, False]
    moved = SelectionRule(line=(0.2, 1, 0.3, 11))
    assert line_threshold(np.array([6]), moved) == pytest.approx([0.25])


def test_literal_formula_versus_implemented_on_the_same_persons() -> None:
    # Keypoint centre 60 px right of the box centre (60, 120) with n = 2, and a well-centred person.
    boxes = np.array([[10, 20, 101, 201], [10, 20, 101, 201]], float)
    kps = np.zeros((2, 17, 3))
    kps[0, :2] = [(110, 120, 2), (130, 120, 1)]
    kps[1, :12] = [(55 + j, 115 + j, 2) for j in range(12)]
    literal, default = SelectionRule.literal(), SelectionRule()
    ks_lit, n = keypoint_box_similarity(boxes, kps, literal)
    ks_def, _ = keypoint_box_similarity(boxes, kps, default)
    assert ks_lit[0] == pytest.approx(math.exp(-3600 / 40000))  # 0.91: the literal rule keeps it
    assert ks_def[0] == pytest.approx(math.exp(-3600 / 3750))  # 0.38: the implemented rule drops it
    assert keep_mask(ks_lit, n, literal).tolist() == [True, True]
    assert keep_mask(ks_def, n, default).tolist() == [False, True]


def _independent_keep(coco: dict, s: float, padded: bool, aspect: float = 0.75, padding: float = 1.25) -> int:
    """The rule from its definition: HRNet's clean box (clipped, inclusive size), its centre, the mean of
    the labeled keypoints, the padded aspect-fixed or raw area, the line through (0.45, 1) and (0.65, 17)."""
    size = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    anns = [a for a in coco["annotations"] if not a["iscrowd"] and any(a["keypoints"][2::3])]
    box = np.array([a["bbox"] for a in anns], float)
    wh = np.array([size[a["image_id"]] for a in anns], float)
    kp = np.array([a["keypoints"] for a in anns], float).reshape(len(anns), 17, 3)
    x1 = np.maximum(box[:, 0], 0)
    y1 = np.maximum(box[:, 1], 0)
    x2 = np.minimum(wh[:, 0] - 1, x1 + np.maximum(0, box[:, 2] - 1))
    y2 = np.minimum(wh[:, 1] - 1, y1 + np.maximum(0, box[:, 3] - 1))
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    vis = kp[..., 2] > 0
    n = vis.sum(1)
    mx = (kp[..., 0] * vis).sum(1) / n
    my = (kp[..., 1] * vis).sum(1) / n
    if padded:
        w, h = np.where(w > aspect * h, w, h * aspect), np.where(w > aspect * h, w / aspect, h)
        area = w * h * padding**2
    else:
        area = w * h
    ks = np.exp(-((cx - mx) ** 2 + (cy - my) ** 2) / (2 * s**2 * area))
    return int((ks > 0.45 + (n - 1) * 0.2 / 16).sum())


@pytest.fixture(scope="module")
def coco_train() -> dict:
    if not COCO_TRAIN.is_file():
        pytest.skip(f"{COCO_TRAIN} not found")
    with gzip.open(COCO_TRAIN) as f:
        return json.load(f)


def test_select_data_on_all_coco_train_labels(coco_train: dict, tmp_path: Path, capsys) -> None:
    out, report, plot = tmp_path / "kept.json", tmp_path / "report.json", tmp_path / "ks_n.png"
    rc = main(["select-data", "--gt", str(COCO_TRAIN), "--out", str(out), "--report", str(report),
               "--plot", str(plot)])
    assert rc == 0
    expected = _independent_keep(coco_train, s=0.2, padded=True, aspect=1.0)  # coco_hg8_256's 256x256
    kept = json.loads(out.read_text())
    rep = json.loads(report.read_text())
    assert len(coco_train["annotations"]) == 149813
    assert len(kept["annotations"]) == rep["kept"] == expected
    assert rep["persons"] == 149813 and rep["kept"] + rep["dropped"] == 149813
    assert sum(v["dropped"] for v in rep["by_n"].values()) == rep["dropped"]
    assert kept["images"] == coco_train["images"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    literal_kept = _independent_keep(coco_train, s=1.0, padded=False)
    _, sel = select_coco(coco_train, SelectionRule.literal())
    assert int(sel.keep.sum()) == literal_kept
    print(f"\nCOCO train: implemented rule drops {149813 - expected}, literal formula {149813 - literal_kept}")
    assert 149813 - literal_kept < 0.001 * 149813 < 0.01 * 149813 < 149813 - expected


def test_select_data_draws_dropped_persons_over_their_images(tmp_path: Path) -> None:
    root = SHARED_DATA / "coco128"
    if not root.is_dir():
        pytest.skip("coco128 not found")
    plot = tmp_path / "ks_n.png"
    rc = main(["select-data", "--gt", str(root / "annotations/person_keypoints_train2017.json"),
               "--images", str(root / "train2017"), "--out", str(tmp_path / "kept.json.gz"), "--plot", str(plot)])
    assert rc == 0 and plot.stat().st_size > 50_000
    kept = json.loads(gzip.decompress((tmp_path / "kept.json.gz").read_bytes()))
    assert 0 < len(kept["annotations"]) < 139


def test_select_data_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["select-data", "--gt", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o.json")]) == 2
    assert "nope.json: annotation file not found" in capsys.readouterr().err


def test_training_selection_is_the_same_rule(coco_mini: Path) -> None:
    overrides = [f"data.root={coco_mini}", "data.train_images=train2017"]
    cfg = load_config(CONFIGS / "coco_mini_tiny.yaml", overrides)
    selected = build_records(load_config(CONFIGS / "coco_mini_tiny.yaml", [*overrides, "data.selection=true"]),
                             "train")
    records = load_person_records(cfg.data_path("train_ann"), cfg.data_path("train_images"), COCO17)
    w, h = cfg.data.input_size
    rule = SelectionRule(aspect_ratio=w / h, padding=cfg.data.padding)
    assert selected.ann_ids.tolist() == select_records(records, rule).ann_ids.tolist()
    _, sel = select_coco(json.loads(cfg.data_path("train_ann").read_text()), rule)
    assert sorted(selected.ann_ids.tolist()) == sorted(
        json.loads(cfg.data_path("train_ann").read_text())["annotations"][i]["id"] for i in sel.index[sel.keep])
    assert len(selected) < len(records)


def _kept_ids(out: Path) -> list[int]:
    return sorted(a["id"] for a in json.loads(out.read_text())["annotations"])


def test_select_data_drops_what_training_with_selection_drops(tmp_path: Path, capsys) -> None:
    """Without --config, select-data judges at the default training config's geometry (coco_hg8_256:
    256x256, padding 1.25), so it keeps exactly the persons ``data.selection=true`` trains on. On coco128
    val the 192x256 aspect ratio would drop 12 persons instead of 7."""
    root = SHARED_DATA / "coco128"
    if not root.is_dir():
        pytest.skip("coco128 not found")
    gt = root / "annotations/person_keypoints_val2017.json"
    assert main(["select-data", "--gt", str(gt), "--out", str(tmp_path / "kept.json")]) == 0
    printed = capsys.readouterr().out
    assert "geometry: 256x256 input (aspect 1.00), padding 1.25 from coco_hg8_256" in printed
    overrides = [f"data.root={root}", f"data.train_ann={gt}", "data.train_images=val2017"]
    cfg = load_config("coco_hg8_256", overrides)
    selected = build_records(load_config("coco_hg8_256", [*overrides, "data.selection=true"]), "train")
    records = build_records(cfg, "train")
    assert sorted(selected.ann_ids.tolist()) == _kept_ids(tmp_path / "kept.json")
    assert select_records(records, SelectionRule.from_config(cfg.data)).ann_ids.tolist() == selected.ann_ids.tolist()
    assert len(records) - len(selected) == 7


def test_select_data_takes_a_config_and_explicit_geometry_wins(tmp_path: Path, capsys) -> None:
    gt = SHARED_DATA / "coco128" / "annotations/person_keypoints_val2017.json"
    if not gt.is_file():
        pytest.skip(f"{gt} not found")
    config = tmp_path / "hrnet_like.yaml"
    config.write_text("data:\n  input_size: [192, 256]\n  heatmap_size: [48, 64]\n  selection_s: 0.25\n")
    data = json.loads(gt.read_text())
    for args, rule, shown in [
        (["--config", str(config)], SelectionRule(s=0.25, aspect_ratio=0.75),
         f"geometry: 192x256 input (aspect 0.75), padding 1.25 from {config}"),
        (["--config", str(config), "--aspect-ratio", "1", "--padding", "1.5"],
         SelectionRule(s=0.25, aspect_ratio=1.0, padding=1.5), "geometry: aspect 1.00 from --aspect-ratio, padding 1.5 "
         "from --padding"),
    ]:
        out = tmp_path / "kept.json"
        assert main(["select-data", "--gt", str(gt), "--out", str(out), *args]) == 0
        assert shown in capsys.readouterr().out
        _, sel = select_coco(data, rule)
        assert _kept_ids(out) == sorted(data["annotations"][i]["id"] for i in sel.index[sel.keep])
