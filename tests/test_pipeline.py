"""End to end with detector boxes: detections file -> pose -> rescoring -> IoU/OKS-NMS -> COCO results,
and Team OKS's ablation table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from pycocotools.coco import COCO

from okspose.cli import main
from okspose.config import load_config
from okspose.evaluation import evaluate_keypoints
from okspose.fileio import save_checkpoint
from okspose.inference.ablation import COLUMNS, ROWS
from okspose.inference.poser import Poser
from okspose.inference.scoring import summary_path
from okspose.models.build import build_model

SAMPLES = SHARED_DATA / "samples" / "coco"
TINY = ["model.num_features=32", "train.workers=0", "test.batch_size=32"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small untrained network: these tests check the plumbing and the file contract, not accuracy."""
    cfg = load_config(CONFIGS / "coco_mini_tiny.yaml", TINY)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    save_checkpoint({"model": build_model(cfg).state_dict()}, path)
    return path


def _samples_args() -> list[str]:
    if not SAMPLES.is_dir():
        pytest.skip("samples/coco not found")
    return [f"data.root={SAMPLES}", "data.val_ann=test_coco.json", "data.val_images=.", *TINY]


def test_real_detections_end_to_end(checkpoint, tmp_path, capsys, monkeypatch):
    """A real detector's boxes (AP_H 56 on the 4 sample pictures) through posing, rescoring, IoU-NMS and
    OKS-NMS, with a network replaced by an exact oracle (each box gets the labelled pose of the person it
    overlaps most, joint scores 1): every result is a labelled pose of its picture, scored by its box,
    each person once (OKS-NMS removes the copies the other boxes on it made), so AP is 1 exactly; without
    OKS-NMS the copies are false positives."""
    oracle = OraclePeople(SAMPLES / "test_coco.json")
    oracle.poses, oracle.conf = [labelled_pose(a) for a in oracle.people], [1.0] * len(oracle.people)
    monkeypatch.setattr(Poser, "keypoints_of", lambda poser, records, progress=False:
                        oracle.keypoints_of(poser, records, progress))
    dets = json.loads((SAMPLES / "test_coco_det_AP_H_56.json").read_text())
    covered = {int(np.argmax(_iou(np.array(d["bbox"]), oracle.boxes) * (oracle.image_ids == d["image_id"])))
               for d in dets}
    assert covered == set(range(len(oracle.people)))  # every labelled person is some box's best match
    args = ["test", str(CONFIGS / "coco_mini_tiny.yaml"), *_samples_args(), "--checkpoint", str(checkpoint),
            "--detections", str(SAMPLES / "test_coco_det_AP_H_56.json")]
    out = tmp_path / "results.json"
    assert main([*args, "--out", str(out)]) == 0
    assert "AP50" in capsys.readouterr().out
    results = json.loads(out.read_text())
    poses = np.array(oracle.poses)
    whose = []  # the labelled person of each result's picture whose pose it is (results round to 1e-3 px)
    for r in results:
        mine = np.flatnonzero(oracle.image_ids == r["image_id"])
        off = np.abs(poses[mine] - np.array(r["keypoints"]).reshape(17, 3)[:, :2]).max(axis=(1, 2))
        assert off.min() < 1e-2, (r["image_id"], off.min())
        whose.append(int(mine[np.argmin(off)]))
    assert sorted(whose) == list(range(len(oracle.people)))  # each person once, in its own picture
    det_scores = {(d["image_id"], d["score"]) for d in dets}
    assert all(any(i == r["image_id"] and abs(s - r["score"]) < 1e-9 for i, s in det_scores) for r in results)
    assert evaluate_keypoints(SAMPLES / "test_coco.json", out)["AP"] == 1.0
    COCO(str(SAMPLES / "test_coco.json")).loadRes(str(out))  # pycocotools accepts the file
    assert main([*args, "test.oks_nms=false", "--out", str(tmp_path / "no_oks_nms.json")]) == 0
    assert evaluate_keypoints(SAMPLES / "test_coco.json", tmp_path / "no_oks_nms.json")["AP"] < 1.0


