"""okspose: top-down multi-person 2D pose estimation on COCO keypoints (the Team OKS system)."""

__version__ = "0.1.0"
