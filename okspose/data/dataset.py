"""The top-down training dataset: person crops with heatmap targets, one affine warp per sample."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from okspose.config import AugmentConfig
from okspose.data.codec import HeatmapCodec
from okspose.data.records import OnError, PersonRecords, read_image
from okspose.data.transforms import apply_affine, box_to_center_scale, crop_affine
from okspose.errors import DataError
from okspose.keypoints import KeypointSchema


def color_jitter(crop: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random brightness, contrast and saturation, each scaled by a factor in 1 +- strength."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    img = crop.astype(np.float32) * b
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = (img - grey.mean()) * c + grey.mean()
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = (img - grey[..., None]) * s + grey[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


class TopDownDataset(Dataset):
    """Person crops with heatmap targets: one affine warp per sample (crop, scale, rotate, flip).

    Augmentation draws from a generator seeded by (seed, epoch, index), so a sample is the same in
    every process, worker and resumed run: DDP and resume are exact.
    """

    def __init__(
        self,
        records: PersonRecords,
        codec: HeatmapCodec,
        schema: KeypointSchema,
        augment: AugmentConfig | None = None,
        padding: float = 1.25,
        seed: int = 0,
        on_error: OnError = "raise",
    ) -> None:
        self.records = records
        self.codec = codec
        self.schema = schema
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.on_error = on_error
        self.epoch = 0
        self.flip_index = schema.flip_index()
        w, h = codec.input_size
        self.centers, self.scales = box_to_center_scale(records.boxes, w / h, padding)
        self.padding = padding

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _sample_transform(
        self, index: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, float, bool]:
        center, scale = self.centers[index], self.scales[index]
        aug = self.augment
        if aug is None:
            return center, scale, 0.0, False
        kp = self.records.keypoints[index]
        labeled = kp[:, 2] > 0
        if aug.half_body_prob > 0 and labeled.sum() > 8 and rng.random() < aug.half_body_prob:
            upper = np.zeros(len(kp), bool)
            upper[list(self.schema.upper_body)] = True
            part = labeled & (upper if rng.random() < 0.5 else ~upper)
            if part.sum() >= 2:
                pts = kp[part, :2]
                lo, hi = pts.min(0), pts.max(0)
                w, h = self.codec.input_size
                c, s = box_to_center_scale(np.r_[lo, hi - lo][None], w / h, 1.5)
                center, scale = c[0], s[0]
        scale = scale * rng.uniform(*aug.scale)
        rotation = rng.uniform(-aug.rotation, aug.rotation) if rng.random() < aug.rotation_prob else 0.0
        flip = bool(rng.random() < aug.flip_prob)
        return center, scale, rotation, flip

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        path = self.records.image_paths[index]
        try:
            image = read_image(path)
        except DataError:
            if self.on_error == "raise":
                raise
            return None  # counted by collate_skipping
        center, scale, rotation, flip = self._sample_transform(index, rng)
        mat = crop_affine(center, scale, rotation, self.codec.input_size, flip)
        crop = cv2.warpAffine(image, mat, self.codec.input_size, flags=cv2.INTER_LINEAR)
        if self.augment is not None and self.augment.color_jitter > 0:
            crop = color_jitter(crop, rng, self.augment.color_jitter)
        kp = self.records.keypoints[index]
        xy = apply_affine(kp[:, :2], mat)
        vis = kp[:, 2]
        if flip:
            xy, vis = xy[self.flip_index], vis[self.flip_index]
        target, weight = self.codec.encode(xy, vis)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "center": torch.from_numpy(center.astype(np.float64)),
            "scale": torch.from_numpy(np.asarray(scale, np.float64)),
            "rotation": torch.tensor(rotation, dtype=torch.float64),
            "flip": torch.tensor(flip),
            "index": torch.tensor(index),
        }


def collate_skipping(batch: list[dict | None]) -> dict[str, torch.Tensor]:
    """Collate the samples that decoded; ``skipped`` counts the ones that did not."""
    good = [b for b in batch if b is not None]
    out = default_collate(good) if good else {}
    out["skipped"] = torch.tensor(len(batch) - len(good))
    return out
