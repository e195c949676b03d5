"""Pictures of poses: skeletons over images, and grids of such pictures for a quick look at results.

Colours follow the body side so that left/right swaps (the most common pose error) stand out at a glance:
left limbs in cyan-to-violet, right limbs in red-to-orange, centre limbs in green, and within a side every
limb has its own shade.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

from okspose.data.records import PersonRecords, read_image
from okspose.fileio import save_image
from okspose.keypoints import COCO17, KeypointSchema

# Hue bands in degrees (start, end) per body side; far apart so the sides never get confused.
_SIDE_HUES = {"left": (180.0, 280.0), "right": (-15.0, 40.0), "centre": (95.0, 140.0)}
_SHIFT = 4  # OpenCV fractional bits: keypoints are drawn with 1/16 pixel precision
_LIMB_ALPHA = 0.85  # limbs slightly see-through so the person under them stays visible
_BOX_COLOR = (235, 235, 235)


def _side(name: str) -> str:
    if name.startswith("left"):
        return "left"
    if name.startswith("right"):
        return "right"
    return "centre"


def _limb_side(schema: KeypointSchema, a: int, b: int) -> str:
    """A limb belongs to a side if an endpoint does and the other is not on the opposite side."""
    sides = {_side(schema.joints[a]), _side(schema.joints[b])} - {"centre"}
    return sides.pop() if len(sides) == 1 else "centre"


def _hsv_to_bgr(hue_deg: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Vectorised HSV (hue in degrees, full saturation) -> BGR uint8 [N, 3]."""
    hsv = np.stack([(np.mod(hue_deg, 360.0) / 2.0).round(), np.full_like(hue_deg, 230), value], axis=-1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]


def _band_colors(sides: list[str]) -> np.ndarray:
    """Spread the items of each side evenly over that side's hue band; alternate brightness for contrast."""
    hues = np.zeros(len(sides))
    values = np.zeros(len(sides))
    for side, (lo, hi) in _SIDE_HUES.items():
        idx = np.flatnonzero(np.array(sides) == side)
        hues[idx] = np.linspace(lo, hi, len(idx)) if len(idx) > 1 else (lo + hi) / 2
        values[idx] = np.where(np.arange(len(idx)) % 2 == 0, 255, 200)
    return _hsv_to_bgr(hues, values)


@functools.cache
def limb_colors(schema: KeypointSchema = COCO17) -> np.ndarray:
    """BGR colour [L, 3] of every limb of ``schema.skeleton``."""
    colors = _band_colors([_limb_side(schema, a, b) for a, b in schema.skeleton])
    colors.setflags(write=False)  # cached and shared between calls
    return colors


@functools.cache
def joint_colors(schema: KeypointSchema = COCO17) -> np.ndarray:
    """BGR colour [K, 3] of every joint: the middle colour of its side's band."""
    palette = {side: _hsv_to_bgr(np.array([(lo + hi) / 2]), np.array([255.0]))[0]
               for side, (lo, hi) in _SIDE_HUES.items()}
    colors = np.stack([palette[_side(name)] for name in schema.joints])
    colors.setflags(write=False)  # cached and shared between calls
    return colors


def _style(shape: tuple[int, ...]) -> tuple[int, int, float]:
    """(line thickness, joint radius, font scale) that look the same at any image size."""
    size = max(shape[:2])
    thickness = max(1, round(size / 400))
    return thickness, max(2, round(1.6 * thickness)), max(0.35, size / 1600)


