"""Heatmap codec: keypoints in crop pixels <-> Gaussian heatmaps, independent of any model.

Input and heatmap pixel centres are aligned (heatmap coordinate ``u = (x + 0.5) / stride - 0.5``), so
mirroring a heatmap is exactly the heatmap of the mirrored crop: flip-test averaging needs no
one-pixel shift, which the seed's HRNet-style convention (``u = x / stride``) has to add by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

DecodeMethod = Literal["quarter", "parabola"]


@dataclass(frozen=True)
class HeatmapCodec:
    input_size: tuple[int, int] = (256, 256)  # (w, h) of the network input
    heatmap_size: tuple[int, int] = (64, 64)  # (w, h) of the predicted heatmaps
    sigma: float = 1.0  # Gaussian std in heatmap pixels (the seed uses 1)

    def __post_init__(self) -> None:
        sx = self.input_size[0] / self.heatmap_size[0]
        sy = self.input_size[1] / self.heatmap_size[1]
        if sx != sy:
            raise ValueError(f"input {self.input_size} and heatmap {self.heatmap_size} sizes need one stride")

    @property
    def stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]

    def to_heatmap(self, xy: np.ndarray) -> np.ndarray:
        return (xy + 0.5) / self.stride - 0.5

    def from_heatmap(self, uv: np.ndarray) -> np.ndarray:
        return (uv + 0.5) * self.stride - 0.5

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop keypoints [K, 2] and labels [K] (v > 0: annotated) -> heatmaps [K, h, w] and weights [K].

        The Gaussian is centred on the exact sub-pixel position (no rounding), so decoding can recover
        it. A joint is weighted 0 when unannotated or when its centre leaves the heatmap.
        """
        w, h = self.heatmap_size
        uv = self.to_heatmap(np.asarray(keypoints, dtype=np.float64))
        inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5)
        weight = ((np.asarray(visible) > 0) & inside).astype(np.float32)
        gx = np.exp(-((np.arange(w)[None, :] - uv[:, :1]) ** 2) / (2 * self.sigma**2))
        gy = np.exp(-((np.arange(h)[None, :] - uv[:, 1:]) ** 2) / (2 * self.sigma**2))
        heatmaps = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
        heatmaps *= weight[:, None, None]
        return heatmaps, weight

    def decode(
        self, heatmaps: np.ndarray | torch.Tensor, method: DecodeMethod = "quarter"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps [N, K, h, w] -> crop-space keypoints [N, K, 2] and maxima [N, K].

        ``quarter``: the argmax moved a quarter pixel toward the higher neighbour (the seed's decoder).
        ``parabola``: a parabola through the log of the argmax and its neighbours on each axis, exact
        for Gaussian peaks.
        """
        hm = heatmaps.detach().float().cpu().numpy() if isinstance(heatmaps, torch.Tensor) else heatmaps
        hm = np.asarray(hm, dtype=np.float32)
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, -1)
        idx = flat.argmax(-1)
        maxvals = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
        px, py = idx % w, idx // w
        uv = np.stack([px, py], axis=-1).astype(np.float64)
        nn, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")

        def neighbours(dx: int, dy: int) -> np.ndarray:
            return hm[nn, kk, np.clip(py + dy, 0, h - 1), np.clip(px + dx, 0, w - 1)]

        centre = hm[nn, kk, py, px]
        for axis, (lo, hi), size, pos in ((0, ((-1, 0), (1, 0)), w, px), (1, ((0, -1), (0, 1)), h, py)):
            left, right = neighbours(*lo), neighbours(*hi)
            interior = (pos > 0) & (pos < size - 1)
            if method == "quarter":
                offset = 0.25 * np.sign(right - left)
                offset = np.where(interior, offset, 0.0)
            elif method == "parabola":
                ll, lc, lr = (np.log(np.maximum(v, 1e-10)) for v in (left, centre, right))
                curvature = ll - 2 * lc + lr
                with np.errstate(divide="ignore", invalid="ignore"):
                    offset = np.where(curvature < 0, 0.5 * (ll - lr) / curvature, 0.0)
                # On the border one neighbour is missing: use the codec's Gaussian width instead.
                var = self.sigma**2
                offset = np.where(pos == 0, 0.5 - var * (lc - lr), offset)
                offset = np.where(pos == size - 1, var * (lc - ll) - 0.5, offset)
                offset = np.clip(offset, -0.5, 0.5)
            else:
                raise ValueError(f"unknown decode method {method!r}; use 'quarter' or 'parabola'")
            uv[..., axis] += offset
        return self.from_heatmap(uv), maxvals


def flip_heatmaps(heatmaps: torch.Tensor, flip_index: np.ndarray | list[int]) -> torch.Tensor:
    """Heatmaps predicted on a mirrored crop -> heatmaps of the original crop (mirror + swap left/right)."""
    return heatmaps.flip(-1)[:, torch.as_tensor(flip_index, device=heatmaps.device)]
