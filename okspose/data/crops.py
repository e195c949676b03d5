"""Person crops for inference: each picture is decoded once for all of its persons, and no targets are built.

The training dataset (:class:`okspose.data.dataset.TopDownDataset`) is one item per person with heatmap
targets; posing a picture with 20 detections through it would decode the picture 20 times.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from okspose.data.records import OnError, PersonRecords, read_image
from okspose.data.transforms import box_to_center_scale, crop_affine
from okspose.errors import DataError


def crop_persons(image: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                 input_size: tuple[int, int]) -> torch.Tensor:
    """uint8 [M, 3, H, W] crops of one RGB picture, one per (center, scale), unrotated and unflipped."""
    crops = [cv2.warpAffine(image, crop_affine(c, s, 0.0, input_size), input_size, flags=cv2.INTER_LINEAR)
             for c, s in zip(centers, scales)]
    w, h = input_size
    stacked = np.stack(crops) if crops else np.zeros((0, h, w, 3), np.uint8)
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))


def person_centers_scales(records: PersonRecords, input_size: tuple[int, int],
                          padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Crop centers and scales of every record's box, padded and fixed to the input's aspect ratio."""
    w, h = input_size
    return box_to_center_scale(records.boxes, w / h, padding)


class ImageCrops(Dataset):
    """One item per picture: the crops of all its persons (``image`` [M, 3, H, W] uint8), their ``center``
    and ``scale`` [M, 2], and ``index`` [M], their rows in ``records``.

    A picture that cannot be decoded raises :class:`DataError` with ``on_error="raise"``; with "skip" its
    item holds ``index`` and ``error`` (the message) instead of crops, so the caller counts it.
    """

    def __init__(self, records: PersonRecords, input_size: tuple[int, int], padding: float = 1.25,
                 on_error: OnError = "raise") -> None:
        self.input_size = input_size
        self.on_error = on_error
        self.centers, self.scales = person_centers_scales(records, input_size, padding)
        rows: dict[str, list[int]] = {}
        for i, path in enumerate(records.image_paths):
            rows.setdefault(path, []).append(i)
        self.paths = list(rows)
        self.rows = [np.array(r, dtype=np.int64) for r in rows.values()]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        index = self.rows[i]
        try:
            image = read_image(self.paths[i])
        except DataError as err:
            if self.on_error == "raise":
                raise
            return {"index": torch.from_numpy(index), "error": str(err)}
        centers, scales = self.centers[index], self.scales[index]
        return {"index": torch.from_numpy(index), "image": crop_persons(image, centers, scales, self.input_size),
                "center": torch.from_numpy(centers), "scale": torch.from_numpy(scales)}


class ImageFiles(Dataset):
    """Decoded RGB pictures by id, one item each: ``{"id", "image"}``, or ``{"id", "error"}`` for a picture
    that cannot be decoded under ``on_error="skip"`` (with "raise" its :class:`DataError` stops the run).
    A dataset so that loader workers decode the next pictures while the detector runs on these."""

    def __init__(self, paths: dict[int, str], on_error: OnError = "raise") -> None:
        self.items = list(paths.items())
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        image_id, path = self.items[i]
        try:
            return {"id": image_id, "image": read_image(path)}
        except DataError as err:
            if self.on_error == "raise":
                raise
            return {"id": image_id, "error": str(err)}


def as_is(item: dict) -> dict:
    """A DataLoader ``collate_fn`` for unbatched items that keeps numpy pictures as they are (the default
    one turns them into tensors, which the detector and OpenCV cropping do not take)."""
    return item
