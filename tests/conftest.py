"""Shared fixtures: the real data in ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_MINI = SHARED_DATA / "coco-mini"


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    if not (COCO_MINI / "annotations").is_dir():
        pytest.skip(f"real data not found at {COCO_MINI}")
    return COCO_MINI

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "okspose" / "configs"  # packaged; ./configs is a link to it
# How long a test waits on a subprocess or thread before calling it hung: a guard against a deadlock, never a
# speed check, so it must hold on a shared machine running ~10x slower than an idle one (CI allows 90 min).
HANG_S = 1800


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Exported ONNX graphs go to a scratch cache for the session, not the user's ~/.cache/okspose/onnx."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OKSPOSE_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield


def person_biased(state: dict) -> dict:
    """A torchvision Faster R-CNN state dict whose box classifier calls every proposal a person (score
    e^10 / (e^10 + classes - 1), 0.996 on COCO's 91), so random weights give boxes for the tests to check."""
    state = dict(state)
    key = "roi_heads.box_predictor.cls_score"
    state[f"{key}.weight"] = state[f"{key}.weight"].new_zeros(state[f"{key}.weight"].shape)
    bias = state[f"{key}.bias"].new_zeros(state[f"{key}.bias"].shape)
    bias[1] = 10.0  # torchvision's person label
    state[f"{key}.bias"] = bias
    return state


def assert_boxes_in_picture(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...]) -> None:
    """xywh boxes of positive size inside a picture of ``shape`` (H, W, 3), scores falling."""
    h, w = shape[:2]
    assert boxes.dtype == np.float64 and np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 0] + boxes[:, 2] <= w + 1e-6)
    assert np.all(boxes[:, 1] + boxes[:, 3] <= h + 1e-6) and np.all(np.diff(scores) <= 0)


TINY_TRAIN = ["model.num_features=16", "data.max_train_persons=8", "data.max_val_persons=8", "train.batch_size=4",
              "train.workers=0", "train.progress=false", "train.amp=none", "test.amp=none", "train.epochs=2",
              "train.eval_every=0"]


@pytest.fixture(scope="session")
def tiny_checkpoint(coco_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny config trained two epochs on 8 coco-mini persons (it carries its config)."""
    from okspose.config import load_config
    from okspose.engine.train import train

    out = tmp_path_factory.mktemp("tiny-run")
    train(load_config(CONFIGS / "coco_mini_tiny.yaml", [f"data.root={coco_mini}", f"train.output_dir={out}",
                                                        *TINY_TRAIN]), device="cpu")
    return out / "model_best.pth"
