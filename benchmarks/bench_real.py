"""AP on real persons: okspose's networks trained on every real COCO person with a picture here that is not in
a val set (coco-mini + coco128 train, 225 persons) and scored with pycocotools on coco-mini + coco128 val (each
image once, 299 persons) with ground-truth boxes and with YOLOX-nano's boxes, over seeds, beside MoveNet
Lightning posing the same boxes through the same scoring path.

Rows: the demo's hourglass (1 stack, 64 features, 128x128) from scratch, and pre-trained on the synthetic
people first; the backbone network (EfficientNet-Lite0 + deconvolution head) ImageNet-initialised and from
scratch; MoveNet (trained on COCO train by Google; one run: it is deterministic). Each (row, seed) writes
OUT/results/ROW_sSEED.json and is skipped when that file is there, so rows run in separate processes into
one OUT; ``--table`` prints the table of every result there (mean and 95% Student-t interval over seeds).
``--select ROW`` trains ROW on 80% of the training pictures and prints the AP on the other 20% every
``--select-every`` epochs: settings are chosen there, never on the val persons.

Everything runs in fp32 (train.amp=none, test.amp=none, test.engine=torch), so the figures do not depend on
the CPU's bf16.

    python benchmarks/bench_real.py --rows hg_scratch,movenet [--seeds 0,1,2] [--epochs 30] [--out DIR]
    python benchmarks/bench_real.py --select bb_imagenet --epochs 40 [train.lr=5e-4 ...]
    python benchmarks/bench_real.py --table [--out DIR]
    python benchmarks/bench_real.py --quick --rows hg_scratch --seeds 0 --epochs 1   # end to end in a minute
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
from bench_startup import bf16_support, cpu_flags
from bench_yolox import detect_file
from real_sets import merged

from okspose.checkpoints import Checkpoint
from okspose.config import Config, load_config
from okspose.data.build import build_records
from okspose.distributed import DistInfo
from okspose.engine.train import train
from okspose.fileio import read_json, save_json, write_coco
from okspose.inference.boxes import BoxSource
from okspose.inference.poser import Poser
from okspose.inference.scoring import pose_and_score
from okspose.intervals import paired_interval
from okspose.recipe.demo import DEMO_CONFIG, make_demo_data

PINNED = ["train.amp=none", "test.amp=none", "test.engine=torch", "train.progress=false", "train.workers=0"]
QUICK = ["data.input_size=[64,64]", "data.heatmap_size=[16,16]", "model.num_features=16",
         "data.max_train_persons=16", "data.max_val_persons=32"]
BACKBONE = ["model.name=backbone", "model.backbone=efficientnet_lite0"]
HOLDOUT_EVERY = 5  # --select: every 5th training picture (by id) is held out


def schedule(epochs: int) -> list[str]:
    """The demo's schedule for ``epochs``: x0.1 at 75% of them, no validation during training."""
    return [f"train.epochs={epochs}", f"train.lr_steps=[{max(1, round(0.75 * epochs))}]", "train.eval_every=0"]


@dataclass(frozen=True)
class Row:
    label: str
    overrides: tuple[str, ...] = ()
    synthetic_pretrain: bool = False
    epochs: int | None = None  # the row's own schedule (chosen with --select), else --epochs


ROWS = {
    "hg_scratch": Row("hourglass (1 stack, 64 features) from scratch"),
    "hg_synthetic": Row("hourglass pre-trained on synthetic people", synthetic_pretrain=True),
    "bb_imagenet": Row("EfficientNet-Lite0 + deconv head, ImageNet-initialised",
                       (*BACKBONE, "model.pretrained=imagenet")),
    "bb_scratch": Row("EfficientNet-Lite0 + deconv head from scratch", tuple(BACKBONE)),
    # chosen by --select on the held-out fifth of the training pictures (docs/benchmarks.md), never on val
    "bb_imagenet_selected": Row("EfficientNet-Lite0 + deconv head, ImageNet-initialised, 150 epochs at lr 1e-3 "
                                "(chosen on a held-out fifth of the training persons)",
                                (*BACKBONE, "model.pretrained=imagenet", "train.lr=1e-3"), epochs=150),
    "bb_scratch_selected": Row("EfficientNet-Lite0 + deconv head from scratch, the same 150 epochs at lr 1e-3",
                               (*BACKBONE, "train.lr=1e-3"), epochs=150),
    "movenet": Row("MoveNet SinglePose Lightning (int8; Google, trained on COCO train)"),
}


