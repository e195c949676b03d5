"""Pose-stage speed: persons/s of HG-8 and HG-2 at 256x256 with the default settings (the engine
``test.engine=auto`` picks here for a large job, with a cold ONNX cache), in fp32, the fast mode (fp32, bf16),
compiled (fp32, bf16) and ONNX Runtime, with the first call's time (compilation cold / with inductor's cache warm,
or export + session) and peak memory, against mmpose's Hourglass (HG52 1-stack, and 8 stacks) measured in
the same run, each row also as a share of this CPU's convolution peak in its precision (one large 3x3 conv: the
practical ceiling for a convolution network); then end-to-end images/s (detector + HG-8 with flip test)
on the real COCO samples for the path as it was before the speed work, the fast ones and the default settings.
Each row runs in a process of its own; the default row is then timed again against the best other row in
turn inside one process (``--paired``), since separate processes differ by up to ~15 % on a cloud CPU.

    .venv/bin/python benchmarks/bench_pose.py [--batch 8] [--repeat 3] [--modes ...] [--stacks 8 2] [--paired 10]
                                              [--no-peer] [--no-e2e | --no-pose] [--e2e-repeat 2] [--e2e-rows 0 3]

The peer runs in ../shared/peers' own venv (`bash ../shared/peers/setup_peer_env.sh .peer-venv`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch

from okspose.config import TestConfig

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
SAMPLES = REPO.parent / "shared" / "data" / "samples" / "coco"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MODES = ("default", "fp32", "fast", "fast+bf16", "compiled", "compiled+bf16", "onnxruntime")
DEFAULT_JOB = 1000  # persons the default row's engine is chosen for: a val split's worth, not a few pictures


def default_engine(model: torch.nn.Module, batch: int) -> tuple:
    """The pose network as `okspose test` runs it with no speed settings (TestConfig's defaults, no flip as
    in every row here), chosen for a job of DEFAULT_JOB persons: (a forward over crops, the choice)."""
    import dataclasses

    from okspose.config import TestConfig
    from okspose.data.codec import HeatmapCodec
    from okspose.inference.poser import Poser
    from okspose.inference.runtime import predict_heatmaps
    from okspose.keypoints import COCO17

    test = dataclasses.replace(TestConfig(), batch_size=batch, flip_test=False)
    poser = Poser(model, HeatmapCodec((256, 256), (64, 64), 1.0), COCO17, test, torch.device("cpu"))
    choice = poser.prepare(DEFAULT_JOB)
    layout = torch.channels_last if poser.channels_last else torch.contiguous_format  # as the Poser hands crops on

    def forward(x: torch.Tensor) -> torch.Tensor:
        return predict_heatmaps(poser.net, x.contiguous(memory_format=layout), None, poser.amp_dtype, poser.max_crops)

    return forward, choice


def pose_net(stacks: int, mode: str, batch: int) -> tuple:
    """HG-``stacks`` with random weights as ``mode`` runs it: (a forward over crops, its input batch, the
    autocast dtype around it, the default row's engine choice or None)."""
    from okspose.inference.compiled import compile_for_inference
    from okspose.inference.onnx_engine import OnnxRuntimeNet
    from okspose.inference.runtime import optimize_for_inference
    from okspose.models.hourglass import StackedHourglass

    torch.manual_seed(0)
    model = StackedHourglass(stacks, 256, 17, 4).eval()
    x = torch.randn(batch, 3, 256, 256)
    dtype = torch.bfloat16 if mode.endswith("bf16") else None
    if mode == "default":
        forward, choice = default_engine(model, batch)
        return forward, x, dtype, choice
    if mode == "onnxruntime":
        return OnnxRuntimeNet.from_model(model, (256, 256)), x, dtype, None
    if mode == "fp32":
        return model, x, dtype, None
    net = optimize_for_inference(model, torch.device("cpu"))
    if mode.startswith("compiled"):
        net = compile_for_inference(net, batch)
    return net, x.contiguous(memory_format=torch.channels_last), dtype, None


def use_caches(cache_dir: str, onnx: str = "onnx") -> None:
    """Point inductor's cache and the ONNX graph cache (subfolder ``onnx``) of this process at ``cache_dir``."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    os.environ["OKSPOSE_ONNX_CACHE"] = os.path.join(cache_dir, onnx)


def pose_speed(stacks: int, mode: str, batch: int, repeat: int, threads: int, cache_dir: str = "") -> dict:
    """Best persons/s of one forward pass over a batch of 256x256 crops (no flip), the time of the first
    call (compilation for compiled modes, export + session for ONNX Runtime) and peak memory.

    ``cache_dir``: inductor's cache for compiled modes and the default row's ONNX cache (a fresh one
    measures a cold compile or export).
    """
    if cache_dir:
        use_caches(cache_dir)
    from okspose.inference.runtime import autocast

    torch.set_num_threads(threads)
    start = time.perf_counter()
    net, x, dtype, choice = pose_net(stacks, mode, batch)
    times = []
    with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
        net(x)
        first = time.perf_counter() - start
        for _ in range(repeat):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return {"persons_per_s": batch / min(times), "first_s": first, "peak_mib": peak_mib(),
            "engine": choice and ", ".join([choice.engine, *(["compiled"] if choice.compiled else []),
                                            choice.precision])}


def paired_speed(stacks: int, modes: list[str], batch: int, rounds: int, threads: int, cache_dir: str) -> dict:
    """Median persons/s of ``modes`` timed in turn, one pass each per round, in one process: the rows of the
    table come from separate processes, whose speed differs by up to ~15 % on a 2-core cloud CPU, so a
    comparison of two engines is fairer side by side."""
    use_caches(cache_dir)
    from okspose.inference.runtime import autocast

    torch.set_num_threads(threads)
    nets = {mode: pose_net(stacks, mode, batch)[:3] for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    with torch.inference_mode():
        for k in range(rounds + 1):  # the first round warms up
            for mode, (net, x, dtype) in nets.items():
                with autocast(torch.device("cpu"), dtype):
                    start = time.perf_counter()
                    net(x)
                    if k:
                        times[mode].append(time.perf_counter() - start)
    return {mode: batch / statistics.median(t) for mode, t in times.items()}


class E2EPath(NamedTuple):
    detector: str  # "maskrcnn" | "mobilenet"
    det_amp: str
    det_channels_last: bool
    pose_amp: str
    pose_fast: bool  # BN folded + channels_last
    compiled: bool | str
    max_crops: int  # crops per forward pass (test.cpu_max_crops; 0: the whole batch, as before)
    engine: str = "torch"
    batch: int = 8


# The first two are the all-fp32 path (an fp32 contiguous Mask R-CNN; the pose network with test.fast=false and
# amp=none, or in its fast fp32 mode; each batch of 8 persons and their mirror images in one forward pass). The
# last is what a user gets with no speed settings: TestConfig's defaults for the detector and the pose network
# (test.engine=auto, chosen for this job of a few pictures with a cold ONNX cache).
_D = TestConfig()
E2E_PATHS = {
    "all fp32: Mask R-CNN fp32 + HG fp32": E2EPath("maskrcnn", "none", False, "none", False, False, 0),
    "all fp32, fast: Mask R-CNN fp32 + HG fast fp32": E2EPath("maskrcnn", "none", False, "none", True, False, 0),
    "Mask R-CNN bf16 + HG fast bf16": E2EPath("maskrcnn", "bf16", True, "bf16", True, False, 8),
    "MobileNetV3 bf16 + HG fast bf16": E2EPath("mobilenet", "bf16", True, "bf16", True, False, 8),
    "Mask R-CNN bf16 + HG compiled bf16": E2EPath("maskrcnn", "bf16", True, "bf16", True, True, 8),
    "default settings: Mask R-CNN + HG": E2EPath("maskrcnn", _D.det_amp, _D.fast, _D.amp, _D.fast, _D.compile,
                                                 _D.cpu_max_crops, _D.engine, _D.batch_size),
}


def end_to_end(stacks: int, path: str, threads: int, repeat: int, cache_dir: str) -> dict:
    """Best images/s and persons/s of detector + pose network (flip test) on the real
    samples/coco images. The detectors have untrained weights (speed only), so the persons posed are the
    images' boxes of the 56-AP detections file scoring >= 0.3, as many as a trained detector would give.
    The first pass (compilation for compiled paths) is left out of the timing and reported."""
    import dataclasses

    use_caches(cache_dir, "onnx-e2e")
    from okspose.data.codec import HeatmapCodec
    from okspose.inference.detections import load_detections
    from okspose.inference.detector import ARCHS, PersonDetector
    from okspose.inference.instances import records_from_detections
    from okspose.inference.poser import Poser
    from okspose.inference.runtime import resolve_amp
    from okspose.keypoints import COCO17
    from okspose.models.hourglass import StackedHourglass

    how = E2E_PATHS[path]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    files = {int(p.stem): str(p) for p in sorted(SAMPLES.glob("*.jpg"))}
    dets = load_detections(SAMPLES / "test_coco_det_AP_H_56.json", top_k=20, score_floor=0.3)
    records = records_from_detections(files, {i: dets[i] for i in files if i in dets}, 17)
    raw = ARCHS[how.detector][1](weights=None, weights_backbone=None, num_classes=91)
    detector = PersonDetector(model=raw, top_k=20, amp_dtype=resolve_amp(how.det_amp, cpu),
                              channels_last=how.det_channels_last)
    test = dataclasses.replace(TestConfig(), fast=how.pose_fast, flip_test=True, amp=how.pose_amp,
                               compile=how.compiled, batch_size=how.batch, cpu_max_crops=how.max_crops,
                               engine=how.engine)
    poser = Poser(StackedHourglass(stacks, 256, 17, 4), HeatmapCodec((256, 256), (64, 64), 1.0), COCO17, test, cpu)

    def run() -> None:
        from okspose.data.records import read_image

        images = {i: read_image(f) for i, f in files.items()}
        detector.detect(list(images.values()))
        poser.pose_decoded(images, records)

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    t = min(times)
    c = poser.choice
    return {"images_per_s": len(files) / t, "persons_per_s": len(records) / t, "images": len(files),
            "persons": len(records), "first_s": first, "peak_mib": peak_mib(),
            "pose": ", ".join([c.engine, *(["compiled"] if c.compiled else []), c.precision])}


def conv_peak(dtype_name: str, threads: int) -> float:
    """GFLOP/s of a large 3x3 convolution (512 -> 512 channels, 8 x 32 x 32, channels_last, oneDNN):
    this CPU's practical ceiling for a convolution network in that precision. (A square matrix product
    reads lower in fp32 on AMD CPUs, where MKL's sgemm does not take its fastest path.)"""
    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(512, 512, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(8, 512, 32, 32).contiguous(memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype_name == "bf16"):
        for _ in range(8):
            start = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - start)
    return 2 * 8 * 512 * 512 * 9 * 32 * 32 / best / 1e9


def run_in_process(target, *args):
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


def print_pose_table(peers: dict, rows: list, ref8: float | None) -> None:
    print("\n| model | persons/s | vs mmpose 8-stack | % of conv peak | first call s (cold / warm cache) "
          "| peak MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, speed in peers.items():
        if speed is not None:
            ratio = f"{speed / ref8:.2f}x" if ref8 else ""
            print(f"| {name} | {speed:.2f} | {ratio} | | | |")
    for name, speed, first, warm, mib, share in rows:
        ratio = f"{speed / ref8:.2f}x" if ref8 else ""
        setup = "" if first is None else f"{first:.0f}" + ("" if warm is None else f" / {warm:.0f}")
        print(f"| {name} | {speed:.2f} | {ratio} | {share:.0f}% | {setup} | {mib:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--paired", type=int, default=10, metavar="ROUNDS",
                    help="time the default row against the best other row in one process, in turn (0: skip)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--stacks", nargs="+", type=int, default=[8, 2])
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--no-pose", action="store_true", help="only the end-to-end table")
    ap.add_argument("--e2e-stacks", type=int, default=8)
    ap.add_argument("--e2e-repeat", type=int, default=2)
    ap.add_argument("--e2e-rows", type=int, nargs="+", help="only these end-to-end rows (0-based, in table order)")
    args = ap.parse_args()
    from okspose.inference.runtime import fast_bf16_cpu

    print(f"# pose stage, 256x256, batch {args.batch}, {args.threads} threads, torch {torch.__version__}, "
          f"CPU: {cpu_model()}, native bf16: {fast_bf16_cpu()}, AMX: {torch.cpu._is_amx_tile_supported()}\n")
    if args.no_pose:
        args.stacks, args.no_peer = [], True
    from okspose.models.complexity import count_flops
    from okspose.models.hourglass import StackedHourglass

    peak = {d: run_in_process(conv_peak, d, args.threads) for d in ("fp32", "bf16")}
    flops = {n: count_flops(StackedHourglass(n, 256, 17, 4)) for n in {*args.stacks, args.e2e_stacks}}
    print(f"convolution peak (3x3, 512 channels): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; "
          + ", ".join(f"HG-{n} {f / 1e9:.1f} GFLOPs/person: at most {peak['fp32'] * 1e9 / f:.2f} persons/s fp32, "
                      f"{peak['bf16'] * 1e9 / f:.2f} bf16" for n, f in sorted(flops.items())) + "\n", flush=True)
    rows, speeds = [], {}
    peers = {}
    if not args.no_peer:
        peers = {"mmpose HG52 (1 stack)": peer_speed(1, args.batch, args.repeat, args.threads),
                 "mmpose Hourglass 8 stacks": peer_speed(8, args.batch, args.repeat, args.threads)}
    cold = tempfile.mkdtemp(prefix="okspose-bench-inductor-")
    for stacks in args.stacks:
        for mode in args.modes:
            r = run_in_process(pose_speed, stacks, mode, args.batch, args.repeat, args.threads, cold)
            first = r["first_s"] if mode.startswith(("compiled", "onnx", "default")) else None
            warm = None
            if mode.startswith(("compiled", "default")):  # the same graph again: the on-disk caches are warm
                warm = run_in_process(pose_speed, stacks, mode, args.batch, 1, args.threads, cold)["first_s"]
            precision = "bf16" if "bf16" in (r["engine"] or mode) else "fp32"
            share = 100 * r["persons_per_s"] * flops[stacks] / 1e9 / peak[precision]
            name = f"okspose HG-{stacks} {mode}" + (f" settings ({r['engine']})" if r["engine"] else "")
            rows.append((name, r["persons_per_s"], first, warm, r["peak_mib"], share))
            speeds[stacks, mode] = r["persons_per_s"]
            print(f"  done: HG-{stacks} {mode}: {r['persons_per_s']:.2f} persons/s", flush=True)
    ref8 = peers.get("mmpose Hourglass 8 stacks")
    if rows:
        print_pose_table(peers, rows, ref8)
    if "default" in args.modes and args.paired:
        print(f"\n| default settings against the table's best other row, interleaved in one process ({args.paired} "
              "rounds, median) | default persons/s | best row persons/s | default / best |\n|---|---:|---:|---:|")
        for stacks in args.stacks:
            others = {mode: v for (n, mode), v in speeds.items() if n == stacks and mode != "default"}
            if not others:
                continue
            best = max(others, key=others.get)
            r = run_in_process(paired_speed, stacks, ["default", best], args.batch, args.paired, args.threads, cold)
            print(f"| HG-{stacks}: default vs {best} | {r['default']:.2f} | {r[best]:.2f} | "
                  f"{100 * r['default'] / r[best]:.0f}% |", flush=True)
    if not args.no_e2e and SAMPLES.is_dir():
        print(f"\n| end to end, HG-{args.e2e_stacks}, flip test | images/s | persons/s | vs all fp32 | "
              "vs all fp32, fast | first pass s | peak MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        bases = []
        rows_wanted = args.e2e_rows if args.e2e_rows is not None else range(len(E2E_PATHS))
        for path in [p for i, p in enumerate(E2E_PATHS) if i in rows_wanted]:
            r = run_in_process(end_to_end, args.e2e_stacks, path, args.threads, args.e2e_repeat, cold)
            if path.startswith("all fp32"):
                bases.append(r["images_per_s"])
            ratios = " | ".join(f"{r['images_per_s'] / b:.2f}x" for b in bases) + " |" * (2 - len(bases))
            print(f"| {path} ({r['images']} images, {r['persons']} persons; pose: {r['pose']}) | "
                  f"{r['images_per_s']:.3f} | "
                  f"{r['persons_per_s']:.2f} | {ratios} | {r['first_s']:.0f} | {r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
