"""INT8 against ONNX Runtime fp32: pose-stage persons/s of HG-8 and HG-2 (256x256, batch 8, no flip,
random weights, as in bench_pose.py; INT8 calibrated on random crops, which sets its ranges but not its
speed), and agreement with plain fp32 on the demo's val set with the demo's network (ground-truth boxes,
the demo's test settings, flip test included; INT8 calibrated on the first test.int8_calibration training
persons, as `okspose test` does, so no scored person was calibrated on): AP of each engine, and the share
of the confidently found joints (fp32 score >= 0.3) within 1 and 0.5 px.

    .venv/bin/python benchmarks/bench_int8.py [--stacks 8 2] [--repeat 3] [--checkpoint CKPT]
                                              [--no-speed | --no-agreement] [--quick]

The agreement part needs the demo's network (`make demo`: work/demo/train/model_best.pth, the default
--checkpoint). ``--quick``: the speed part on a tiny network (1 stack, 16 features, 64x64), to check the
script runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_pose import cpu_model, peak_mib, run_in_process

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "work" / "demo" / "train" / "model_best.pth"
CALIBRATION_CROPS = 32


def int8_speed(stacks: int, features: int, size: int, batch: int, repeat: int, threads: int) -> dict:
    """Best persons/s of ONNX Runtime fp32 and INT8 over one batch, and the time to quantize."""
    from okspose.inference.onnx_engine import OnnxRuntimeNet, export_onnx
    from okspose.inference.quantize import has_vnni, quantize_int8
    from okspose.models.hourglass import StackedHourglass

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = StackedHourglass(stacks, features, 17, 4).eval()
    fp32 = export_onnx(model, (size, size))
    start = time.perf_counter()
    int8 = quantize_int8(fp32, torch.randn(CALIBRATION_CROPS, 3, size, size), reduce_range=not has_vnni())
    quantize_s = time.perf_counter() - start
    x = torch.randn(batch, 3, size, size)
    out = {"quantize_s": quantize_s}
    for name, graph in (("fp32", fp32), ("int8", int8)):
        net = OnnxRuntimeNet(graph, threads)
        net(x)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
        out[name] = batch / min(times)
    out["peak_mib"] = peak_mib()
    return out


AGREEMENT_ENGINES = {  # pinned, so the figures mean the same on every CPU
    "fp32 (reference)": {"engine": "torch", "fast": False, "amp": "none"},
    "onnxruntime fp32": {"engine": "onnxruntime", "amp": "none"},
    "onnxruntime-int8": {"engine": "onnxruntime-int8", "amp": "none"},
}


def agreement(checkpoint: str, threads: int) -> list[tuple[str, float, float, float]]:
    """(engine, AP, confident joints within 1 px, within 0.5 px) per engine on the checkpoint's val set."""
    import dataclasses

    from okspose.distributed import DistInfo
    from okspose.inference.boxes import BoxSource
    from okspose.inference.poser import Poser
    from okspose.inference.scoring import pose_and_score
    from okspose.run_config import command_config

    torch.set_num_threads(threads)
    cfg, ckpt = command_config(None, [], checkpoint)
    rows, ref = [], None
    for name, settings in AGREEMENT_ENGINES.items():
        run_cfg = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, **settings))
        poser = Poser.from_checkpoint(run_cfg, ckpt, torch.device("cpu"))
        posed, scored = pose_and_score(poser, run_cfg, BoxSource("gt"), DistInfo())
        ref = posed.keypoints if ref is None else ref
        confident = ref[..., 2] >= 0.3
        moved = np.linalg.norm(posed.keypoints[..., :2] - ref[..., :2], axis=-1)[confident]
        rows.append((name, scored.evaluation.stats["AP"], float((moved <= 1).mean()), float((moved <= 0.5).mean())))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", nargs="+", type=int, default=[8, 2])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT), help="the network for the agreement part")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-agreement", action="store_true")
    ap.add_argument("--quick", action="store_true", help="the speed part on a tiny network: a check that it runs")
    args = ap.parse_args()
    from okspose.inference.onnx_engine import onnx_available
    from okspose.inference.quantize import has_vnni

    if not onnx_available():
        print("bench_int8: needs the onnx extra (pip install 'okspose[onnx]')", file=sys.stderr)
        return 2
    if not args.no_agreement and not Path(args.checkpoint).is_file():
        print(f"bench_int8: no network at {args.checkpoint} for the agreement part: run `make demo` first, or pass "
              "--checkpoint PATH or --no-agreement", file=sys.stderr)
        return 2
    print(f"# INT8 vs ONNX Runtime fp32, {args.threads} threads, torch {torch.__version__}, CPU: {cpu_model()}, "
          f"VNNI: {has_vnni()}\n")
    if not args.no_speed:
        sizes = [(1, 16, 64)] if args.quick else [(n, 256, 256) for n in args.stacks]
        print("| model | ONNX Runtime fp32 persons/s | INT8 persons/s | INT8 / fp32 | quantize s | peak MiB |")
        print("|---|---:|---:|---:|---:|---:|")
        for stacks, features, size in sizes:
            r = run_in_process(int8_speed, stacks, features, size, args.batch, args.repeat, args.threads)
            print(f"| HG-{stacks}, {features} features, {size}x{size} | {r['fp32']:.2f} | {r['int8']:.2f} | "
                  f"{r['int8'] / r['fp32']:.2f}x | {r['quantize_s']:.0f} | {r['peak_mib']:.0f} |", flush=True)
    if not args.no_agreement:
        print(f"\nagreement with plain fp32 on {args.checkpoint}'s val set (GT boxes, its test settings):\n")
        print("| engine | AP | confident joints within 1 px | within 0.5 px |")
        print("|---|---:|---:|---:|")
        for name, ap_, within1, within05 in run_in_process(agreement, args.checkpoint, args.threads):
            print(f"| {name} | {ap_:.4f} | {100 * within1:.1f}% | {100 * within05:.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