def real_config(out: Path, name: str, epochs: int, extra: list[str], train_ann: Path, val_ann: Path) -> Config:
    """The demo's settings on real persons (absolute picture paths in the annotation files)."""
    cfg = load_config(DEMO_CONFIG, [*PINNED, f"data.train_ann={train_ann}", "data.train_images=''",
                                    f"data.val_ann={val_ann}", "data.val_images=''", *schedule(epochs), *extra])
    cfg.train.output_dir = str(out / "runs" / name)
    return cfg


def synthetic_pretrain(out: Path, seed: int, epochs: int, images: int, extra: list[str]) -> Path:
    """The demo's network trained on the synthetic people (the same pictures for every seed)."""
    make_demo_data(out / "synthetic", images, 2)
    cfg = load_config(DEMO_CONFIG, [*PINNED, *schedule(epochs), f"train.seed={seed}", *extra])
    cfg.data.root, cfg.train.output_dir = str(out / "synthetic"), str(out / "runs" / f"synthetic_s{seed}")
    train(cfg, device="cpu")
    return Path(cfg.train.output_dir) / "checkpoint.pth"


def evaluate(poser, cfg: Config, yolox_boxes: Path) -> dict[str, dict[str, float]]:
    """COCO keypoint stats on ``cfg``'s val persons with ground-truth boxes and with YOLOX-nano's boxes
    (rescoring, IoU/OKS-NMS), through okspose's one scoring path."""
    return {name: pose_and_score(poser, cfg, source, DistInfo())[1].evaluation.as_dict()
            for name, source in (("gt", BoxSource("gt")), ("yolox", BoxSource("detections", str(yolox_boxes))))}


def run_row(out: Path, row: str, seed: int, args: argparse.Namespace, extra: list[str]) -> dict:
    """Train (unless MoveNet) and evaluate one row with one seed."""
    spec, start = ROWS[row], time.perf_counter()
    epochs = spec.epochs or args.epochs
    train_ann, val_ann = out / "person_keypoints_train_merged.json", out / "person_keypoints_val_merged.json"
    cfg = real_config(out, f"{row}_s{seed}", epochs, [*extra, *spec.overrides, f"train.seed={seed}"],
                      train_ann, val_ann)
    if row == "movenet":
        from movenet import MoveNetPoser

        return {"seconds": 0.0, **evaluate(MoveNetPoser(), cfg, out / "yolox_val.json")}
    if spec.synthetic_pretrain:
        cfg.train.init_weights = str(synthetic_pretrain(out, seed, args.pretrain_epochs, args.synthetic_images,
                                                        extra))
    train(cfg, device="cpu")
    seconds = time.perf_counter() - start
    poser = Poser.from_checkpoint(cfg, Checkpoint.read(Path(cfg.train.output_dir) / "checkpoint.pth"),
                                  torch.device("cpu"))
    return {"seconds": seconds, "epochs": epochs, **evaluate(poser, cfg, out / "yolox_val.json")}


def split_train(out: Path) -> tuple[Path, Path]:
    """The merged training persons as two files: every ``HOLDOUT_EVERY``-th picture (by id) held out."""
    data = read_json(out / "person_keypoints_train_merged.json", "annotation")
    ids = sorted(im["id"] for im in data["images"])
    held = set(ids[HOLDOUT_EVERY - 1::HOLDOUT_EVERY])
    paths = []
    for name, keep in (("fit", lambda i: i not in held), ("holdout", lambda i: i in held)):
        part = {"images": [im for im in data["images"] if keep(im["id"])],
                "annotations": [a for a in data["annotations"] if keep(a["image_id"])],
                "categories": data["categories"]}
        paths.append(write_coco(part, out / f"person_keypoints_train_{name}.json"))
    return paths[0], paths[1]


