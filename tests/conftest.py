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
# How long a test waits on a subprocess or thread before calling it hung: a guard against a deadlock, never a
# speed check, so it must hold on a shared machine running ~10x slower than an idle one (CI allows 90 min).
HANG_S = 1800


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """Exported ONNX graphs go to a scratch cache for the session, not the user's ~/.cache/okspose/onnx."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OKSPOSE_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx-cache")))
        yield
