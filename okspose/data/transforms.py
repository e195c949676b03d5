"""Affine crop geometry: person box -> (center, scale) -> one 2x3 matrix per sample, and back.

Coordinates follow OpenCV's convention (integer = pixel centre). ``scale`` is the (width, height) in
image pixels of the region that fills the network input, so no magic /200 factor is needed.
"""

from __future__ import annotations

import numpy as np


def box_to_center_scale(
    boxes: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, 4] (x, y, w, h) -> centers [N, 2] and scales [N, 2] at the input's aspect ratio (w / h).

    The box is grown along one side to match the aspect ratio, then by ``padding`` on both, so the
    whole person fits the crop without distortion.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centers = boxes[:, :2] + boxes[:, 2:] / 2.0
    w = boxes[:, 2].copy()
    h = boxes[:, 3].copy()
    too_wide = w > aspect_ratio * h
    h[too_wide] = w[too_wide] / aspect_ratio
    w[~too_wide] = h[~too_wide] * aspect_ratio
    scales = np.stack([w, h], axis=1) * padding
    return centers, scales


def crop_affine(
    center: np.ndarray,
    scale: np.ndarray,
    rotation: float,
    output_size: tuple[int, int],
    flip: bool = False,
) -> np.ndarray:
    """2x3 matrix mapping image points into a crop of ``output_size`` (w, h).

    The region ``scale`` around ``center`` is rotated by ``rotation`` degrees (counter-clockwise in the
    picture) and fills the output; ``flip`` mirrors the output horizontally about its centre, so a
    single warp does crop, scale, rotation and flip together.
    """
    out_w, out_h = output_size
    sx = out_w / float(scale[0])
    sy = out_h / float(scale[1])
    theta = np.deg2rad(rotation)
    cos, sin = np.cos(theta), np.sin(theta)
    # Rotate about the box centre; image y points down, so a positive angle turns counter-clockwise.
    linear = np.array([[cos * sx, sin * sx], [-sin * sy, cos * sy]])
    out_center = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0])
    offset = out_center - linear @ np.asarray(center, dtype=np.float64)
    mat = np.concatenate([linear, offset[:, None]], axis=1)
    if flip:
        mat[0] = -mat[0]
        mat[0, 2] += out_w - 1
    return mat


def invert_affine(mat: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (works on a batch [..., 2, 3])."""
    linear = mat[..., :2]
    inv_linear = np.linalg.inv(linear)
    inv_offset = -np.einsum("...ij,...j->...i", inv_linear, mat[..., 2])
    return np.concatenate([inv_linear, inv_offset[..., None]], axis=-1)


def apply_affine(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Map points [..., K, 2] through 2x3 matrices [..., 2, 3] (broadcast over leading dims)."""
    return np.einsum("...ij,...kj->...ki", mat[..., :2], points) + mat[..., None, :, 2]


def crop_to_image(
    points: np.ndarray,
    centers: np.ndarray,
    scales: np.ndarray,
    rotations: np.ndarray | None,
    crop_size: tuple[int, int],
) -> np.ndarray:
    """Crop-space points [N, K, 2] back to image coordinates (inverse of each sample's crop warp)."""
    rotations = np.zeros(len(points)) if rotations is None else rotations
    mats = np.stack([crop_affine(c, s, r, crop_size) for c, s, r in zip(centers, scales, rotations)])
    return apply_affine(points, invert_affine(mats))
