"""The demo: synthetic people scenes -> train a small hourglass on CPU -> GT-box COCO evaluation -> pictures.

Everything runs offline from the embedded synthetic generator, so ``make demo`` works on a fresh
machine with no data and no downloads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from okspose.config import Config, load_config
from okspose.data.synthetic import generate_synthetic_coco
from okspose.engine.builders import build_model, build_records, load_model_weights
from okspose.engine.train import train
from okspose.evaluation import format_stats
from okspose.pipeline import evaluate_gt_boxes

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_synthetic.yaml"


def make_demo_data(root: Path, train_images: int, val_images: int, seed: int = 0) -> None:
    """Generate the synthetic train/val sets unless the same ones are already there."""
    stamp = root / "synthetic.json"
    want = {"train": train_images, "val": val_images, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        print(f"synthetic data already in {root}")
        return
    start = time.perf_counter()
    generate_synthetic_coco(root, "train", train_images, seed=seed)
    generate_synthetic_coco(root, "val", val_images, seed=seed + 1)
    stamp.write_text(json.dumps(want))
    print(f"generated {train_images} + {val_images} synthetic images in {time.perf_counter() - start:.1f} s")


def demo_config(out: Path, config: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    cfg = load_config(config or DEMO_CONFIG, overrides)
    cfg.data.root = str(out / "data")
    cfg.train.output_dir = str(out / "train")
    return cfg


def run_demo(out: Path, config: str | Path | None = None, overrides: list[str] | None = None,
             train_images: int = 600, val_images: int = 40) -> dict[str, dict[str, float]]:
    """Run the whole demo in ``out``; returns the stats of the untrained and the trained network."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = demo_config(out, config, overrides)
    make_demo_data(out / "data", train_images, val_images)
    device = torch.device("cpu")
    records = build_records(cfg, "val")

    torch.manual_seed(cfg.train.seed)
    untrained = evaluate_gt_boxes(build_model(cfg), cfg, records, device)
    print(f"untrained network: AP {untrained['AP']:.3f}")

    start = time.perf_counter()
    ckpt = Path(cfg.train.output_dir) / "checkpoint.pth"
    train(cfg, resume=ckpt if ckpt.exists() else None, device="cpu")
    print(f"training took {(time.perf_counter() - start) / 60:.1f} min")

    model = load_model_weights(build_model(cfg), ckpt)
    results = out / "results_gt_boxes.json"
    trained = evaluate_gt_boxes(model, cfg, records, device, results, vis_dir=out / "pictures")
    print(f"\nCOCO keypoint stats, synthetic val set, ground-truth boxes ({len(records)} persons):")
    print(format_stats(trained))
    print(f"(untrained network: AP {untrained['AP']:.3f})")
    print(f"results: {results}\npictures: {out / 'pictures'} (overview.jpg tiles them)")
    return {"untrained": untrained, "trained": trained}
