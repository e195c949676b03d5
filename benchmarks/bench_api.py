"""The Python API against ``okspose predict`` on the same pictures, in one process run: coco-mini's val
pictures with their labelled person boxes, posed by ``okspose predict --detections FILE --no-vis`` (in
process, checkpoint read and network prepared each run) and by
``PoseEstimator.from_checkpoint(...)(paths, boxes=...)`` (the same, as one batch call), interleaved,
``--repeat`` rounds, medians. The network is CONFIG's with seeded random weights (speed does not depend on
what the weights learned); both paths run the same engine (``test.engine=auto``, compile off, so neither
pays a compile the other does not).

    python benchmarks/bench_api.py [--config coco_hg2_256] [--repeat 3] [--images 40]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from bench_startup import bf16_support, cpu_flags

import okspose
from okspose.cli import main as cli
from okspose.config import load_config
from okspose.fileio import save_checkpoint
from okspose.models.build import build_model

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mini"


def val_pictures(limit: int) -> tuple[list[Path], list[list[list[float]]], list[dict]]:
    """(picture paths, per picture xyxy boxes, the same boxes as a COCO detections list) of the first
    ``limit`` val pictures that have a labelled person."""
    data = json.loads((COCO_MINI / "annotations" / "person_keypoints_val2017.json").read_text())
    boxes: dict[int, list] = {}
    for ann in data["annotations"]:
        if not ann.get("iscrowd"):
            boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    images = [im for im in data["images"] if im["id"] in boxes][:limit]
    paths = [COCO_MINI / "val2017" / im["file_name"] for im in images]
    xyxy = [[[x, y, x + w, y + h] for x, y, w, h in boxes[im["id"]]] for im in images]
    dets = [{"image_id": im["id"], "category_id": 1, "bbox": b, "score": 1.0} for im in images for b in boxes[im["id"]]]
    return paths, xyxy, dets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="coco_hg2_256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    model, flags = cpu_flags()
    print(f"CPU: {model}, native bf16: {bf16_support(flags)}; {date.today()}; torch threads "
          f"{torch.get_num_threads()}; config {args.config}")
    paths, xyxy, dets = val_pictures(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        cfg = load_config(args.config)
        ckpt = save_checkpoint({"model": build_model(cfg).state_dict(), "config": cfg.to_dict()}, tmp / "model.pth")
        folder = tmp / "pictures"
        folder.mkdir()
        for path in paths:
            (folder / path.name).symlink_to(path)
        (tmp / "dets.json").write_text(json.dumps(dets))
        persons = sum(map(len, xyxy))

        def run_predict() -> None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                assert cli(["predict", "--checkpoint", str(ckpt), "--detections", str(tmp / "dets.json"), "--no-vis",
                            "--device", "cpu", "--out", str(tmp / "out"), str(folder), "test.compile=false"]) == 0

        def run_api() -> None:
            with contextlib.redirect_stderr(io.StringIO()):
                estimator = okspose.PoseEstimator.from_checkpoint(ckpt, device="cpu", compile=False)
                estimator(paths, boxes=xyxy)

        runs = {"okspose predict --detections": run_predict, "PoseEstimator(paths, boxes=...)": run_api}
        for run in runs.values():  # warm: file cache, the ONNX graph cache where auto picks ONNX Runtime
            run()
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, run in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    print(f"\n{len(paths)} pictures, {persons} persons; median of {args.repeat} interleaved runs; CPU s: this "
          "process's CPU time, which other processes on a shared machine disturb less than the wall time\n")
    print("| path | median wall s | median CPU s | wall s of each run |\n|---|---:|---:|---|")
    for name in runs:
        print(f"| `{name}` | {statistics.median(wall[name]):.2f} | {statistics.median(cpu[name]):.2f} | "
              f"{', '.join(f'{x:.2f}' for x in wall[name])} |")
    names = list(runs)
    for what, t in (("wall", wall), ("CPU", cpu)):
        ratios = [a / b for a, b in zip(t[names[1]], t[names[0]])]
        print(f"API / predict {what} time: median {statistics.median(t[names[1]]) / statistics.median(t[names[0]]):.3f}"
              f", per round {', '.join(f'{r:.2f}' for r in ratios)} (<= 1: the API is no slower)")


if __name__ == "__main__":
    sys.exit(main())
