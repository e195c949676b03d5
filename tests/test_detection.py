"""Person detection: detection files, the Mask R-CNN wrapper's weight handling, the synthetic detector."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_boxes_in_picture, person_biased
from torchvision.models.detection import maskrcnn_resnet50_fpn

from okspose.data.records import DataError, SkipReport, read_annotation_file, read_image
from okspose.data.synthetic import generate_synthetic_coco
from okspose.inference.detections import load_detections
from okspose.inference.detector import COCO_WEIGHTS, DetectorWeightsError, PersonDetector
from okspose.inference.synthetic_detector import (
    SYNTHETIC_ARCHS,
    build_synthetic_detector,
    load_synthetic_detector,
    train_synthetic_detector,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples" / "coco"
DET_FILE = SAMPLES / "test_coco_det_AP_H_56.json"


@pytest.fixture(scope="module")
def det_records() -> list[dict]:
    if not DET_FILE.is_file():
        pytest.skip(f"sample detections not found at {DET_FILE}")
    return json.loads(DET_FILE.read_text())


def _write(tmp_path: Path, obj: object, name: str = "dets.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------------------------ detection files


def test_load_detections_real_file(det_records: list[dict]) -> None:
    counts = Counter(d["image_id"] for d in det_records)
    dets = load_detections(DET_FILE)
    assert set(dets) == set(counts)
    for image_id, (boxes, scores) in dets.items():
        assert boxes.shape == (min(counts[image_id], 20), 4) and scores.shape == (len(boxes),)
        assert boxes.dtype == np.float64 and np.all(np.diff(scores) <= 0)
        best = max((d for d in det_records if d["image_id"] == image_id), key=lambda d: d["score"])
        np.testing.assert_allclose(boxes[0], best["bbox"])

    top5 = load_detections(DET_FILE, top_k=5)
    assert all(len(s) == 5 for _, s in top5.values())
    np.testing.assert_array_equal(top5[785][1], dets[785][1][:5])

    confident = load_detections(DET_FILE, score_floor=0.5, top_k=1000)
    assert sum(len(s) for _, s in confident.values()) == sum(d["score"] >= 0.5 for d in det_records)
    assert all(s.min() >= 0.5 for _, s in confident.values())

    assert set(load_detections(DET_FILE, image_ids={785, 12345})) == {785}


def test_load_detections_empty_and_other_categories(tmp_path: Path) -> None:
    assert load_detections(_write(tmp_path, [])) == {}
    other = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.9}]
    assert load_detections(_write(tmp_path, other)) == {}


def test_load_detections_drops_and_counts_empty_boxes(tmp_path: Path) -> None:
    recs = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 20], "score": 0.8},
            {"image_id": 2, "category_id": 1, "bbox": [5, 5, 10, -1], "score": 0.7}]
    report = SkipReport()
    dets = load_detections(_write(tmp_path, recs), report=report)
    assert list(dets) == [1] and len(dets[1][1]) == 1
    assert report.reasons["empty box"] == 2 and "#1" in report.examples[0]


GOOD = {"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}


@pytest.mark.parametrize(("content", "match"), [
    ({"annotations": []}, "expected a JSON list"),
    ([GOOD, "oops"], r"#1: not an object"),
    ([GOOD, {"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.3}], r"#1: missing key\(s\) \['category_id'\]"),
    ([{**GOOD, "bbox": [0, 0, 1]}], r"#0: bbox must be 4 finite numbers"),
    ([{**GOOD, "bbox": [0, 0, "1", 1]}], r"#0: bbox must be 4 finite numbers"),
    ([{**GOOD, "bbox": [0, math.nan, 1, 1]}], r"#0: bbox must be 4 finite numbers"),
    ([{**GOOD, "score": math.inf}], r"#0: score must be a finite number"),
    ([{**GOOD, "score": None}], r"#0: score must be a finite number"),
    ([{**GOOD, "image_id": "1"}], r"#0: image_id must be an integer"),
])
def test_load_detections_malformed(tmp_path: Path, content: object, match: str) -> None:
    path = _write(tmp_path, content)  # json.dumps writes NaN/Infinity, which json.loads reads back
    with pytest.raises(DataError, match=match) as err:
        load_detections(path)
    assert str(path) in str(err.value)


def test_load_detections_gzipped_as_plain(det_records: list[dict], tmp_path: Path) -> None:
    """``test --detections x.json.gz`` reads the same boxes as the plain file."""
    from okspose.fileio import write_coco

    plain = load_detections(DET_FILE)
    gz = load_detections(write_coco(det_records, tmp_path / "dets.json.gz"))
    assert set(gz) == set(plain)
    for image_id, (boxes, scores) in plain.items():
        np.testing.assert_array_equal(gz[image_id][0], boxes)
        np.testing.assert_array_equal(gz[image_id][1], scores)


def test_load_detections_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_detections(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_detections(bad)


# --------------------------------------------------------------------------- Mask R-CNN weight handling


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache, and any download attempt fails the test."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    return home


def test_missing_weights_say_how_to_get_them(no_network: Path) -> None:
    with pytest.raises(DetectorWeightsError) as err:
        PersonDetector(allow_download=False)
    msg = str(err.value)
    file_name = Path(COCO_WEIGHTS.url).name
    for part in (COCO_WEIGHTS.url, str(no_network / "hub" / "checkpoints" / file_name), "--detector-weights",
                 "--detections"):
        assert part in msg


def test_failed_download_is_a_weights_error(no_network: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DetectorWeightsError, match="downloading failed.*network is unreachable"):
        PersonDetector(allow_download=True)


def test_unreadable_weights_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorWeightsError, match="cannot read"):
        PersonDetector(junk)
    with pytest.raises(DetectorWeightsError, match="not found"):
        PersonDetector(tmp_path / "missing.pth")
    torch.save({"backbone.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(DetectorWeightsError, match="do not fit"):
        PersonDetector(tmp_path / "other.pth")


@pytest.fixture(scope="module")
def random_maskrcnn_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()


def test_weights_file_round_trip(tmp_path: Path, random_maskrcnn_state: dict[str, torch.Tensor]) -> None:
    """A training checkpoint's weights load bit for bit, boxes only; its person boxes (the classifier biased
    to person, so random weights find some) come capped at top_k, best first, xywh inside the picture."""
    state = person_biased(random_maskrcnn_state)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state, "epoch": 3}, path)
    det = PersonDetector(path, top_k=5)
    loaded = det.model.state_dict()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert not det.model.roi_heads.has_mask()  # boxes only

    det.model.transform.min_size, det.model.transform.max_size = (48,), 64  # keep R50 at 48x64, not 800x1066
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    (boxes, scores), = det.detect([image])
    assert boxes.shape == (5, 4) and scores.shape == (5,)
    assert_boxes_in_picture(boxes, scores, image.shape)
    with pytest.raises(ValueError, match="RGB uint8"):
        det.detect([image.astype(np.float32)])


def test_coco_weights_from_hub_cache(no_network: Path, random_maskrcnn_state: dict[str, torch.Tensor]) -> None:
    cached = no_network / "hub" / "checkpoints" / Path(COCO_WEIGHTS.url).name
    cached.parent.mkdir(parents=True)
    torch.save(random_maskrcnn_state, cached)  # a bare state dict, as torchvision ships them
    det = PersonDetector(allow_download=False)
    key = "backbone.body.conv1.weight"
    torch.testing.assert_close(det.model.state_dict()[key], random_maskrcnn_state[key], rtol=0, atol=0)


# ------------------------------------------------------------------------------ the synthetic detector


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_coco(root, "train", num_images=6, seed=0)
    return root


def test_synthetic_detector_trains_caches_and_detects(tiny_synthetic: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    kwargs = {"steps": 2, "batch_size": 2, "seed": 1, "log_every": 0}
    out = train_synthetic_detector(tiny_synthetic, tmp_path / "det.pth", minutes=2, **kwargs)
    stamp = out.stat().st_mtime_ns
    assert train_synthetic_detector(tiny_synthetic, out, minutes=2, **kwargs) == out
    assert out.stat().st_mtime_ns == stamp and "already trained" in capsys.readouterr().out

    again = train_synthetic_detector(tiny_synthetic, tmp_path / "again.pth", minutes=2, **kwargs)
    a, b = torch.load(out, weights_only=True), torch.load(again, weights_only=True)
    assert a["meta"]["trained_steps"] == 2
    for key, value in a["model"].items():  # same seed, same steps: the same weights
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0)

    det = load_synthetic_detector(out, top_k=4)
    data = read_annotation_file(tiny_synthetic / "annotations" / "person_keypoints_train.json")
    images = [read_image(str(tiny_synthetic / "train" / img["file_name"])) for img in data["images"][:3]]
    results = det.detect(images)
    assert len(results) == 3
    for boxes, scores in results:
        assert boxes.shape == (len(scores), 4) and boxes.dtype == np.float64 and len(scores) <= 4
        assert np.all(np.isfinite(boxes)) and np.all(np.diff(scores) <= 0)


def _detector_loss(model: torch.nn.Module, root: Path) -> float:
    """The summed training losses of ``model`` on the split's pictures as they are (no augmentation)."""
    data = read_annotation_file(root / "annotations" / "person_keypoints_train.json")
    boxes = {img["id"]: [] for img in data["images"]}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        boxes[a["image_id"]].append([x, y, x + w, y + h])
    images = [torch.from_numpy(read_image(str(root / "train" / img["file_name"]))).permute(2, 0, 1).float() / 255
              for img in data["images"]]
    targets = [{"boxes": torch.tensor(boxes[img["id"]]).reshape(-1, 4), "labels": torch.ones(len(boxes[img["id"]]),
                                                                                                dtype=torch.int64)}
               for img in data["images"]]
    torch.manual_seed(0)  # Faster R-CNN samples its proposals
    model.train()
    with torch.no_grad():
        return float(sum(model(images, targets).values()))