def _fixed(xy: np.ndarray) -> tuple[int, int]:
    """Pixel coordinates -> OpenCV fixed-point integers for sub-pixel drawing."""
    x, y = np.round(np.asarray(xy, dtype=np.float64) * (1 << _SHIFT)).astype(np.int64)
    return int(x), int(y)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """A private BGR uint8 copy, so drawing never touches the caller's image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image.shape}")
    return image.copy()


def _as_keypoints(keypoints: np.ndarray, schema: KeypointSchema) -> np.ndarray:
    """[N, K, 3] float64; a single person [K, 3] and score-less [N, K, 2] input are accepted too."""
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.size == 0:
        return np.zeros((0, schema.num_joints, 3))
    if kpts.ndim == 2:
        kpts = kpts[None]
    if kpts.ndim != 3 or kpts.shape[1] != schema.num_joints or kpts.shape[2] not in (2, 3):
        raise ValueError(f"keypoints must be [N, {schema.num_joints}, 3] for schema {schema.name!r}, "
                         f"got shape {np.shape(keypoints)}")
    if kpts.shape[2] == 2:
        kpts = np.concatenate([kpts, np.ones_like(kpts[..., :1])], axis=-1)
    return kpts


def _draw_limbs(canvas: np.ndarray, kpts: np.ndarray, visible: np.ndarray, schema: KeypointSchema,
                thickness: int) -> np.ndarray:
    """Draw on a copy and blend it back, so only pixels under limbs change."""
    if not schema.skeleton:
        return canvas
    overlay = canvas.copy()
    pairs = np.array(schema.skeleton)
    colors = limb_colors(schema)
    drawn = visible[:, pairs[:, 0]] & visible[:, pairs[:, 1]]  # [N, L]
    for person, limb in zip(*np.nonzero(drawn), strict=True):
        a, b = pairs[limb]
        cv2.line(overlay, _fixed(kpts[person, a, :2]), _fixed(kpts[person, b, :2]),
                 tuple(int(c) for c in colors[limb]), thickness, cv2.LINE_AA, _SHIFT)
    return cv2.addWeighted(overlay, _LIMB_ALPHA, canvas, 1.0 - _LIMB_ALPHA, 0.0)


def _draw_joints(canvas: np.ndarray, kpts: np.ndarray, visible: np.ndarray, schema: KeypointSchema,
                 radius: int) -> None:
    """Filled joint dots with a thin dark rim so they read on light and dark backgrounds alike."""
    colors = joint_colors(schema)
    for person, joint in zip(*np.nonzero(visible), strict=True):
        center = _fixed(kpts[person, joint, :2])
        cv2.circle(canvas, center, (radius + 1) << _SHIFT, (20, 20, 20), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, center, radius << _SHIFT, tuple(int(c) for c in colors[joint]), -1,
                   cv2.LINE_AA, _SHIFT)


def _draw_label(canvas: np.ndarray, text: str, x: float, y: float, font_scale: float) -> None:
    """White text on a dark tag just above (x, y), pushed inside the image when it would leave it."""
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(2 * font_scale))
    (tw, th), base = cv2.getTextSize(text, font, font_scale, thick)
    h, w = canvas.shape[:2]
    x0 = int(np.clip(x, 0, max(0, w - tw - 4)))
    y0 = int(np.clip(y - th - base - 4, 0, max(0, h - th - base - 4)))
    cv2.rectangle(canvas, (x0, y0), (x0 + tw + 4, y0 + th + base + 4), (40, 40, 40), -1)
    cv2.putText(canvas, text, (x0 + 2, y0 + th + 2), font, font_scale, (255, 255, 255), thick, cv2.LINE_AA)


def identity_colors(track_ids: np.ndarray) -> np.ndarray:
    """One BGR colour [N, 3] per track id, hues a golden angle apart so that neighbouring ids differ."""
    return _hsv_to_bgr(np.asarray(track_ids, dtype=np.float64) * 137.508, np.full(len(track_ids), 255.0))


def _draw_boxes(canvas: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None, thickness: int,
                font_scale: float, track_ids: np.ndarray | None = None) -> None:
    colors = identity_colors(track_ids) if track_ids is not None else np.tile(_BOX_COLOR, (len(boxes), 1))
    for i, (x, y, bw, bh) in enumerate(boxes):
        if not np.isfinite([x, y, bw, bh]).all():
            continue
        cv2.rectangle(canvas, _fixed((x, y)), _fixed((x + bw, y + bh)), tuple(int(c) for c in colors[i]),
                      max(1, thickness - 1), cv2.LINE_AA, _SHIFT)
        label = [f"#{int(track_ids[i])}"] if track_ids is not None else []
        label += [f"{scores[i]:.2f}"] if scores is not None else []
        if label:
            _draw_label(canvas, " ".join(label), x, y, font_scale)


def _check_rows(name: str, arr: np.ndarray | None, n: int, width: int | None) -> np.ndarray | None:
    if arr is None:
        return None
    arr = np.asarray(arr, dtype=np.float64).reshape(-1, *(() if width is None else (width,)))
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} rows but there are {n} people")
    return arr


def _visible_joints(kpts: np.ndarray, kpt_thr: float) -> np.ndarray:
    return (kpts[..., 2] >= kpt_thr) & np.isfinite(kpts[..., :2]).all(axis=-1)


def shown_persons(keypoints: np.ndarray, scores: np.ndarray | None, kpt_thr: float, instance_thr: float) -> np.ndarray:
    """[N] bool: the persons :func:`draw_poses` draws, those scoring at least ``instance_thr`` with a joint
    scoring at least ``kpt_thr`` (``keypoints`` [N, K, 3])."""
    shown = _visible_joints(keypoints, kpt_thr).any(axis=1)
    return shown if scores is None else shown & (np.asarray(scores) >= instance_thr)


def draw_poses(
    image: np.ndarray,
    keypoints: np.ndarray,
    schema: KeypointSchema = COCO17,
    boxes: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    kpt_thr: float = 0.3,
    instance_thr: float = 0.3,
    track_ids: np.ndarray | None = None,
) -> np.ndarray:
    """A new BGR image with the people's skeletons drawn; ``keypoints`` is [N, K, 3] (x, y, score).

    Joints scoring below ``kpt_thr`` are left out, and so is every limb with such an endpoint. ``boxes``
    ([N, 4] xywh) are drawn if given; ``scores`` ([N]) label the boxes, or the top-left visible joint.
    A person scoring below ``instance_thr`` or without any joint left is not drawn at all, so the low-scored
    candidates that the metric wants kept show no empty boxes or stray skeletons. Both thresholds default
    to mmpose's 0.3. ``track_ids`` ([N], with ``boxes``) draw each identity's box in its own colour.
    """
    canvas = _as_bgr(image)
    kpts = _as_keypoints(keypoints, schema)
    n = len(kpts)
    boxes = _check_rows("boxes", boxes, n, 4)
    scores = _check_rows("scores", scores, n, None)
    track_ids = _check_rows("track_ids", track_ids, n, None)
    thickness, radius, font_scale = _style(canvas.shape)
    visible = _visible_joints(kpts, kpt_thr)
    shown = shown_persons(kpts, scores, kpt_thr, instance_thr)
    kpts, visible = kpts[shown], visible[shown]
    boxes, scores, track_ids = (None if a is None else a[shown] for a in (boxes, scores, track_ids))
    canvas = _draw_limbs(canvas, kpts, visible, schema, thickness)
    _draw_joints(canvas, kpts, visible, schema, radius)
    if boxes is not None:
        _draw_boxes(canvas, boxes, scores, thickness, font_scale, track_ids)
    elif scores is not None:
        for i in np.flatnonzero(visible.any(axis=1)):
            xy = kpts[i, visible[i], :2]
            _draw_label(canvas, f"{scores[i]:.2f}", xy[:, 0].min(), xy[:, 1].min() - radius, font_scale)
    return canvas


def _letterbox(image: np.ndarray, width: int, height: int, fill: int) -> np.ndarray:
    """Fit ``image`` into width x height without distorting it, centred on a ``fill`` background."""
    image = _as_bgr(image)
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = np.full((height, width, 3), fill, np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out


def make_grid(
    images: list[np.ndarray],
    cols: int,
    cell: tuple[int, int],
    gap: int = 4,
    fill: int = 32,
) -> np.ndarray:
    """Tile images row by row into one overview picture, each letterboxed into a (width, height) cell."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    if cols < 1 or min(cell) < 1:
        raise ValueError(f"cols and cell sizes must be positive, got cols={cols}, cell={cell}")
    width, height = cell
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * (height + gap) + gap, cols * (width + gap) + gap, 3), fill, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        y, x = gap + r * (height + gap), gap + c * (width + gap)
        grid[y:y + height, x:x + width] = _letterbox(image, width, height, fill)
    return grid


def draw_pictures(
    records: PersonRecords,
    keypoints: np.ndarray,
    scores: np.ndarray,
    schema: KeypointSchema,
    out_dir: Path,
    kpt_thr: float,
    instance_thr: float,
    max_images: int = 16,
) -> list[Path]:
    """One picture per image (at most ``max_images``) with its predicted skeletons, boxes and scores
    (people and joints at or above the display thresholds), plus ``overview.jpg`` tiling them; each written
    whole or not at all (:func:`okspose.fileio.save_image`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    paths = np.array(records.image_paths)
    for path in list(dict.fromkeys(records.image_paths))[:max_images]:
        rows = np.flatnonzero(paths == path)
        image = cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR)
        drawn = draw_poses(image, keypoints[rows], schema, records.boxes[rows], scores[rows], kpt_thr, instance_thr)
        target = out_dir / Path(path).name
        written.append(save_image(drawn, target))
        tiles.append(drawn)
    if tiles:
        save_image(make_grid(tiles, cols=4, cell=(320, 256)), out_dir / "overview.jpg")
    return written
