"""Training throughput on this machine: data loading per worker, and train steps of HG-2 / HG-8 at 256x256
in fp32, fp32 + channels_last, bf16 autocast + channels_last and compiled by inductor (forward and backward;
the first step, which compiles, is reported apart), with each run's peak memory.

Each measurement runs in its own process so that its peak RSS is its own. Prints a markdown table.

    .venv/bin/python benchmarks/bench_train.py [--steps 3] [--batch 4] [--stacks 2 8] [--json OUT]
    # the demo's network:
    .venv/bin/python benchmarks/bench_train.py --stacks 1 --features 64 --size 128 --batch 16 --optimizer adam
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mini"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_data(seconds: float) -> dict:
    """Samples/s of one loader worker: decode, augment, one affine warp, heatmap targets."""
    from okspose.config import AugmentConfig
    from okspose.data.codec import HeatmapCodec
    from okspose.data.dataset import TopDownDataset
    from okspose.data.records import load_person_records
    from okspose.keypoints import COCO17

    records = load_person_records(SHARED / "annotations/person_keypoints_train2017.json", SHARED / "train2017",
                                  COCO17)
    ds = TopDownDataset(records, HeatmapCodec((256, 256), (64, 64), 1.0), COCO17,
                        AugmentConfig(half_body_prob=0.3))
    ds[0]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ds[n % len(ds)]
        n += 1
    return {"samples_per_s": n / (time.perf_counter() - start), "peak_mib": _peak_mib()}


def bench_step(stacks: int, mode: str, batch: int, steps: int, threads: int, features: int = 256, size: int = 256,
               optimizer: str = "rmsprop") -> dict:
    """Samples/s of full train steps (forward, loss, backward, optimizer) on random ``size`` x ``size`` crops."""
    from okspose.inference.runtime import autocast
    from okspose.loss import JointsMSELoss
    from okspose.models.hourglass import StackedHourglass

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    channels_last = mode.endswith("+cl")
    dtype = torch.bfloat16 if "bf16" in mode else None
    model = StackedHourglass(stacks, features, 17, 4).train()
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    target, weight = torch.rand(batch, 17, size // 4, size // 4), torch.ones(batch, 17)
    opt = (torch.optim.Adam(model.parameters(), lr=2e-3) if optimizer == "adam"
           else torch.optim.RMSprop(model.parameters(), lr=2.5e-4))
    loss_fn = JointsMSELoss()
    net = torch.compile(model) if mode.startswith("compiled") else model  # inductor, forward and backward
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not timed
        start = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            out = net(x)
        loss = loss_fn(out, target, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    per_step = sorted(times[1:])[len(times[1:]) // 2]
    return {"samples_per_s": batch / per_step, "first_s": times[0], "peak_mib": _peak_mib()}


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(target, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed train steps per row (median)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--stacks", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--features", type=int, default=256, help="hourglass width (the demo's network: 64)")
    parser.add_argument("--size", type=int, default=256, help="input side (the demo's network: 128)")
    parser.add_argument("--optimizer", choices=["rmsprop", "adam"], default="rmsprop")
    parser.add_argument("--no-data", action="store_true", help="skip the data-loading row")
    parser.add_argument("--modes", nargs="+", default=["fp32", "fp32+cl", "bf16+cl"],
                        choices=["fp32", "fp32+cl", "bf16+cl", "compiled", "compiled+cl", "compiled+bf16+cl"])
    parser.add_argument("--data-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()

    from okspose.inference.runtime import fast_bf16_cpu

    print(f"# training throughput: {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}, native bf16 (AMX/AVX512-BF16): {fast_bf16_cpu()}\n")
    rows = []
    if SHARED.is_dir() and not args.no_data:
        r = _run(bench_data, args.data_seconds)
        rows.append({"what": "data loading (1 worker, coco-mini, aug + targets)", **r})
    for stacks in args.stacks:
        base = None
        for mode in args.modes:
            r = _run(bench_step, stacks, mode, args.batch, args.steps, args.threads, args.features, args.size,
                     args.optimizer)
            base = base or r["samples_per_s"]
            rows.append({"what": f"HG-{stacks} ({args.features} features, {args.size} px) train step, "
                                 f"batch {args.batch}, {args.optimizer}, {mode}", **r,
                         "vs_fp32": r["samples_per_s"] / base})
            print(f"  done: HG-{stacks} {mode}: {r['samples_per_s']:.2f} samples/s", flush=True)
    print("\n| measurement | samples/s | vs first mode | first step s | peak memory (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        ratio = f"{row['vs_fp32']:.2f}x" if "vs_fp32" in row else ""
        first = f"{row['first_s']:.1f}" if "first_s" in row else ""
        print(f"| {row['what']} | {row['samples_per_s']:.2f} | {ratio} | {first} | {row['peak_mib']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
