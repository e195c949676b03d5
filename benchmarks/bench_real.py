"""The first model that learns real people: the demo's network (1-stack hourglass, 64 features, 128x128)
trained on every real COCO person with a picture here (coco-mini + coco128 train, ~225 persons) and scored
on their val persons (~300, coco-mini + coco128 val, ground-truth boxes) with and without flip test; then
the same network pre-trained on the synthetic people and fine-tuned on the real ones the same way, to see
whether synthetic pre-training helps with little data. Prints the CPU, its native bf16 and the wall time,
a markdown table, and writes a learning curve (loss and AP per epoch) to OUT/learning_curve.png.

Everything runs in fp32 (train.amp=none, test.amp=none), so the figures do not depend on the CPU's bf16.
The settings are fixed before the run and not tuned against the val persons. About 30 min on 2 cores.

    python benchmarks/bench_real.py [--epochs 30] [--out work/bench_real]
    python benchmarks/bench_real.py --quick --epochs 1   # end to end in about a minute: tiny inputs and sets
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import time
from datetime import date
from pathlib import Path

import torch
from bench_startup import bf16_support, cpu_flags
from matplotlib.figure import Figure

from okspose.checkpoints import Checkpoint
from okspose.config import Config, load_config
from okspose.data.build import build_records
from okspose.distributed import DistInfo
from okspose.engine.train import train
from okspose.fileio import read_json, save_figure, save_json, write_coco
from okspose.inference.boxes import BoxSource
from okspose.inference.poser import Poser
from okspose.inference.scoring import pose_and_score
from okspose.recipe.demo import DEMO_CONFIG, make_demo_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"coco_mini": SHARED / "coco-mini", "coco128": SHARED / "coco128"}  # first listed wins a shared image
PINNED = ["train.amp=none", "test.amp=none", "train.progress=false", "train.workers=0"]
QUICK = ["data.input_size=[64,64]", "data.heatmap_size=[16,16]", "model.num_features=16",
         "data.max_train_persons=16", "data.max_val_persons=32"]


def merged(out: Path, split: str) -> Path:
    """One COCO file of every set's ``split`` persons (each once per epoch in training): absolute picture
    paths, an image listed in two sets taken from the first, annotations numbered anew."""
    images, annotations, categories = {}, [], None
    for root in SETS.values():
        data = read_json(root / "annotations" / f"person_keypoints_{split}2017.json", "annotation")
        categories = categories or data["categories"]
        new = {im["id"]: {**im, "file_name": str(root / f"{split}2017" / im["file_name"])} for im in data["images"]
               if im["id"] not in images}
        images.update(new)
        annotations += [a for a in data["annotations"] if a["image_id"] in new]
    annotations = [{**a, "id": i + 1} for i, a in enumerate(annotations)]
    return write_coco({"images": list(images.values()), "annotations": annotations, "categories": categories},
                      out / f"person_keypoints_{split}_merged.json")


def real_config(out: Path, name: str, epochs: int, extra: list[str]) -> Config:
    """The demo's network on the real train persons, validated each epoch (no flip: the curve's AP) on the
    val persons; both merged files are in ``out``."""
    cfg = load_config(DEMO_CONFIG, [*PINNED, f"data.train_ann={out / 'person_keypoints_train_merged.json'}",
                                    "data.train_images=''", f"data.val_ann={out / 'person_keypoints_val_merged.json'}",
                                    "data.val_images=''",
                                    f"train.epochs={epochs}", f"train.lr_steps=[{max(1, round(0.75 * epochs))}]",
                                    "train.eval_every=1", "test.flip_test=false", *extra])
    cfg.train.output_dir = str(out / "runs" / name)
    return cfg


def evaluate(cfg: Config, ckpt: Path) -> dict[str, dict[str, float]]:
    """COCO stats of the checkpoint on ``cfg``'s val persons with ground-truth boxes, with and without flip."""
    stats = {}
    for name, flip in (("flip", True), ("no_flip", False)):
        c = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, flip_test=flip))
        poser = Poser.from_checkpoint(c, Checkpoint.read(ckpt), torch.device("cpu"))
        stats[name] = pose_and_score(poser, c, BoxSource("gt"), DistInfo())[1].evaluation.as_dict()
    return stats


