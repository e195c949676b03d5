"""``okspose export``: the folded pose network of a checkpoint to ONNX, checked against PyTorch.

The check runs both the PyTorch network (fp32, eval, BatchNorm not folded: the reference) and the
exported graph in ONNX Runtime on real person crops: the first ``check_persons`` persons of the config's
val split, or, where that split is not on this machine, random inputs (said so in the report).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from okspose.checkpoints import Checkpoint
from okspose.config import Config
from okspose.data.build import build_codec, build_records
from okspose.data.crops import ImageCrops
from okspose.inference.onnx_engine import OnnxRuntimeNet, export_onnx
from okspose.inference.runtime import normalize_images
from okspose.models.build import checkpoint_model
from okspose.run_config import command_config


@dataclass(frozen=True)
class ExportReport:
    out: Path
    megabytes: float
    inputs: str  # what the check ran on
    max_abs_diff: float  # largest |heatmap difference| between ONNX Runtime and PyTorch fp32
    max_heatmap: float  # largest heatmap value, for scale


def check_crops(cfg: Config, persons: int) -> tuple[torch.Tensor, str]:
    """Normalised crops of the first ``persons`` val persons, or random inputs where the val split is not
    readable here; and a description of which."""
    w, h = cfg.data.input_size
    if cfg.data_path("val_ann").is_file():
        records = build_records(cfg, "val")
        records = records.subset(np.arange(min(persons, len(records))))
        dataset = ImageCrops(records, (w, h), cfg.data.padding, on_error="skip")
        crops = [item["image"] for item in (dataset[i] for i in range(len(dataset))) if "image" in item]
        if crops:
            images = torch.cat(crops)
            return normalize_images(images, torch.device("cpu")), f"{len(images)} val persons' crops"
    generator = torch.Generator().manual_seed(0)
    return torch.randn(persons, 3, h, w, generator=generator), f"{persons} random inputs (no val data here)"


def run_export(cfg: Config, checkpoint: Checkpoint, out: str | Path, check_persons: int = 16) -> ExportReport:
    model = checkpoint_model(cfg, checkpoint).eval()
    codec = build_codec(cfg)
    data = export_onnx(model, codec.input_size, out)
    crops, inputs = check_crops(cfg, check_persons)
    with torch.inference_mode():
        ref = model(crops)[-1].float()
    got = OnnxRuntimeNet(data)(crops)
    return ExportReport(Path(out), len(data) / 2**20, inputs, float((got - ref).abs().max()),
                        float(ref.abs().max()))


def run(args: argparse.Namespace) -> int:
    cfg, checkpoint = command_config(args.config, args.overrides, args.checkpoint)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".onnx")
    r = run_export(cfg, checkpoint, out, args.check_persons)
    print(f"wrote {r.out} ({r.megabytes:.1f} MiB, dynamic batch)")
    print(f"ONNX Runtime vs PyTorch fp32 on {r.inputs}: max |heatmap difference| {r.max_abs_diff:.2e} "
          f"(largest heatmap value {r.max_heatmap:.3f})")
    return 0