def test_empty_detections_give_an_empty_valid_results_file(checkpoint, tmp_path):
    empty = tmp_path / "dets.json"
    empty.write_text("[]")
    out = tmp_path / "results.json"
    code = main(["test", str(CONFIGS / "coco_mini_tiny.yaml"), *_samples_args(), "--checkpoint", str(checkpoint),
                 "--detections", str(empty), "--out", str(out)])
    assert code == 0 and json.loads(out.read_text()) == []


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one xywh box ``a`` with boxes ``b`` [n, 4]."""
    lo, hi = np.maximum(a[:2], b[:, :2]), np.minimum(a[:2] + a[2:], b[:, :2] + b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


def labelled_pose(ann: dict) -> np.ndarray:
    """[17, 2]: the labelled joints where they are labelled; the others spread across the person's box (a
    network predicts them somewhere; at (0, 0) they would coincide between persons and fool OKS-NMS)."""
    kp = np.array(ann["keypoints"], float).reshape(17, 3)
    x, y, w, h = ann["bbox"]
    filler = np.stack([x + w * np.linspace(0.2, 0.8, 17), y + h * np.linspace(0.1, 0.9, 17)], axis=1)
    return np.where(kp[:, 2:] > 0, kp[:, :2], filler)


class OraclePeople:
    """What an oracle "network" answers for the coco-mini val persons with keypoints: for every second
    person its labelled pose exactly with joint scores in [0.7, 1], for the others a pose a quarter of the
    person's size off with joint scores in [0.25, 0.5]; and a box score per person that knows nothing."""

    def __init__(self, gt_file: Path, seed: int = 1):
        rng = np.random.default_rng(seed)
        data = json.loads(gt_file.read_text())
        self.people = [a for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
        self.boxes = np.array([a["bbox"] for a in self.people], float)
        self.image_ids = np.array([a["image_id"] for a in self.people])
        self.poses, self.conf, self.box_score = [], [], []
        for i, a in enumerate(self.people):
            self.poses.append(labelled_pose(a))
            right = i % 2 == 0
            if not right:
                self.poses[-1] += rng.normal(0, 0.25 * np.sqrt(a["area"]), (17, 2))
            self.conf.append(rng.uniform(0.7, 1.0) if right else rng.uniform(0.25, 0.5))
            self.box_score.append(rng.uniform(0.3, 1.0))

    def detections(self, path: Path) -> Path:
        """Each person's box (jittered by 1 %) and a duplicate 2 px beside it scoring 0.8 x as much."""
        rng = np.random.default_rng(0)
        dets = []
        for a, box, score in zip(self.people, self.boxes, self.box_score):
            jittered = box + rng.normal(0, 0.01, 4) * box[[2, 3, 2, 3]]
            for shift, factor in ((0.0, 1.0), (2.0, 0.8)):
                dets.append({"image_id": a["image_id"], "category_id": 1,
                             "bbox": (jittered + [shift, shift, 0, 0]).tolist(), "score": factor * score})
        path.write_text(json.dumps(dets))
        return path

    def keypoints_of(self, poser, records, progress=False):
        """Poser.keypoints_of of the oracle: the person whose box the record's box overlaps most."""
        out = np.zeros((len(records), 17, 3))
        for i, (image_id, box) in enumerate(zip(records.image_ids, records.boxes)):
            mine = np.flatnonzero(self.image_ids == image_id)
            j = mine[np.argmax(_iou(box, self.boxes[mine]))]
            out[i, :, :2], out[i, :, 2] = self.poses[j], self.conf[j]
        return out, np.ones(len(records), bool), []

    def results(self, score: str, duplicates: bool = False, gt_boxes: bool = False) -> list[dict]:
        """The COCO results a row must report, written out: one pose per person (NMS removes the duplicate,
        whose pose is the same) scored by ``score``, or both boxes' with ``duplicates``."""
        out = []
        for a, pose, conf, b in zip(self.people, self.poses, self.conf, self.box_score):
            b = 1.0 if gt_boxes else b
            kps = np.concatenate([pose, np.full((17, 1), conf)], axis=1).ravel().tolist()
            for factor in (1.0, 0.8) if duplicates else (1.0,):
                s = {"box": b * factor, "keypoint": conf, "box*keypoint": b * factor * conf}[score]
                out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kps, "score": s})
        return out