@pytest.mark.parametrize("arch", SYNTHETIC_ARCHS)
def test_every_synthetic_arch_trains(tiny_synthetic: Path, tmp_path: Path, arch: str) -> None:
    """A few steps of each arch lower its training loss on the scenes it trained on (from the seed's
    initial weights), and its checkpoint loads and detects on a scene."""
    out = train_synthetic_detector(tiny_synthetic, tmp_path / "det.pth", minutes=5, arch=arch, steps=10,
                                   batch_size=2, seed=0, log_every=0)
    ckpt = torch.load(out, weights_only=True)
    settings = (arch, tuple(ckpt["meta"]["image_size"]), ckpt["meta"]["scale"])
    torch.manual_seed(0)  # the initial weights training starts from
    initial = build_synthetic_detector(*settings)
    trained = build_synthetic_detector(*settings)
    trained.load_state_dict(ckpt["model"])
    before, after = _detector_loss(initial, tiny_synthetic), _detector_loss(trained, tiny_synthetic)
    assert after < before, (before, after)  # without a step the same weights and seed give the same loss
    scene = read_image(str(next((tiny_synthetic / "train").glob("*"))))
    (boxes, scores), = load_synthetic_detector(out).detect([scene])
    assert_boxes_in_picture(boxes, scores, scene.shape)
    with pytest.raises(ValueError, match="unknown synthetic detector"):
        train_synthetic_detector(tiny_synthetic, tmp_path / "x.pth", arch="yolo")


