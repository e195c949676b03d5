"""Heatmap codec: keypoints in crop pixels <-> Gaussian heatmaps, independent of any model.

Input and heatmap pixel centres are aligned (heatmap coordinate ``u = (x + 0.5) / stride - 0.5``), so
mirroring a heatmap is exactly the heatmap of the mirrored crop: flip-test averaging needs no
one-pixel shift, which Team OKS's HRNet-style convention (``u = x / stride``) has to add by hand.

Notation: K joints, N crops, network input ``(W, H) = input_size`` and heatmaps ``(w, h) = heatmap_size``.
"Crop pixels" are pixels of the network input (OpenCV convention: integer = pixel centre), "heatmap
pixels" those of the predicted heatmaps; one heatmap pixel is ``stride`` crop pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

DecodeMethod = Literal["quarter", "parabola"]


@dataclass(frozen=True)
class HeatmapCodec:
    """Encodes crop keypoints as Gaussian heatmap targets and decodes predicted heatmaps back to keypoints.

    One object holds the geometry that training targets and inference decoding must share, so the two
    cannot disagree on stride or pixel alignment.

    Args:
        input_size: (W, H) of the network input in pixels.
        heatmap_size: (w, h) of the predicted heatmaps in pixels; ``W / w`` must equal ``H / h`` (the stride).
        sigma: standard deviation of the target Gaussians in heatmap pixels.

    Raises:
        ValueError: when the two sizes do not give one stride on both axes.
    """

    input_size: tuple[int, int] = (256, 256)  # (w, h) of the network input
    heatmap_size: tuple[int, int] = (64, 64)  # (w, h) of the predicted heatmaps
    sigma: float = 1.0  # Gaussian std in heatmap pixels (Team OKS's value)

    def __post_init__(self) -> None:
        sx = self.input_size[0] / self.heatmap_size[0]
        sy = self.input_size[1] / self.heatmap_size[1]
        if sx != sy:
            raise ValueError(f"input {self.input_size} and heatmap {self.heatmap_size} sizes need one stride")

    @property
    def stride(self) -> float:
        """Crop pixels per heatmap pixel (the same on both axes), e.g. 4.0 for a 256 input and 64 heatmap."""
        return self.input_size[0] / self.heatmap_size[0]

    def to_heatmap(self, xy: np.ndarray) -> np.ndarray:
        """Map crop-pixel coordinates to heatmap-pixel coordinates (pixel centres aligned).

        Args:
            xy: points [..., 2] (x, y) in crop pixels, float.

        Returns:
            np.ndarray: the same points [..., 2] in heatmap pixels, ``(xy + 0.5) / stride - 0.5`` (float).
        """
        return (xy + 0.5) / self.stride - 0.5

    def from_heatmap(self, uv: np.ndarray) -> np.ndarray:
        """Map heatmap-pixel coordinates back to crop-pixel coordinates; the inverse of :meth:`to_heatmap`.

        Args:
            uv: points [..., 2] (u, v) in heatmap pixels, float.

        Returns:
            np.ndarray: the same points [..., 2] in crop pixels, ``(uv + 0.5) * stride - 0.5`` (float).
        """
        return (uv + 0.5) * self.stride - 0.5

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encode one person's crop keypoints as training targets: one Gaussian heatmap and one weight per joint.

        The Gaussian is centred on the exact sub-pixel position (no rounding), so decoding can recover
        it. A joint is weighted 0 (and its heatmap is all zeros) when unannotated or when its centre falls
        outside the heatmap, i.e. outside ``[-0.5, w - 0.5) x [-0.5, h - 0.5)`` in heatmap pixels.

        Args:
            keypoints: [K, 2] (x, y) in crop pixels, any real dtype.
            visible: [K] COCO visibility labels (0: unannotated, 1: occluded, 2: visible); > 0 counts as
                annotated.

        Returns:
            tuple:
            - heatmaps (np.ndarray): float32 [K, h, w], unnormalised Gaussians with values in [0, 1]
              (exactly 1 only when the centre lies on a pixel centre).
            - weights (np.ndarray): float32 [K], 1.0 for joints that are supervised, else 0.0.
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
        """Decode predicted heatmaps to sub-pixel keypoints in crop pixels and their peak values.

        The argmax alone is only accurate to one heatmap pixel (``stride`` crop pixels); each method moves
        it towards the true peak along each axis, by at most half a heatmap pixel.

        Args:
            heatmaps: [N, K, h, w] float, a numpy array or a tensor on any device (detached and copied
                to the CPU).
            method: ``"quarter"``: the argmax moved a quarter heatmap pixel toward the higher neighbour
                (Team OKS's decoder; no shift on the border). ``"parabola"``: the vertex of a parabola
                through the log of the argmax and its two neighbours, exact for Gaussian peaks; on the
                border the codec's ``sigma`` stands in for the missing neighbour.

        Returns:
            tuple:
            - keypoints (np.ndarray): float64 [N, K, 2] (x, y) in crop pixels.
            - maxvals (np.ndarray): float32 [N, K], the heatmap value at the argmax, used as joint score
              (near 1 for a confident joint with Gaussian targets; not clipped).

        Raises:
            ValueError: for an unknown ``method``.
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
    """Turn heatmaps predicted on mirrored crops into heatmaps of the original crops, for flip testing.

    Mirrors each heatmap horizontally and swaps left/right channels; with the codec's aligned pixel centres
    the result needs no one-pixel shift before averaging with the plain prediction.

    Args:
        heatmaps: [B, K, h, w] float tensor predicted on horizontally mirrored crops.
        flip_index: [K] int permutation; joint ``k``'s mirror image is joint ``flip_index[k]``
            (see :meth:`okspose.keypoints.KeypointSchema.flip_index`).

    Returns:
        torch.Tensor: [B, K, h, w], same dtype and device, aligned with the unmirrored crops.
    """
    return heatmaps.flip(-1)[:, torch.as_tensor(flip_index, device=heatmaps.device)]