def timed_train(cfg: Config) -> tuple[Path, float]:
    start = time.perf_counter()
    train(cfg, device="cpu")
    return Path(cfg.train.output_dir) / "checkpoint.pth", time.perf_counter() - start


def plot_curves(runs: dict[str, Path], path: Path) -> Path:
    """Training loss and val AP (ground-truth boxes, no flip) per epoch of each run's log.csv."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, ap_ax = fig.subplots(1, 2)
    for label, run in runs.items():
        rows = list(csv.DictReader((run / "log.csv").open()))
        epochs = [int(r["epoch"]) for r in rows]
        loss_ax.plot(epochs, [float(r["loss"]) for r in rows], marker=".", label=label)
        ap_ax.plot(epochs, [100 * float(r["AP"]) for r in rows], marker=".", label=label)
    loss_ax.set(xlabel="epoch on the real persons", ylabel="training loss", yscale="log", title="loss")
    ap_ax.set(xlabel="epoch on the real persons", ylabel="AP (%)", title="val AP (GT boxes, no flip)")
    for ax in (loss_ax, ap_ax):
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--epochs", type=int, default=30, help="epochs on the real persons, for both runs")
    parser.add_argument("--pretrain-epochs", type=int, default=5, help="epochs on the synthetic people")
    parser.add_argument("--synthetic-images", type=int, default=600, help="synthetic pictures (1-3 people each)")
    parser.add_argument("--out", type=Path, default=Path("work/bench_real"))
    parser.add_argument("--quick", action="store_true",
                        help="a check that it runs: 64x64 inputs, 16 features, 16 persons per set, 32 val persons, "
                             "8 synthetic pictures")
    args = parser.parse_args()
    model, flags = cpu_flags()
    print(f"CPU: {model}, native bf16: {bf16_support(flags)} (not used: fp32 throughout); {date.today()}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    extra = QUICK if args.quick else []
    merged(out, "train")
    merged(out, "val")
    results = {}

    scratch = real_config(out, "scratch", args.epochs, extra)
    persons = {split: len(build_records(scratch, split)) for split in ("train", "val")}
    print(f"real COCO persons: {persons['train']} train, {persons['val']} val", flush=True)
    ckpt, seconds = timed_train(scratch)
    results["from scratch"] = {"epochs": f"{args.epochs}", "seconds": seconds, **evaluate(scratch, ckpt)}

    synthetic_images = 8 if args.quick else args.synthetic_images
    make_demo_data(out / "synthetic", synthetic_images, 2)
    pre = load_config(DEMO_CONFIG, [*PINNED, f"train.epochs={args.pretrain_epochs}",
                                    f"train.lr_steps=[{max(1, round(0.75 * args.pretrain_epochs))}]",
                                    "train.eval_every=0", *extra])
    pre.data.root, pre.train.output_dir = str(out / "synthetic"), str(out / "runs" / "synthetic")
    pre_ckpt, pre_seconds = timed_train(pre)
    results["synthetic only (no real person)"] = {"epochs": f"{args.pretrain_epochs} synthetic",
                                                  "seconds": pre_seconds, **evaluate(scratch, pre_ckpt)}

    tuned = real_config(out, "finetuned", args.epochs, [*extra, f"train.init_weights={pre_ckpt}"])
    ckpt, seconds = timed_train(tuned)
    results["synthetic, then fine-tuned"] = {"epochs": f"{args.pretrain_epochs} synthetic + {args.epochs}",
                                             "seconds": pre_seconds + seconds, **evaluate(tuned, ckpt)}

    curve = plot_curves({"from scratch": out / "runs" / "scratch", "synthetic, then fine-tuned": out / "runs" /
                         "finetuned"}, out / "learning_curve.png")
    wall = time.perf_counter() - start
    print("\n| model | epochs | AP (flip) | AP (no flip) | AP50 (flip) | AR (flip) | train min |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['epochs']} | {100 * r['flip']['AP']:.1f} | {100 * r['no_flip']['AP']:.1f} | "
              f"{100 * r['flip']['AP50']:.1f} | {100 * r['flip']['AR']:.1f} | {r['seconds'] / 60:.1f} |")
    print(f"\nlearning curve: {curve}; wall time {wall / 60:.1f} min")
    save_json({"cpu": model, "bf16": bf16_support(flags), "quick": args.quick, "persons": persons, "results": results,
               "wall_seconds": wall}, out / "results.json")


if __name__ == "__main__":
    main()