def _table(text: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in text.splitlines() if line.startswith("| "))}


def test_ablation_rows_on_an_oracle_network(coco_mini, checkpoint, tmp_path, capsys, monkeypatch):
    """Each row's numbers are pycocotools' on the poses that row's settings must keep, written out here,
    with a network replaced by an oracle whose mistakes and confidences are known."""
    gt_file = coco_mini / "annotations/person_keypoints_val2017.json"
    oracle = OraclePeople(gt_file)
    monkeypatch.setattr(Poser, "keypoints_of", lambda poser, records, progress=False:
                        oracle.keypoints_of(poser, records, progress))
    dets = oracle.detections(tmp_path / "dets.json")
    md = tmp_path / "ablation.md"
    args = [str(CONFIGS / "coco_mini_tiny.yaml"), f"data.root={coco_mini}", *TINY, "test.det_top_k=30",
            "--checkpoint", str(checkpoint), "--detections", str(dets)]
    assert main(["ablation", *args, "--out", str(md)]) == 0
    text = md.read_text()
    assert text in capsys.readouterr().out
    names = [row.name for row in ROWS] + ["ground-truth boxes"]
    positions = [text.index(f"| {name} |") for name in names]
    assert positions == sorted(positions)
    assert text.index("**Instance score**") < text.index("**NMS**") < text.index("**Boxes**")

    def expected(results: list[dict]) -> dict[str, float]:
        return evaluate_keypoints(gt_file, results)

    full = expected(oracle.results("box*keypoint"))
    rows = {
        "box score": expected(oracle.results("box")), "keypoint score": expected(oracle.results("keypoint")),
        "rescoring (box x keypoint)": full, "none": expected(oracle.results("box*keypoint", duplicates=True)),
        "IoU-NMS": full, "OKS-NMS": full, "IoU-NMS + OKS-NMS": full,
        "ground-truth boxes": expected(oracle.results("box*keypoint", gt_boxes=True)),
    }
    table = _table(text)
    for name, stats in rows.items():
        assert table[name] == [f"{stats[c]:.3f}" for c in COLUMNS if c in stats], name
    # The settings matter here: rescoring beats the box score, the duplicates cost AP without NMS.
    assert rows["keypoint score"]["AP"] > rows["box score"]["AP"] + 0.02
    assert full["AP"] > rows["box score"]["AP"] + 0.02 and rows["none"]["AP"] < full["AP"] - 0.02
    # The full settings are okspose test's: the same numbers, unrounded.
    out = tmp_path / "results.json"
    assert main(["test", *args, "--out", str(out)]) == 0
    assert json.loads(summary_path(out).read_text())["AP"] == full["AP"]
    assert {k: v for k, v in json.loads(summary_path(out).read_text()).items() if k in full} == full


def test_ablation_with_an_exact_oracle_scores_one_with_ground_truth_boxes(coco_mini, checkpoint, tmp_path,
                                                                          monkeypatch):
    """A network that predicts every labelled pose exactly: AP 1 with ground-truth boxes, which get no IoU-NMS
    (here at IoU 0.3, where it would remove real persons: the detector rows with IoU-NMS lose them), and AP 1
    with the duplicated detector boxes once OKS-NMS removes the duplicates."""
    gt_file = coco_mini / "annotations/person_keypoints_val2017.json"
    oracle = OraclePeople(gt_file)
    oracle.poses = [labelled_pose(a) for a in oracle.people]
    monkeypatch.setattr(Poser, "keypoints_of", lambda poser, records, progress=False:
                        oracle.keypoints_of(poser, records, progress))
    md = tmp_path / "ablation.md"
    assert main(["ablation", str(CONFIGS / "coco_mini_tiny.yaml"), f"data.root={coco_mini}", *TINY,
                 "test.det_top_k=30", "test.iou_thr=0.3", "--checkpoint", str(checkpoint), "--detections",
                 str(oracle.detections(tmp_path / "dets.json")), "--out", str(md)]) == 0
    table = _table(md.read_text())
    assert table["ground-truth boxes"][0] == table["OKS-NMS"][0] == "1.000"
    for name in ("none", "IoU-NMS", "IoU-NMS + OKS-NMS", "box score"):
        assert float(table[name][0]) < 0.99, name
