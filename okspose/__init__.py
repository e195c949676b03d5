"""okspose: top-down multi-person 2D pose estimation on COCO keypoints (the Team OKS system).

``okspose.PoseEstimator`` and ``okspose.PoseResult`` are the Python API (docs/api.md). They are imported on
first use, so that ``import okspose`` and ``okspose --help`` load no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["PoseEstimator", "PoseResult", "__version__"]

if TYPE_CHECKING:
    from okspose.inference.estimator import PoseEstimator, PoseResult


def __getattr__(name: str) -> Any:
    if name in ("PoseEstimator", "PoseResult"):
        from okspose.inference import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'okspose' has no attribute {name!r}")
