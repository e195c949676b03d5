"""How closely an inference engine must reproduce plain fp32, with tolerances derived from the arithmetic
rather than from one machine's run: a network trained on another CPU instance is another network, so a bound
read off one run's joints fails on the next machine. An engine's heatmaps must stay within HEATMAP_TOL of the
joint's peak; each joint may then move only as far as the decoder can move it for any heatmap that close."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from okspose.data.crops import ImageCrops
from okspose.data.records import PersonRecords
from okspose.data.transforms import crop_to_image
from okspose.inference.poser import Poser
from okspose.inference.runtime import normalize_images, predict_heatmaps

# How far an engine's heatmaps may stray from plain fp32's, as a share of the joint's peak, from the arithmetic
# alone. bf16 keeps 8 significant bits (unit roundoff 2**-9) and the tiny network rounds each of its 56 conv
# outputs once: independent roundings add in quadrature (sqrt(56) * 2**-9 = 1.5% of the peak), roundings that
# never cancel add linearly (56 * 2**-9 = 11%); 2**-4 = 6.25% lies between the two. fp32 keeps 24 bits; an
# engine that only reorders sums loses a few of them: 2**-13 (1.2e-4) is ~100x sqrt(56) * 2**-24.
HEATMAP_TOL = {"fast-fp32": 2.0**-13, "fast-bf16": 2.0**-4, "onnxruntime": 2.0**-13}


def poser_heatmaps(poser: Poser, records: PersonRecords) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flip-averaged heatmaps [N, K, h, w] the Poser's engine computes for ``records`` in one batch, as
    posing does, with the crops' centres and scales [N, 2] (record order)."""
    crops = ImageCrops(records, poser.codec.input_size, poser.padding)
    items = [crops[i] for i in range(len(crops))]
    order = np.argsort(np.concatenate([item["index"].numpy() for item in items]))
    images, centers, scales = (np.concatenate([item[k].numpy() for item in items])[order]
                               for k in ("image", "center", "scale"))
    poser.model.eval()  # as Poser.pose does around its batches
    poser.prepare(len(records))
    heatmaps = predict_heatmaps(poser.net, normalize_images(torch.from_numpy(images), poser.device,
                                                            poser.channels_last),
                                poser.flip_index, poser.amp_dtype, poser.max_crops)
    return heatmaps.numpy(), centers, scales


def decode_bounds(poser: Poser, heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                  tol: float) -> np.ndarray:
    """For each joint, the farthest (image pixels) the Poser's decoder can put it for any heatmap within
    ``tol`` x the joint's peak of ``heatmaps``; inf where such a heatmap can move the argmax.

    The decoder reads the argmax and its 4 neighbours; along each axis its offset is a ratio of linear
    functions of the logs of three of them (monotone in each), so its extremes lie on the corners of the box:
    the 2**5 sign patterns of +-tol on those 5 pixels, decoded by the codec itself."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(-1)
    peak = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    t = tol * peak
    stable = peak - np.sort(flat, axis=-1)[..., -2] > 2 * t  # no heatmap within the box moves the argmax
    px, py = idx % w, idx // w
    nn, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    spots = [(py, px), (py, px - 1), (py, px + 1), (py - 1, px), (py + 1, px)]
    codec, method = poser.codec, poser.test.decode
    ref = crop_to_image(codec.decode(heatmaps, method)[0], centers, scales, None, codec.input_size)
    bound = np.zeros((n, k))
    for signs in itertools.product((-1.0, 1.0), repeat=len(spots)):
        moved = heatmaps.copy()
        for sign, (y, x) in zip(signs, spots):
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            ys, xs = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
            moved[nn, kk, ys, xs] = np.where(inside, np.maximum(heatmaps[nn, kk, ys, xs] + sign * t, 1e-10),
                                             moved[nn, kk, ys, xs])  # a missing border neighbour stays missing
        xy = crop_to_image(codec.decode(moved, method)[0], centers, scales, None, codec.input_size)
        bound = np.maximum(bound, np.linalg.norm(xy - ref, axis=-1))
    return np.where(stable, bound, np.inf)
