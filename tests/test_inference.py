"""The inference layer as a user meets it: unreadable val images are counted and scored as misses (or stop
the run with one line), each picture is decoded once by ``test`` and ``predict``, and a detections file is
checked against the images it is applied to. Real coco-mini val images, copied to a scratch folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, HANG_S
from torch import nn

from okspose.cli import main
from okspose.config import Config, load_config
from okspose.data.build import build_records
from okspose.data.records import read_image
from okspose.distributed import DistInfo
from okspose.evaluation import evaluate_keypoints
from okspose.fileio import save_checkpoint
from okspose.inference.scoring import validate_gt_boxes
from okspose.models.build import build_model

CONFIG = CONFIGS / "coco_mini_tiny.yaml"
PERSONS_PER_IMAGE = 2
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


@pytest.fixture(scope="module")
def val_set(coco_mini, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The coco-mini val images in which exactly two persons are annotated, both with 8+ joints and no
    crowd, copied with their annotations (numbered file names, as COCO has them)."""
    data = json.loads((coco_mini / "annotations/person_keypoints_val2017.json").read_text())
    per_image = defaultdict(list)
    for ann in data["annotations"]:
        per_image[ann["image_id"]].append(ann)
    images = [im for im in data["images"] if len(per_image[im["id"]]) == PERSONS_PER_IMAGE
              and not any(a["iscrowd"] or a["num_keypoints"] < 8 for a in per_image[im["id"]])]
    assert len(images) >= 3
    root = tmp_path_factory.mktemp("val")
    (root / "images").mkdir()
    for im in images:
        shutil.copy(coco_mini / "val2017" / im["file_name"], root / "images" / im["file_name"])
    subset = dict(data, images=images, annotations=[a for im in images for a in per_image[im["id"]]])
    ann = root / "ann.json"
    ann.write_text(json.dumps(subset))
    return root, ann, subset


def _overrides(root: Path, ann: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", f"data.val_ann={ann}", "data.val_images=images",
            f"train.output_dir={root / 'run'}", *extra]


def _crop_matrix(box: np.ndarray, size: tuple[int, int], padding: float) -> np.ndarray:
    """Written out here, apart from okspose's crop code: the 2x3 map of a person box, grown to the input's
    aspect ratio and by ``padding`` about its centre, onto a crop of ``size`` (w, h)."""
    x, y, w, h = box
    aspect = size[0] / size[1]
    w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
    w, h, cx, cy = w * padding, h * padding, x + box[2] / 2, y + box[3] / 2
    corners = np.float32([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx - w / 2, cy + h / 2]])
    return cv2.getAffineTransform(corners, np.float32([[0, 0], [size[0], 0], [0, size[1]]]))


