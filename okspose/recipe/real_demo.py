"""``okspose demo --real``: real people end to end on a CPU. The best network of the real-person table
(docs/benchmarks.md) trained on every real COCO person with a picture in ``SHARED/data`` that is not in a
val set (coco-mini + coco128 train), then the val pictures of both sets (each once) posed with YOLOX-nano's
boxes (``SHARED/models/yolox_nano.onnx``) -> the pose network -> rescoring and IoU/OKS-NMS -> COCO stats
and pictures; the same network with ground-truth boxes for scale.
"""

from __future__ import annotations

import time
from pathlib import Path

from okspose.checkpoints import Checkpoint
from okspose.config import Config, load_config
from okspose.data.build import build_records
from okspose.data.merge import merge_coco_sets
from okspose.distributed import DistInfo
from okspose.engine.train import train
from okspose.errors import OksposeError
from okspose.evaluation import format_stats
from okspose.inference.boxes import BoxSource
from okspose.inference.poser import Poser
from okspose.inference.scoring import run_test

REAL_DEMO_CONFIG = "demo_real"  # the packaged okspose/configs/demo_real.yaml
REAL_SETS = ("coco-mini", "coco128")  # first wins a picture listed in both
YOLOX_FILE = "yolox_nano.onnx"


def real_demo_config(out: Path, shared: Path, config: str | Path | None = None,
                     overrides: list[str] | None = None) -> Config:
    """The demo's config on the merged real train / val files it writes to ``out/data``."""
    roots = [shared / "data" / name for name in REAL_SETS]
    for root in roots:
        if not (root / "annotations").is_dir():
            raise OksposeError(f"{root}: real data not found (okspose demo --real reads coco-mini and coco128 "
                               f"from --shared DIR/data)")
    files = {split: merge_coco_sets(roots, split, out / "data") for split in ("train", "val")}
    cfg = load_config(config or REAL_DEMO_CONFIG, [f"data.train_ann={files['train']}", "data.train_images=''",
                                                   f"data.val_ann={files['val']}", "data.val_images=''",
                                                   *(overrides or [])])
    cfg.train.output_dir = str(out / "train")
    return cfg


def run_real_demo(out: Path, shared: Path, config: str | Path | None = None,
                  overrides: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train on the real training persons, pose the real val pictures with YOLOX-nano's boxes and with
    ground-truth boxes, draw the detector-box poses in ``out/pictures``; returns both evaluations' stats."""
    yolox = shared / "models" / YOLOX_FILE
    if not yolox.is_file():
        raise OksposeError(f"{yolox}: YOLOX-nano not found (okspose demo --real reads it from --shared DIR/models)")
    cfg = real_demo_config(out, shared, config, overrides)
    persons = {split: len(build_records(cfg, split)) for split in ("train", "val")}
    print(f"real COCO persons: {persons['train']} train, {persons['val']} val (coco-mini + coco128)")
    info, start = DistInfo(), time.perf_counter()
    ckpt = Path(cfg.train.output_dir) / "checkpoint.pth"
    train(cfg, resume=ckpt if ckpt.exists() else None, device="cpu")
    print(f"pose network training: {(time.perf_counter() - start) / 60:.1f} min")
    poser = Poser.from_checkpoint(cfg, Checkpoint.read(ckpt), info.device)
    stats = {"gt": run_test(poser, cfg, BoxSource("gt"), out / "results_gt_boxes.json", info, progress=False).stats,
             "yolox": run_test(poser, cfg, BoxSource("yolox", str(yolox)), out / "results.json", info,
                               progress=False, vis_dir=out / "pictures").stats}
    print(f"\nCOCO keypoint stats, real val persons ({persons['val']}), ground-truth boxes:")
    print(format_stats(stats["gt"]))
    print("\nCOCO keypoint stats, real val pictures, YOLOX-nano boxes + rescoring + IoU/OKS-NMS:")
    print(format_stats(stats["yolox"]))
    print(f"results: {out}/results*.json; pictures: {out / 'pictures'} (overview.jpg tiles them)")
    return stats
