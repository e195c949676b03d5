"""``okspose export``: the folded pose network of a checkpoint to ONNX (fp32, or INT8 with ``--int8``),
checked against PyTorch.

The check runs both the PyTorch network (fp32, eval, BatchNorm not folded: the reference) and the
exported graph in ONNX Runtime on real person crops: the first ``check_persons`` persons of the config's
val split (for INT8, of its pictures that calibration did not read), or, where that split is not on this
machine, random inputs (said so in the report). The graph
also goes into the on-disk cache (:func:`okspose.inference.onnx_engine.onnx_cache_dir`), where
``test.engine=onnxruntime`` (or ``auto``) and ``onnxruntime-int8`` find it instead of exporting again.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from okspose.checkpoints import Checkpoint
from okspose.config import Config
from okspose.data.build import build_codec
from okspose.errors import OksposeError
from okspose.fileio import atomic_write
from okspose.inference.onnx_engine import OnnxRuntimeNet, fp32_graph, graph_key
from okspose.inference.quantize import Calibration, first_persons, int8_graph, person_crops, val_records
from okspose.models.build import checkpoint_model
from okspose.run_config import command_config

CONFIDENT = 0.3  # a joint whose fp32 heatmap maximum reaches this counts as found


@dataclass(frozen=True)
class ExportReport:
    out: Path
    megabytes: float
    graph: str  # "fp32", or INT8 and what it was calibrated on
    inputs: str  # what the check ran on
    max_abs_diff: float  # largest |heatmap difference| between ONNX Runtime and PyTorch fp32
    max_heatmap: float  # largest heatmap value, for scale
    within_1px: float  # share of the confident fp32 joints that the graph puts within 1 crop pixel


def check_crops(cfg: Config, persons: int, calibration: Calibration | None) -> tuple[torch.Tensor, str]:
    """Normalised crops of the first ``persons`` val persons whose pictures ``calibration`` did not read (the
    check would flatter INT8 on them), or random inputs where the val split is not readable here; and a
    description of which."""
    records = val_records(cfg)
    if records is not None:
        apart = "" if calibration is None else " apart from calibration"
        if calibration is not None:
            seen = calibration.images()
            records = records.subset([i for i, path in enumerate(records.image_paths)
                                      if Path(path).resolve() not in seen])
        crops = person_crops(cfg, first_persons(records, persons))
        if crops is None:
            raise OksposeError(f"export: no val person of {cfg.data_path('val_ann')}{apart} to check the graph on")
        return crops, f"{len(crops)} val persons' crops{apart}"
    w, h = cfg.data.input_size
    generator = torch.Generator().manual_seed(0)
    return torch.randn(persons, 3, h, w, generator=generator), f"{persons} random inputs (no val data here)"


def run_export(cfg: Config, checkpoint: Checkpoint, out: str | Path, check_persons: int = 16,
               int8: bool = False) -> ExportReport:
    model = checkpoint_model(cfg, checkpoint).eval()
    codec = build_codec(cfg)
    size = codec.input_size
    calibration = Calibration(cfg, cfg.test.int8_calibration) if int8 else None
    graph = int8_graph(model, size, calibration) if calibration is not None else \
        fp32_graph(model, size, graph_key(model, size))
    data = graph if isinstance(graph, bytes) else graph.read_bytes()
    atomic_write(out, lambda f: f.write(data))
    crops, inputs = check_crops(cfg, check_persons, calibration)
    with torch.inference_mode():
        ref = model(crops)[-1].float()
    got = OnnxRuntimeNet(data)(crops)
    (ref_xy, ref_score), (got_xy, _) = codec.decode(ref, cfg.test.decode), codec.decode(got, cfg.test.decode)
    moved = np.linalg.norm(got_xy - ref_xy, axis=-1)[ref_score >= CONFIDENT]
    within = float((moved <= 1.0).mean()) if moved.size else float("nan")
    graph_kind = "fp32" if calibration is None else \
        f"INT8, calibrated on {len(calibration.records)} persons of {calibration.ann}"
    return ExportReport(Path(out), len(data) / 2**20, graph_kind, inputs, float((got - ref).abs().max()),
                        float(ref.abs().max()), within)


def run(args: argparse.Namespace) -> int:
    extra = [f"test.int8_calibration={args.calibration}"] if args.calibration is not None else []
    cfg, checkpoint = command_config(args.config, [*args.overrides, *extra], args.checkpoint)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".int8.onnx" if args.int8 else ".onnx")
    r = run_export(cfg, checkpoint, out, args.check_persons, args.int8)
    print(f"wrote {r.out} ({r.megabytes:.1f} MiB, {r.graph}, dynamic batch)")
    print(f"ONNX Runtime vs PyTorch fp32 on {r.inputs}: max |heatmap difference| {r.max_abs_diff:.2e} "
          f"(largest heatmap value {r.max_heatmap:.3f}); {100 * r.within_1px:.1f}% of the confident joints "
          f"within 1 crop pixel")
    return 0
