"""The ``okspose`` command line: train, test, ablation, predict, eval-results, model-info, make-synthetic, demo,
search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from okspose.config import load_config
from okspose.engine.runs import BoxSource
from okspose.errors import OksposeError

EPILOG = "Config values can be overridden after the config path, e.g.: train.epochs=10 model.num_stacks=2"


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-3")


def cmd_train(args: argparse.Namespace) -> int:
    from okspose.engine.train import train

    cfg = load_config(args.config, args.overrides)
    train(cfg, resume=args.resume, device=args.device)
    return 0


def _box_source(args: argparse.Namespace) -> BoxSource:
    if args.detections:
        return BoxSource("detections", args.detections)
    if args.detector:
        return BoxSource(args.detector, args.detector_weights)
    return BoxSource("gt")


def _add_box_source(p: argparse.ArgumentParser, allow_gt: bool) -> None:
    g = p.add_mutually_exclusive_group(required=not allow_gt)
    if allow_gt:
        g.add_argument("--boxes", choices=["gt"], help="pose the ground-truth person boxes (the default)")
    g.add_argument("--detections", metavar="FILE", help="person boxes from a COCO results-format file")
    g.add_argument("--detector", choices=["maskrcnn", "synthetic"],
                   help="run a person detector: torchvision Mask R-CNN R50-FPN, or the demo's synthetic-scenes one")
    p.add_argument("--detector-weights", metavar="PATH",
                   help="detector weights (Mask R-CNN: default torchvision's COCO weights from the torch cache)")


def cmd_test(args: argparse.Namespace) -> int:
    from okspose.engine.distributed import cleanup, init_distributed
    from okspose.engine.runs import run_test
    from okspose.evaluation import format_stats

    cfg = load_config(args.config, args.overrides)
    source = _box_source(args)
    default = "results_gt_boxes.json" if source.kind == "gt" else "results.json"
    out = Path(args.out) if args.out else Path(cfg.train.output_dir) / default
    info = init_distributed(args.device)
    try:
        stats = run_test(cfg, args.checkpoint, source, out, info, vis_dir=args.vis)
    finally:
        cleanup(info)
    if stats is not None:
        print(f"{source.describe()}: wrote {out}")
        print(format_stats(stats))
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from okspose.engine.distributed import cleanup, init_distributed
    from okspose.engine.runs import run_ablation_tables

    cfg = load_config(args.config, args.overrides)
    info = init_distributed(args.device)
    try:
        text = run_ablation_tables(cfg, args.checkpoint, _box_source(args), info, with_gt=not args.no_gt)
    finally:
        cleanup(info)
    if text is not None:
        print(text)
        if args.out:
            Path(args.out).write_text(text)
    return 0


def cmd_eval_results(args: argparse.Namespace) -> int:
    from okspose.evaluation import evaluate_keypoints, format_stats

    stats = evaluate_keypoints(args.gt, args.results)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from okspose.builders import build_model
    from okspose.models.complexity import measure_complexity

    cfg = load_config(args.config, args.overrides)
    w, h = cfg.data.input_size
    m = cfg.model
    c = measure_complexity(build_model(cfg).eval(), (1, 3, h, w))
    kind = f"BlockQNN block [{m.block_code}] in the hourglass" if m.name == "blockqnn" else "Stacked Hourglass"
    print(f"{kind}: {m.num_stacks} stack(s), {m.num_features} features, depth {m.depth}, "
          f"{m.modules_per_position} module(s) per position, input {w}x{h}, "
          f"heatmaps {cfg.data.heatmap_size[0]}x{cfg.data.heatmap_size[1]}")
    print(f"parameters: {c.params / 1e6:.2f} M")
    print(f"per person: {c.macs / 1e9:.2f} GMACs ({c.flops / 1e9:.2f} GFLOPs)")
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from okspose.data.synthetic import generate_synthetic_coco

    for split, n, offset in (("train", args.train, 0), ("val", args.val, 1)):
        path = generate_synthetic_coco(args.out, split, n, seed=args.seed * 2 + offset,
                                       image_size=(args.width, args.height), max_people=args.max_people)
        print(f"wrote {n} images: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from okspose.demo import run_demo

    run_demo(Path(args.out), config=args.config, overrides=args.overrides, with_detector=not args.no_detector)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from okspose.engine.distributed import cleanup, init_distributed
    from okspose.predict import collect_inputs, run_predict, split_overrides

    paths, overrides = split_overrides(args.inputs)
    items, warnings = collect_inputs(paths)  # a missing input stops here, before any work
    cfg = load_config(args.config, overrides)
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    if args.detector_weights and not args.detector:
        raise ValueError("--detector-weights goes with --detector")
    if args.detections and not Path(args.detections).is_file():
        raise FileNotFoundError(f"detections file not found: {args.detections}")
    source = None if args.whole_image else _box_source(args)
    info = init_distributed(args.device)
    try:
        if info.is_main:
            for line in warnings:
                print(f"warning: {line}", file=sys.stderr)
        summary = run_predict(cfg, args.checkpoint, items, source, args.out, info, draw=not args.no_vis)
    finally:
        cleanup(info)
    if summary is not None:
        frames = f" and {summary.frames} video frames" if summary.frames else ""
        print(f"posed {summary.images} images{frames}: {summary.persons} persons")
        if summary.skipped.total:
            print(summary.skipped.summary())
        vis = f", {len(summary.pictures)} pictures in {Path(args.out) / 'vis'}" if summary.pictures else ""
        print(f"wrote {summary.predictions}, {summary.results}{vis}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from okspose.commands.search import run_search

    cfg = load_config(args.config, args.overrides)
    result = run_search(cfg, resume=args.resume, address=args.address)
    s = result.stats
    print(f"{s.finished} candidates in {s.seconds:.1f} s (driver overhead {s.overhead:.2f} s); "
          f"log, plots and state in {result.out_dir}")
    if result.best is not None:
        print(f"best block (reward {result.best.reward:.4f}, accuracy {result.best.accuracy:.4f}): {result.best.code}")
        print(f"train it: okspose train {result.out_dir / 'best_config.yaml'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="okspose", description="Top-down multi-person 2D pose estimation on COCO keypoints (Team OKS).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a pose network from a YAML config", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--resume", help="checkpoint.pth to continue from exactly")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="pose the val split (GT boxes, a detections file or a detector), print COCO stats",
                       epilog=EPILOG)
    _add_config(p)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    _add_box_source(p, allow_gt=True)
    p.add_argument("--out", help="results JSON (default: OUTPUT_DIR/results_gt_boxes.json or results.json)")
    p.add_argument("--vis", metavar="DIR", help="also draw the predicted poses of the first images into DIR")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("ablation", help="the seed's tables: instance scoring, NMS steps, GT boxes (markdown)",
                       epilog=EPILOG)
    _add_config(p)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    _add_box_source(p, allow_gt=False)
    p.add_argument("--no-gt", action="store_true", help="leave out the ground-truth-box row")
    p.add_argument("--out", help="also write the markdown to this file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser("eval-results", help="COCO keypoint AP/AR of a results file (pycocotools)")
    p.add_argument("--gt", required=True, help="COCO keypoint annotation file")
    p.add_argument("--results", required=True, help="COCO keypoint results file")
    p.add_argument("--json", action="store_true", help="print one JSON object (AP, AP50, ..., ARl)")
    p.set_defaults(func=cmd_eval_results)

    p = sub.add_parser("model-info", help="parameters and GFLOPs per person of a config's model", epilog=EPILOG)
    _add_config(p)
    p.set_defaults(func=cmd_model_info)

    p = sub.add_parser("make-synthetic", help="generate the synthetic COCO-format people scenes")
    p.add_argument("out", help="output folder (gets annotations/, train/, val/)")
    p.add_argument("--train", type=int, default=400, help="training images")
    p.add_argument("--val", type=int, default=50, help="validation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--max-people", type=int, default=3)
    p.set_defaults(func=cmd_make_synthetic)

    p = sub.add_parser("demo", help="synthetic data -> train a small hourglass on CPU -> evaluate -> pictures")
    p.add_argument("--out", default="work/demo", help="working folder")
    p.add_argument("--config", default=None, help="config to use instead of configs/demo_synthetic.yaml")
    p.add_argument("--no-detector", action="store_true", help="skip the detector: ground-truth boxes only")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=2")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "predict", help="pose people in images, folders and videos: COCO JSON and pictures",
        usage="%(prog)s CONFIG --checkpoint CKPT (--detections FILE | --detector {maskrcnn,synthetic} "
              "[--detector-weights PATH] | --whole-image) --out DIR PATH... [key=value ...]",
        description="Folders give the image and video files directly inside (not recursive). With --detections, "
                    "an image is matched to the file's image_id by the number its file name stem is "
                    "(000000000785.jpg -> 785); other images and video frames get no boxes. The PATHs and the "
                    "overrides come in one run: options go before or after them, not between.",
        epilog=EPILOG)
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("inputs", nargs="+", metavar="PATH... [key=value ...]",
                   help="images, folders of images, videos (.mp4 .avi .mov .mkv); then config overrides")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--detections", metavar="FILE", help="person boxes from a COCO results-format file")
    g.add_argument("--detector", choices=["maskrcnn", "synthetic"],
                   help="run a person detector: torchvision Mask R-CNN R50-FPN, or the demo's synthetic-scenes one")
    g.add_argument("--whole-image", action="store_true",
                   help="each picture is one person (box = the whole picture, score 1): for cropped pictures")
    p.add_argument("--detector-weights", metavar="PATH",
                   help="detector weights (Mask R-CNN: default torchvision's COCO weights from the torch cache)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="gets predictions.json (COCO annotations), results.json (COCO results) and vis/")
    p.add_argument("--no-vis", action="store_true", help="write the JSON files only, no pictures or videos")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("search", help="BlockQNN architecture search (Q-learning; sequential or on Ray)", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR (its state.json)")
    p.add_argument("--address", metavar="ADDR",
                   help="run the candidates on this Ray cluster ('auto' or HOST:PORT); implies the Ray executor")
    p.set_defaults(func=cmd_search)
    return parser


def _message(err: Exception) -> str:
    """The error's own words; an error re-raised from a DataLoader worker carries the worker's traceback,
    whose last line is the original ``module.Class: message``."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    np.set_printoptions(precision=3, suppress=True)
    try:
        return args.func(args)
    except (OksposeError, FileNotFoundError, ValueError) as err:
        print(f"okspose {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