def test_synthetic_detector_bad_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DetectorWeightsError, match="train_synthetic_detector"):
        load_synthetic_detector(tmp_path / "missing.pth")
    torch.save({"model": {}}, tmp_path / "nometa.pth")
    with pytest.raises(DetectorWeightsError, match="not a synthetic detector checkpoint"):
        load_synthetic_detector(tmp_path / "nometa.pth")



def test_detect_and_pose_hands_the_detector_numpy_pictures(coco_mini) -> None:
    """The detector path decodes pictures in a DataLoader: they must reach the detector and the cropping
    as RGB uint8 arrays (a default-collated tensor was refused by the detector)."""
    from okspose.config import load_config
    from okspose.inference.boxes import detect_and_pose
    from okspose.inference.poser import Poser
    from okspose.models.build import build_model

    class WholePicture:
        def detect(self, images):
            assert all(isinstance(im, np.ndarray) and im.dtype == np.uint8 for im in images)
            return [(np.array([[0.0, 0.0, im.shape[1], im.shape[0]]]), np.ones(1)) for im in images]

    cfg = load_config("coco_mini_tiny", ["test.engine=torch", "test.amp=none", "test.fast=false"])
    folder = coco_mini / "val2017"
    paths = {i: str(p) for i, p in enumerate(sorted(folder.glob("*.jpg"))[:2])}
    for workers in (0, 1):
        poser = Poser.from_config(build_model(cfg).eval(), cfg, torch.device("cpu"))
        poser.workers = workers  # 1: pictures decoded in a loader worker process
        posed = detect_and_pose(poser, WholePicture(), paths)
        assert sorted(posed.records.image_ids.tolist()) == [0, 1] and posed.keypoints.shape == (2, 17, 3)
