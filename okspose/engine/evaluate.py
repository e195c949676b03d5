"""Posing given person boxes: crops -> heatmaps -> image keypoints; COCO results records; pictures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from okspose.config import TestConfig
from okspose.data.coco import PersonRecords, TopDownDataset, collate_skipping, read_image
from okspose.data.codec import HeatmapCodec
from okspose.data.transforms import crop_to_image
from okspose.inference import normalize_images, optimize_for_inference, predict_heatmaps, resolve_amp
from okspose.keypoints import KeypointSchema
from okspose.visualize import draw_poses, make_grid


def predict_keypoints(
    model: nn.Module,
    records: PersonRecords,
    codec: HeatmapCodec,
    schema: KeypointSchema,
    test_cfg: TestConfig,
    device: torch.device,
    workers: int = 0,
    padding: float = 1.25,
    on_error: str = "raise",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Image-space keypoints [N, K, 3] (x, y, heatmap maximum) for every record, and a mask [N] of the
    records whose image could be read (False rows stay zero)."""
    dataset = TopDownDataset(records, codec, schema, augment=None, padding=padding, on_error=on_error)
    loader = DataLoader(dataset, batch_size=test_cfg.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skipping, pin_memory=device.type == "cuda")
    amp_dtype = resolve_amp(test_cfg.amp, device)
    flip_index = schema.flip_index() if test_cfg.flip_test else None
    if test_cfg.fast:
        model = optimize_for_inference(model, device)
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    out = np.zeros((len(records), schema.num_joints, 3))
    done = np.zeros(len(records), dtype=bool)
    was_training = model.training
    model.eval()
    for batch in tqdm(loader, desc="pose", unit="batch", disable=not progress, leave=False):
        if "image" not in batch:
            continue
        images = normalize_images(batch["image"], device, channels_last)
        heatmaps = predict_heatmaps(model, images, flip_index, amp_dtype)
        xy, maxvals = codec.decode(heatmaps, test_cfg.decode)
        idx = batch["index"].numpy()
        out[idx, :, :2] = crop_to_image(xy, batch["center"].numpy(), batch["scale"].numpy(),
                                        batch["rotation"].numpy(), codec.input_size)
        out[idx, :, 2] = maxvals
        done[idx] = True
    model.train(was_training)
    return out, done


def coco_results(
    records: PersonRecords, keypoints: np.ndarray, scores: np.ndarray, category_id: int = 1
) -> list[dict]:
    """COCO keypoint results records (image_id, category_id, keypoints [x, y, s]*K, score)."""
    return [
        {
            "image_id": int(image_id),
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "score": float(score),
        }
        for image_id, kp, score in zip(records.image_ids, keypoints, scores)
    ]


def draw_predictions(
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
    (people and joints at or above the display thresholds), plus ``overview.jpg`` tiling them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    paths = np.array(records.image_paths)
    for path in list(dict.fromkeys(records.image_paths))[:max_images]:
        rows = np.flatnonzero(paths == path)
        image = cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR)
        drawn = draw_poses(image, keypoints[rows], schema, records.boxes[rows], scores[rows], kpt_thr, instance_thr)
        target = out_dir / Path(path).name
        cv2.imwrite(str(target), drawn)
        written.append(target)
        tiles.append(drawn)
    if tiles:
        cv2.imwrite(str(out_dir / "overview.jpg"), make_grid(tiles, cols=4, cell=(320, 256)))
    return written
