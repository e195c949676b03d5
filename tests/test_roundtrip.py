"""Annotation -> augmented crop -> heatmaps -> decode -> image coordinates, on real COCO images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from okspose.config import AugmentConfig
from okspose.data.codec import HeatmapCodec, flip_heatmaps
from okspose.data.dataset import TopDownDataset
from okspose.data.records import load_person_records
from okspose.data.transforms import apply_affine, crop_affine, crop_to_image, invert_affine
from okspose.inference.runtime import predict_heatmaps
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


def _expected_crop_point(p: np.ndarray, center, scale, rotation: float, size, flip: bool) -> np.ndarray:
    """The crop geometry written out point by point: the crop's x axis runs along the image direction
    (cos r, sin r) and its y axis along (-sin r, cos r) (picture content turned counter-clockwise), the
    region ``scale`` fills the crop with ``center`` on the crop's centre pixel, and a flip mirrors x."""
    w, h = size
    d = p - center
    r = np.deg2rad(rotation)
    x = (w - 1) / 2 + w / scale[0] * (d[:, 0] * np.cos(r) + d[:, 1] * np.sin(r))
    y = (h - 1) / 2 + h / scale[1] * (-d[:, 0] * np.sin(r) + d[:, 1] * np.cos(r))
    if flip:
        x = (w - 1) - x
    return np.stack([x, y], axis=1)


@pytest.mark.parametrize("flip", [False, True])
def test_flip_is_a_mirror_of_the_crop(flip):
    center, scale, rot, size = np.array([50.0, 60.0]), np.array([100.0, 80.0]), 10.0, (256, 192)
    mat = crop_affine(center, scale, rot, size, flip)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 120, (20, 2))
    np.testing.assert_allclose(apply_affine(p, mat), _expected_crop_point(p, center, scale, rot, size, flip),
                               atol=1e-9)
    # In pixels: the flipped warp is the plain warp mirrored (same sampling positions, read right to left).
    image = rng.integers(0, 256, (120, 140, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 2.0)  # smooth, so sub-pixel rounding moves values by a level at most
    crop = cv2.warpAffine(image, mat, size, flags=cv2.INTER_LINEAR)
    plain = cv2.warpAffine(image, crop_affine(center, scale, rot, size), size, flags=cv2.INTER_LINEAR)
    expected = plain[:, ::-1] if flip else plain
    assert np.abs(crop.astype(int) - expected).max() <= 1
    if flip:
        assert np.abs(crop.astype(int) - plain).mean() > 5  # the flip did something


@pytest.fixture(scope="module")
def coco_person(coco_mini):
    """The coco-mini train person with the most labeled joints (left and right both present)."""
    records = load_person_records(
        coco_mini / "annotations/person_keypoints_train2017.json", coco_mini / "train2017", COCO17
    )
    best = int(np.argmax((records.keypoints[:, :, 2] > 0).sum(1)))
    return records.subset([best])


class _Oracle(torch.nn.Module):
    """A "network" that answers each crop with the training target of the training crop it shows: it
    knows only the training samples, so it reproduces exactly what training taught for each view."""

    def __init__(self, crops: list[torch.Tensor], targets: list[torch.Tensor]):
        super().__init__()
        self.crops = torch.stack(crops)
        self.targets = torch.stack(targets)
        self.distances: list[list[float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x[:, None] - self.crops[None]).abs().mean(dim=(2, 3, 4))  # [B, views]
        self.distances += d.tolist()
        return self.targets[d.argmin(1)]


def test_inference_flip_undoes_the_training_flip(coco_person):
    """The flip test of inference (mirror the crop, predict, ``flip_heatmaps`` with ``schema.flip_index``)
    must agree with training's flipped crops and swapped flip pairs: the targets of a flipped training
    sample, flipped back, are the unflipped sample's targets, and the flip test of a network that
    predicts the training targets returns them unchanged."""
    codec = HeatmapCodec((128, 128), (32, 32), sigma=1.0)
    samples = {}
    for flip_prob in (0.0, 1.0):  # same seed: the same scale and rotation draws, flip off / on
        aug = AugmentConfig(scale=(0.9, 1.1), rotation=25, rotation_prob=1.0, flip_prob=flip_prob, color_jitter=0.0)
        samples[flip_prob] = TopDownDataset(coco_person, codec, COCO17, aug, seed=3)[0]
    plain, flipped = samples[0.0], samples[1.0]
    assert not bool(plain["flip"]) and bool(flipped["flip"]) and float(plain["rotation"]) != 0.0
    assert float(plain["rotation"]) == float(flipped["rotation"])
    weight = plain["target_weight"].numpy()
    assert weight.sum() >= 12  # most joints, left and right, are supervised
    np.testing.assert_array_equal(flipped["target_weight"].numpy(), weight[COCO17.flip_index()])

    # The training targets, flipped back by inference's flip.
    back = flip_heatmaps(flipped["target"][None], COCO17.flip_index())[0]
    torch.testing.assert_close(back, plain["target"], rtol=0, atol=1e-5)
    assert (back - flipped["target"]).abs().max() > 0.5  # flipping did move the peaks

    # The whole flip test of the runtime, with a network that has learnt exactly the training targets.
    oracle = _Oracle([plain["image"].float(), flipped["image"].float()], [plain["target"], flipped["target"]])
    out = predict_heatmaps(oracle, plain["image"][None].float(), flip_index=COCO17.flip_index())
    plain_view, mirrored_view = oracle.distances  # the runtime's mirrored crop is training's flipped crop
    assert plain_view[0] == 0 and mirrored_view[1] < 1.0 < mirrored_view[0]
    torch.testing.assert_close(out[0], plain["target"], rtol=0, atol=1e-5)
