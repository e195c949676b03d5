"""Affine crop geometry: person box -> (center, scale) -> one 2x3 matrix per sample, and back.

Coordinates follow OpenCV's convention (integer = pixel centre). ``scale`` is the (width, height) in
image pixels of the region that fills the network input, so no magic /200 factor is needed. Boxes are
COCO ``xywh`` (top-left corner, width, height) in image pixels; "crop pixels" are pixels of the network
input.
"""

from __future__ import annotations

import numpy as np


def box_to_center_scale(
    boxes: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Turn person boxes into crop regions (center, scale) with the network input's aspect ratio.

    The box is grown along one side to match the aspect ratio, then by ``padding`` on both, so the
    whole person fits the crop without distortion.

    Args:
        boxes: [N, 4] (or [4]) ``xywh`` boxes in image pixels.
        aspect_ratio: width / height of the network input.
        padding: factor applied to both sides after the aspect fix (1.0: none).

    Returns:
        tuple:
        - centers (np.ndarray): float64 [N, 2] (x, y) box centres in image pixels.
        - scales (np.ndarray): float64 [N, 2] (width, height) of the crop region in image pixels, with
          ``width / height == aspect_ratio``.
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
    """Build the affine matrix that warps an image into one (augmented) crop.

    The region ``scale`` around ``center`` is rotated by ``rotation`` degrees (counter-clockwise in the
    picture) and fills the output; ``flip`` mirrors the output horizontally about its centre, so a
    single warp does crop, scale, rotation and flip together. The matrix only moves points: after a flip
    the caller still swaps left/right joint labels.

    Args:
        center: [2] (x, y) centre of the region in image pixels.
        scale: [2] (width, height) of the region in image pixels.
        rotation: angle in degrees, counter-clockwise in the picture.
        output_size: (w, h) of the crop in pixels.
        flip: mirror the crop horizontally.

    Returns:
        np.ndarray: float64 [2, 3] matrix mapping image pixels to crop pixels (``cv2.warpAffine``'s ``M``).
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
    """Invert 2x3 affine matrices, e.g. to map crop points back to the image.

    Args:
        mat: [..., 2, 3] float affine matrices with invertible 2x2 linear parts.

    Returns:
        np.ndarray: [..., 2, 3] inverse matrices, same float dtype.
    """
    linear = mat[..., :2]
    inv_linear = np.linalg.inv(linear)
    inv_offset = -np.einsum("...ij,...j->...i", inv_linear, mat[..., 2])
    return np.concatenate([inv_linear, inv_offset[..., None]], axis=-1)


def apply_affine(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Apply 2x3 affine matrices to sets of points, broadcasting over leading dimensions.

    Args:
        points: [..., K, 2] (x, y) points.
        mat: [..., 2, 3] matrices; leading dimensions broadcast against those of ``points``.

    Returns:
        np.ndarray: [..., K, 2] mapped (x, y) points, in the matrices' target frame.
    """
    return np.einsum("...ij,...kj->...ki", mat[..., :2], points) + mat[..., None, :, 2]


def crop_to_image(
    points: np.ndarray,
    centers: np.ndarray,
    scales: np.ndarray,
    rotations: np.ndarray | None,
    crop_size: tuple[int, int],
) -> np.ndarray:
    """Map points predicted in crops back to image pixels by inverting each crop's warp.

    Args:
        points: [N, K, 2] (x, y) in crop pixels.
        centers: [N, 2] (x, y) crop-region centres in image pixels.
        scales: [N, 2] (width, height) of the crop regions in image pixels.
        rotations: [N] crop rotations in degrees, or None for unrotated crops. Crops are assumed unflipped.
        crop_size: (w, h) of the crops in pixels.

    Returns:
        np.ndarray: float64 [N, K, 2] (x, y) in image pixels.
    """
    rotations = np.zeros(len(points)) if rotations is None else rotations
    mats = np.stack([crop_affine(c, s, r, crop_size) for c, s, r in zip(centers, scales, rotations)])
    return apply_affine(points, invert_affine(mats))
