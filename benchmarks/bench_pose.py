"""Pose-stage speed: persons/s of HG-8 and HG-2 at 256x256 in fp32 and in okspose's speed mode, against
mmpose's Hourglass (HG52 1-stack, and 8 stacks) measured in the same run; then end-to-end images/s
(Mask R-CNN R50-FPN detector + pose network) on real COCO images, with peak memory.

    .venv/bin/python benchmarks/bench_pose.py [--batch 8] [--repeat 3] [--no-peer] [--no-e2e]

The peer runs in ../shared/peers' own venv (`bash ../shared/peers/setup_peer_env.sh .peer-venv`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
SAMPLES = REPO.parent / "shared" / "data" / "samples" / "coco"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pose_speed(stacks: int, mode: str, batch: int, repeat: int, threads: int) -> dict:
    """Median persons/s of one forward pass over a batch of 256x256 crops (no flip)."""
    from okspose.inference import autocast, optimize_for_inference
    from okspose.models.hourglass import StackedHourglass

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = StackedHourglass(stacks, 256, 17, 4).eval()
    x = torch.randn(batch, 3, 256, 256)
    dtype = None
    if mode != "fp32":
        model = optimize_for_inference(model, torch.device("cpu"))
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if mode == "fast+bf16" else None
    times = []
    with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
        model(x)
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return {"persons_per_s": batch / sorted(times)[len(times) // 2], "peak_mib": _peak_mib()}


def end_to_end(stacks: int, threads: int, repeat: int) -> dict:
    """Images/s and persons/s of detector (Mask R-CNN R50-FPN, untrained weights: speed only) + pose
    network in speed mode on the real samples/coco images with their real detection count."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from okspose.data.coco import read_image
    from okspose.detections import load_detections
    from okspose.detector import PersonDetector
    from okspose.inference import normalize_images, optimize_for_inference, predict_heatmaps
    from okspose.keypoints import COCO17
    from okspose.models.hourglass import StackedHourglass

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images = [read_image(str(p)) for p in sorted(SAMPLES.glob("*.jpg"))]
    dets = load_detections(SAMPLES / "test_coco_det_AP_H_56.json", top_k=20, score_floor=0.3)
    persons = sum(len(s) for _, s in dets.values())
    raw = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    detector = PersonDetector(model=raw, top_k=20)
    pose = optimize_for_inference(StackedHourglass(stacks, 256, 17, 4), torch.device("cpu"))
    crops = torch.randint(0, 255, (persons, 3, 256, 256), dtype=torch.uint8)
    flip_index = COCO17.flip_index()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        detector.detect(images)
        for chunk in crops.split(8):
            predict_heatmaps(pose, normalize_images(chunk, torch.device("cpu"), True), flip_index)
        times.append(time.perf_counter() - start)
    t = sorted(times)[len(times) // 2]
    return {"images_per_s": len(images) / t, "persons_per_s": persons / t, "images": len(images),
            "persons": persons, "peak_mib": _peak_mib()}


def _run(target, *args) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(target, args)


def peer_speed(stacks: int, batch: int, repeat: int, threads: int) -> float | None:
    python = REPO / ".peer-venv" / "bin" / "python"
    if not python.exists():
        print(f"(no peer venv: `bash {PEERS}/setup_peer_env.sh .peer-venv` to compare with mmpose)")
        return None
    out = subprocess.run([str(python), str(PEERS / "mmpose_hourglass.py"), "--stacks", str(stacks), "--batch",
                          str(batch), "--repeat", str(repeat), "--threads", str(threads)],
                         capture_output=True, text=True, cwd=PEERS)
    match = re.search(r"([\d.]+) persons/s", out.stdout)
    if not match:
        print(out.stdout[-800:], out.stderr[-800:], file=sys.stderr)
        return None
    return float(match.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--modes", nargs="+", default=["fp32", "fast", "fast+bf16"])
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-e2e", action="store_true")
    args = ap.parse_args()
    from okspose.inference import fast_bf16_cpu

    print(f"# pose stage, 256x256, batch {args.batch}, {args.threads} threads, torch {torch.__version__}, "
          f"native bf16: {fast_bf16_cpu()}\n")
    rows = []
    peers = {}
    if not args.no_peer:
        peers = {"mmpose HG52 (1 stack)": peer_speed(1, args.batch, args.repeat, args.threads),
                 "mmpose Hourglass 8 stacks": peer_speed(8, args.batch, args.repeat, args.threads)}
    for stacks in (8, 2):
        for mode in args.modes:
            r = _run(pose_speed, stacks, mode, args.batch, args.repeat, args.threads)
            rows.append((f"okspose HG-{stacks} {mode}", r["persons_per_s"], r["peak_mib"]))
            print(f"  done: HG-{stacks} {mode}: {r['persons_per_s']:.2f} persons/s", flush=True)
    ref8 = peers.get("mmpose Hourglass 8 stacks")
    print("\n| model | persons/s | vs mmpose 8-stack | peak MiB |")
    print("|---|---:|---:|---:|")
    for name, speed in peers.items():
        if speed is not None:
            ratio = f"{speed / ref8:.2f}x" if ref8 else ""
            print(f"| {name} | {speed:.2f} | {ratio} | |")
    for name, speed, mib in rows:
        ratio = f"{speed / ref8:.2f}x" if ref8 else ""
        print(f"| {name} | {speed:.2f} | {ratio} | {mib:.0f} |")
    if not args.no_e2e and SAMPLES.is_dir():
        print("\n| end to end (detector + pose, flip test, speed mode) | images/s | persons/s | peak MiB |")
        print("|---|---:|---:|---:|")
        for stacks in (8, 2):
            r = _run(end_to_end, stacks, args.threads, 2)
            print(f"| Mask R-CNN R50-FPN + HG-{stacks} ({r['images']} images, {r['persons']} persons) | "
                  f"{r['images_per_s']:.3f} | {r['persons_per_s']:.2f} | {r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