def select(out: Path, row: str, args: argparse.Namespace, extra: list[str]) -> None:
    """Train ``row`` with ``args.settings`` (config overrides, after the row's own) on the fit part of the
    training persons and print its held-out AP (GT boxes)."""
    fit, holdout = split_train(out)
    name = "_".join([f"select_{row}_e{args.epochs}", *(s.replace("=", "-") for s in args.settings)])
    cfg = real_config(out, name, args.epochs, [*extra, *ROWS[row].overrides, *args.settings,
                                               f"train.eval_every={args.select_every}"], fit, holdout)
    if ROWS[row].synthetic_pretrain:
        cfg.train.init_weights = str(synthetic_pretrain(out, 0, args.pretrain_epochs, args.synthetic_images, extra))
    print(f"select {row}: {len(build_records(cfg, 'train'))} fit persons, {len(build_records(cfg, 'val'))} held out")
    train(cfg, device="cpu")
    for r in csv.DictReader((Path(cfg.train.output_dir) / "log.csv").open()):
        if r.get("AP"):
            print(f"select {row} {' '.join(args.settings)}: epoch {r['epoch']}: held-out AP "
                  f"{100 * float(r['AP']):.1f}", flush=True)


def cell(values: list[float]) -> str:
    """Mean in %, with its 95% interval over seeds when there are several."""
    interval = paired_interval(values, [0.0] * len(values))
    if interval is None:
        return f"{100 * values[0]:.1f}"
    return f"{100 * interval.mean:.1f} [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"


def table(out: Path) -> str:
    """The markdown table of every result in OUT/results."""
    lines = ["| network | seeds | GT boxes AP | AP50 | AP75 | YOLOX-nano boxes AP | AP50 | AP75 | train min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row, spec in ROWS.items():
        runs = [read_json(p, "result") for p in sorted((out / "results").glob(f"{row}_s*.json"))
                if p.stem[len(row) + 2:].isdigit()]  # bb_imagenet_s0, not bb_imagenet_selected_s0
        if not runs:
            continue
        cells = [cell([r[boxes][k] for r in runs]) for boxes in ("gt", "yolox") for k in ("AP", "AP50", "AP75")]
        minutes = sum(r["seconds"] for r in runs) / len(runs) / 60
        lines.append(f"| {spec.label} | {len(runs)} | {' | '.join(cells)} | {minutes:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--rows", default="", help=f"comma-separated rows to run: {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30, help="epochs on the real persons")
    parser.add_argument("--pretrain-epochs", type=int, default=5, help="epochs on the synthetic people")
    parser.add_argument("--synthetic-images", type=int, default=600, help="synthetic pictures (1-3 people each)")
    parser.add_argument("--select", choices=list(ROWS), help="train on 80%% of the training pictures, print "
                                                                "the AP on the rest")
    parser.add_argument("--select-every", type=int, default=5, help="--select: epochs between held-out scores")
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                        help="--select: settings to try (config overrides, e.g. train.lr=5e-4)")
    parser.add_argument("--table", action="store_true", help="print the table of the results in OUT")
    parser.add_argument("--out", type=Path, default=Path("work/bench_real"))
    parser.add_argument("--quick", action="store_true",
                        help="a check that it runs: 64x64 inputs, 16 features, 16 train and 32 val persons")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.table:
        print(table(out))
        return
    model, flags = cpu_flags()
    print(f"CPU: {model}, native bf16: {bf16_support(flags)} (not used: fp32 throughout); {date.today()}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    extra = QUICK if args.quick else []
    merged(out, "train")
    val = merged(out, "val")
    if not (out / "yolox_val.json").is_file():
        detect_file(val, None, out / "yolox_val.json")
    if args.select:
        select(out, args.select, args, extra)
        return
    for row in filter(None, args.rows.split(",")):
        for seed in [0] if row == "movenet" else [int(s) for s in args.seeds.split(",")]:
            path = out / "results" / f"{row}_s{seed}.json"
            if path.is_file():
                continue
            result = run_row(out, row, seed, args, extra)
            save_json(result, path)
            print(f"{row} seed {seed}: AP {100 * result['gt']['AP']:.1f} (GT boxes), "
                  f"{100 * result['yolox']['AP']:.1f} (YOLOX-nano boxes); {result['seconds'] / 60:.1f} min",
                  flush=True)
    print("\n" + table(out))


if __name__ == "__main__":
    main()
