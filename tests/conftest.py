"""Shared fixtures: the real data in ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Exported ONNX graphs go to a scratch cache for the session, not the user's ~/.cache/okspose/onnx."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OKSPOSE_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield


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