class GroundTruthNet(nn.Module):
    """A stand-in pose network that knows the answers: for the crop nearest (in pixels) to one it computed
    of a ground-truth person, Gaussian heatmaps at that person's labelled joints. Its crops and heatmaps
    are written out in the test (:func:`_crop_matrix`, ``np.exp``), not okspose's crop and encoding code,
    so a fault there shows as misses. Every person of a readable picture is found, so the recall of an
    evaluation is known exactly."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # inference code asks a network for its device and layout
        records = build_records(cfg, "val")
        size, (hw, hh), sigma = cfg.data.input_size, cfg.data.heatmap_size, cfg.data.sigma
        gx, gy = np.meshgrid(np.arange(hw), np.arange(hh))
        crops, heatmaps = [], []
        for path, box, kp in zip(records.image_paths, records.boxes, records.keypoints):
            mat = _crop_matrix(box, size, cfg.data.padding)
            crops.append(cv2.warpAffine(read_image(path), mat, size, flags=cv2.INTER_LINEAR).astype(np.float32))
            joints = kp[:, :2] @ mat[:, :2].T + mat[:, 2]  # crop pixels
            mx, my = joints[:, 0] * hw / size[0], joints[:, 1] * hh / size[1]
            peaks = np.exp(-((gx - mx[:, None, None]) ** 2 + (gy - my[:, None, None]) ** 2) / (2 * sigma**2))
            heatmaps.append(torch.from_numpy(peaks * (kp[:, 2] > 0)[:, None, None]).float())
        self.crops, self.heatmaps = torch.from_numpy(np.stack(crops)), heatmaps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x * IMAGENET_STD + IMAGENET_MEAN).permute(0, 2, 3, 1)
        nearest = (pixels[:, None] - self.crops[None]).abs().flatten(2).mean(2).argmin(1)
        return torch.stack([self.heatmaps[i] for i in nearest.tolist()])


@pytest.fixture(scope="module")
def untrained(val_set) -> Path:
    path = val_set[0] / "untrained.pth"
    save_checkpoint({"model": build_model(load_config(CONFIG, ["model.num_features=16"])).state_dict()}, path)
    return path


def _damaged_copy(val_set, tmp_path: Path, keep: int = 2000) -> tuple[Path, Path, str]:
    """A copy of the set in ``tmp_path`` whose first image is cut short to ``keep`` bytes."""
    root, ann, data = val_set
    shutil.copytree(root / "images", tmp_path / "images")
    victim = tmp_path / "images" / data["images"][0]["file_name"]
    victim.write_bytes(victim.read_bytes()[:keep])
    return tmp_path, ann, victim.name


def test_unreadable_val_image_is_counted_and_scored_as_missed(val_set, tmp_path, monkeypatch, capsys):
    root, ann, data = val_set
    oracle = GroundTruthNet(load_config(CONFIG, _overrides(root, ann)))
    weights = save_checkpoint({"model": oracle.state_dict()}, tmp_path / "oracle.pth")
    monkeypatch.setattr("okspose.models.build.build_model", lambda cfg: oracle)
    clean = tmp_path / "clean.json"
    assert main(["test", str(CONFIG), *_overrides(root, ann), "--checkpoint", str(weights), "--out", str(clean)]) == 0
    assert evaluate_keypoints(ann, clean)["AR50"] == 1.0  # the stand-in network finds everyone

    damaged, ann, victim = _damaged_copy(val_set, tmp_path / "damaged")
    out = tmp_path / "skip.json"
    capsys.readouterr()
    assert main(["test", str(CONFIG), *_overrides(damaged, ann, "data.on_error=skip"), "--checkpoint", str(weights),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    images = len(data["images"])
    assert f"skipped 1 of {images} images" in printed and victim in printed
    summary = json.loads((tmp_path / "skip_summary.json").read_text())
    assert summary["skipped_images"] == 1 and summary["images"] == images and victim in summary["skipped"][0]
    # The victim's persons stay in the metric as misses: the clean results without the victim's poses,
    # scored over every image, and recall drops by the victim's share of the persons.
    victim_id = data["images"][0]["id"]
    expected = evaluate_keypoints(ann, [r for r in json.loads(clean.read_text()) if r["image_id"] != victim_id])
    assert victim_id not in {r["image_id"] for r in json.loads(out.read_text())}
    assert summary["AR"] == pytest.approx(expected["AR"]) and summary["AP"] == pytest.approx(expected["AP"])
    assert summary["AR50"] == pytest.approx(1 - 1 / images)

    # Validation during training counts and scores it the same way.
    cfg = load_config(CONFIG, _overrides(damaged, ann, "data.on_error=skip"))
    stats = validate_gt_boxes(oracle, cfg, DistInfo())
    assert stats["skipped_images"] == 1 and stats["AR"] == pytest.approx(expected["AR"])


@pytest.mark.parametrize("keep", [2000, 0])
def test_unreadable_val_image_stops_with_one_line(val_set, untrained, tmp_path, capsys, keep):
    damaged, ann, victim = _damaged_copy(val_set, tmp_path, keep)
    code = main(["test", str(CONFIG), *_overrides(damaged, ann, "model.num_features=16"), "--checkpoint",
                 str(untrained), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and "Traceback" not in err
    assert len(errors) == 1 and errors[0].startswith("okspose test: error:") and victim in errors[0]


def test_empty_picture_is_a_counted_skip_in_test_and_train(val_set, untrained, tmp_path, capsys):
    """A zero-byte picture under data.on_error=skip: ``test`` scores it as missed and ``train``'s loader
    replaces it, both through the one picture reader (issue 23 item 3)."""
    damaged, ann, victim = _damaged_copy(val_set, tmp_path, keep=0)
    small = _overrides(damaged, ann, "data.on_error=skip", "model.num_features=16")
    assert main(["test", str(CONFIG), *small, "--checkpoint", str(untrained), "--out", str(tmp_path / "r.json")]) == 0
    assert f"skipped 1 of {len(val_set[2]['images'])} images" in capsys.readouterr().out
    assert main(["train", str(CONFIG), *small, f"data.train_ann={ann}", "data.train_images=images",
                 "train.epochs=1", "train.progress=false"]) == 0
    row = capsys.readouterr().out  # the epoch's log row: each of the victim's persons replaced at least once
    assert int(row.split("skipped ")[1].split(",")[0]) >= PERSONS_PER_IMAGE


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every image decode through OpenCV, counted."""
    calls: list[str] = []
    imdecode, imread = cv2.imdecode, cv2.imread

    def counting_imdecode(*args, **kwargs):
        calls.append("imdecode")
        return imdecode(*args, **kwargs)

    def counting_imread(*args, **kwargs):
        calls.append("imread")
        return imread(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", counting_imdecode)
    monkeypatch.setattr(cv2, "imread", counting_imread)
    return calls


def _detections(data: dict, path: Path, image_ids: set[int] | None = None, extra: list[dict] = ()) -> Path:
    """Two boxes per GT person (its box and a shifted duplicate) of ``image_ids`` (all when None)."""
    dets = [{"image_id": ann["image_id"], "category_id": 1, "bbox": [ann["bbox"][0] + 4 * k, *ann["bbox"][1:]],
             "score": 0.9 - 0.2 * k}
            for ann in data["annotations"] if image_ids is None or ann["image_id"] in image_ids for k in range(2)]
    path.write_text(json.dumps(dets + list(extra)))
    return path


@pytest.mark.parametrize("boxes", ["gt", "detections"])
def test_test_decodes_each_image_once(val_set, untrained, tmp_path, decodes, boxes):
    root, ann, data = val_set
    source = ["--boxes", "gt"] if boxes == "gt" else ["--detections", str(_detections(data, tmp_path / "d.json"))]
    assert main(["test", str(CONFIG), *_overrides(root, ann, "model.num_features=16"), "--checkpoint",
                 str(untrained), *source, "--out", str(tmp_path / "r.json")]) == 0
    assert len(decodes) == len(data["images"])  # N images with 2+ persons each: N decodes


def test_predict_decodes_each_image_once(val_set, untrained, tmp_path, decodes, monkeypatch):
    root, _, data = val_set
    dets = _detections(data, tmp_path / "d.json")
    folds = []
    monkeypatch.setattr("okspose.inference.poser.optimize_for_inference",
                        lambda model, device: folds.append(1) or model)
    monkeypatch.setattr("okspose.commands.predict.CHUNK_IMAGES", 1)  # a chunk per picture
    out = tmp_path / "out"
    assert main(["predict", str(CONFIG), "--checkpoint", str(untrained), "--detections", str(dets), "--out",
                 str(out), str(root / "images"), "model.num_features=16", "test.fast=true"]) == 0
    assert len(decodes) == len(data["images"])  # detection boxes, posing and the pictures: one decode each
    assert len(folds) == 1  # the speed mode prepares the network once per run, not per chunk
    assert len(list((out / "vis").iterdir())) == len(data["images"])
    assert len(json.loads((out / "results.json").read_text())) >= len(data["images"])


def test_detections_for_none_of_the_images_is_an_error(val_set, untrained, tmp_path, capsys):
    root, ann, data = val_set
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps([{"image_id": 999999999, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9}]))
    code = main(["test", str(CONFIG), *_overrides(root, ann, "model.num_features=16"), "--checkpoint",
                 str(untrained), "--detections", str(foreign), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("okspose test: error:") and "Traceback" not in err
    assert f"for 0 of the {len(data['images'])} images" in err and "1 of its 1 person boxes" in err
    assert not (tmp_path / "r.json").exists()


def test_detections_for_few_of_the_images_warn_with_counts(val_set, untrained, tmp_path, capsys):
    root, ann, data = val_set
    foreign = {"image_id": 999999999, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9}
    few = _detections(data, tmp_path / "few.json", image_ids={data["images"][0]["id"]}, extra=[foreign])
    code = main(["test", str(CONFIG), *_overrides(root, ann, "model.num_features=16"), "--checkpoint",
                 str(untrained), "--detections", str(few), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 0
    boxes = 2 * PERSONS_PER_IMAGE + 1
    assert (f"warning: {few} has person boxes for 1 of the {len(data['images'])} images it is applied to; "
            f"1 of its {boxes} person boxes fall on other image ids") in err


VALIDATE_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_inference import CONFIG, GroundTruthNet, _overrides
from okspose.config import load_config
from okspose.distributed import cleanup, init_distributed
from okspose.inference.scoring import validate_gt_boxes

clean, damaged, ann, out = map(Path, sys.argv[1:5])
oracle = GroundTruthNet(load_config(CONFIG, _overrides(clean, ann)))
cfg = load_config(CONFIG, _overrides(damaged, ann, "data.on_error=skip"))
info = init_distributed("cpu")
stats = validate_gt_boxes(oracle, cfg, info)
assert (stats is not None) == info.is_main
if info.is_main:
    out.write_text(json.dumps(stats))
cleanup(info)
"""


def test_validation_is_sharded_over_ranks_with_one_result(val_set, tmp_path):
    """Two gloo processes each pose their share of the val images; rank 0 alone returns the stats, and
    they equal one process's, unreadable image included."""
    root, ann, _ = val_set
    damaged, ann, _ = _damaged_copy(val_set, tmp_path / "damaged")
    script = tmp_path / "validate.py"
    script.write_text(VALIDATE_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
           str(root), str(damaged), str(ann), str(tmp_path / "stats.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sharded = json.loads((tmp_path / "stats.json").read_text())
    oracle = GroundTruthNet(load_config(CONFIG, _overrides(root, ann)))
    single = validate_gt_boxes(oracle, load_config(CONFIG, _overrides(damaged, ann, "data.on_error=skip")), DistInfo())
    assert sharded == pytest.approx(single) and sharded["skipped_images"] == 1
