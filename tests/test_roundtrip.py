"""Annotation -> augmented crop -> heatmaps -> decode -> image coordinates, on real COCO images."""

from __future__ import annotations

import numpy as np
import pytest

from okspose.config import AugmentConfig
from okspose.data.codec import HeatmapCodec
from okspose.data.dataset import TopDownDataset
from okspose.data.records import load_person_records
from okspose.data.transforms import apply_affine, crop_affine, crop_to_image, invert_affine
from okspose.keypoints import COCO17


def _roundtrip_errors(coco_mini, method: str, epochs: int = 3):
    records = load_person_records(
        coco_mini / "annotations/person_keypoints_train2017.json", coco_mini / "train2017", COCO17
    )
    codec = HeatmapCodec((256, 256), (64, 64), sigma=1.0)
    aug = AugmentConfig(scale=(0.75, 1.25), rotation=30, rotation_prob=1.0, flip_prob=0.5, color_jitter=0.0)
    ds = TopDownDataset(records, codec, COCO17, aug, seed=1)
    flips = 0
    errors, scales = [], []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            center, scale, rot = s["center"].numpy(), s["scale"].numpy(), float(s["rotation"])
            kp = records.keypoints[i]
            xy, _ = codec.decode(s["target"][None].numpy(), method)
            weight = s["target_weight"].numpy() > 0
            flip = bool(s["flip"])
            flips += flip
            mat = crop_affine(center, scale, rot, codec.input_size, flip)
            pred = xy[0]
            if flip:
                pred, weight = pred[COCO17.flip_index()], weight[COCO17.flip_index()]
            back = apply_affine(pred, invert_affine(mat))
            errors.append(np.linalg.norm(back - kp[:, :2], axis=1)[weight])
            scales.append(np.full(weight.sum(), scale[0] / codec.input_size[0]))
    return np.concatenate(errors), np.concatenate(scales), flips


def test_subpixel_decoder_recovers_every_in_crop_keypoint_within_one_pixel(coco_mini):
    errors, _, flips = _roundtrip_errors(coco_mini, "parabola")
    assert len(errors) > 1000 and flips > 50
    assert errors.max() < 1.0, f"worst error {errors.max():.3f} px"


def test_quarter_decoder_error_is_bounded_by_its_quantisation(coco_mini):
    # Team OKS's decoder moves a quarter heatmap pixel: at most 1/4 heatmap px per axis off,
    # i.e. stride/4 * sqrt(2) crop pixels, times the crop-to-image scale.
    errors, scales, _ = _roundtrip_errors(coco_mini, "quarter", epochs=1)
    bound = (4 / 4) * np.sqrt(2) * scales + 1e-6
    assert (errors <= bound).all()
    assert np.median(errors / scales) > 0.1  # it is a real quantisation, not exact


def test_crop_to_image_inverts_the_unaugmented_crop():
    rng = np.random.default_rng(0)
    centers = rng.uniform(100, 400, (5, 2))
    scales = rng.uniform(50, 300, (5, 2))
    pts = rng.uniform(0, 255, (5, 17, 2))
    rot = rng.uniform(-30, 30, 5)
    img_pts = np.stack([apply_affine(p, invert_affine(crop_affine(c, s, r, (256, 256))))
                        for p, c, s, r in zip(pts, centers, scales, rot)])
    np.testing.assert_allclose(crop_to_image(pts, centers, scales, rot, (256, 256)), img_pts)
    back = np.stack([apply_affine(p, crop_affine(c, s, r, (256, 256)))
                     for p, c, s, r in zip(img_pts, centers, scales, rot)])
    np.testing.assert_allclose(back, pts, atol=1e-9)


@pytest.mark.parametrize("flip", [False, True])
def test_flip_is_a_mirror_of_the_crop(flip):
    mat_plain = crop_affine(np.array([50.0, 60.0]), np.array([100.0, 100.0]), 10.0, (256, 256))
    mat_flip = crop_affine(np.array([50.0, 60.0]), np.array([100.0, 100.0]), 10.0, (256, 256), True)
    p = np.array([[12.0, 34.0]])
    a, b = apply_affine(p, mat_plain), apply_affine(p, mat_flip)
    np.testing.assert_allclose(b[0, 0], 255 - a[0, 0])
    np.testing.assert_allclose(b[0, 1], a[0, 1])
