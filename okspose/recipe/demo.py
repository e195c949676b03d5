"""The demo: synthetic people scenes -> small hourglass and person detector trained on CPU -> Team OKS's
top-down pipeline (detect, pose, rescore, IoU/OKS-NMS) -> COCO stats, the ablation table, pictures.

Everything runs offline from the embedded synthetic generator, so ``make demo`` works on a fresh
machine with no data and no downloads.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from okspose.checkpoints import Checkpoint
from okspose.config import Config, load_config
from okspose.data.build import build_records
from okspose.data.synthetic import generate_synthetic_coco
from okspose.distributed import DistInfo
from okspose.engine.train import train
from okspose.evaluation import format_stats
from okspose.fileio import save_json, save_text, stamp_matches
from okspose.inference.ablation import run_ablation_tables
from okspose.inference.boxes import BoxSource
from okspose.inference.poser import Poser
from okspose.inference.scoring import run_test, validate_gt_boxes
from okspose.inference.synthetic_detector import train_synthetic_detector
from okspose.models.build import build_model

DEMO_CONFIG = "demo_synthetic"  # the packaged okspose/configs/demo_synthetic.yaml


def make_demo_data(root: Path, train_images: int, val_images: int, seed: int = 0) -> None:
    """Generate the synthetic train/val sets unless the same ones are already there."""
    stamp = root / "synthetic.json"
    want = {"train": train_images, "val": val_images, "seed": seed}
    if stamp_matches(stamp, want):
        print(f"synthetic data already in {root}")
        return
    start = time.perf_counter()
    generate_synthetic_coco(root, "train", train_images, seed=seed)
    generate_synthetic_coco(root, "val", val_images, seed=seed + 1)
    save_json(want, stamp)
    print(f"generated {train_images} + {val_images} synthetic images in {time.perf_counter() - start:.1f} s")


def demo_config(out: Path, config: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    cfg = load_config(config or DEMO_CONFIG, overrides)
    cfg.data.root = str(out / "data")
    cfg.train.output_dir = str(out / "train")
    return cfg


def run_demo(out: Path, config: str | Path | None = None, overrides: list[str] | None = None,
             train_images: int = 600, val_images: int = 40, detector_minutes: float = 6.0,
             with_detector: bool = True) -> dict[str, dict[str, float]]:
    """Run the whole demo in ``out``: data, pose network, detector, GT-box and detector-box evaluation,
    Team OKS's ablation table, pictures. Returns the stats of each evaluation."""
    cfg = demo_config(out, config, overrides)
    make_demo_data(out / "data", train_images, val_images)
    persons = len(build_records(cfg, "val"))
    info = DistInfo()

    torch.manual_seed(cfg.train.seed)
    untrained = validate_gt_boxes(build_model(cfg), cfg, info)
    print(f"untrained network: AP {untrained['AP']:.3f} (ground-truth boxes)")

    start = time.perf_counter()
    ckpt = Path(cfg.train.output_dir) / "checkpoint.pth"
    train(cfg, resume=ckpt if ckpt.exists() else None, device="cpu")
    print(f"pose network training: {(time.perf_counter() - start) / 60:.1f} min")
    pictures = None if with_detector else out / "pictures"
    checkpoint = Checkpoint.read(ckpt)
    poser = Poser.from_checkpoint(cfg, checkpoint, info.device)
    trained = run_test(poser, cfg, BoxSource("gt"), out / "results_gt_boxes.json", info, progress=False,
                       vis_dir=pictures)
    stats = {"untrained": untrained, "trained": trained.stats}
    print(f"\nCOCO keypoint stats, synthetic val set, ground-truth boxes ({persons} persons):")
    print(format_stats(stats["trained"]))

    if with_detector:
        start = time.perf_counter()
        weights = train_synthetic_detector(out / "data", out / "detector.pth", minutes=detector_minutes)
        print(f"person detector (trained on the synthetic scenes): {(time.perf_counter() - start) / 60:.1f} min")
        source = BoxSource("synthetic", str(weights))
        stats["detector"] = run_test(poser, cfg, source, out / "results.json", info, progress=False,
                                     vis_dir=out / "pictures").stats
        print("\nCOCO keypoint stats, synthetic val set, detector boxes + rescoring + IoU/OKS-NMS:")
        print(format_stats(stats["detector"]))
        table = run_ablation_tables(cfg, checkpoint, source, info, progress=False)
        save_text(table, out / "ablation.md")
        print("\n" + table)
    print(f"(untrained network: AP {untrained['AP']:.3f})")
    print(f"results: {out}/results*.json; pictures: {out / 'pictures'} (overview.jpg tiles them)")
    return stats
