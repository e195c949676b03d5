"""The ``okspose`` command line: train, test, eval-results, model-info, make-synthetic, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from okspose.config import ConfigError, load_config
from okspose.data.coco import DataError

EPILOG = "Config values can be overridden after the config path, e.g.: train.epochs=10 model.num_stacks=2"


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-3")


def cmd_train(args: argparse.Namespace) -> int:
    from okspose.engine.train import train

    cfg = load_config(args.config, args.overrides)
    train(cfg, resume=args.resume, device=args.device)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    import torch

    from okspose.engine.builders import build_model, build_records, load_model_weights
    from okspose.engine.evaluate import evaluate_gt_boxes
    from okspose.evaluation import format_stats

    cfg = load_config(args.config, args.overrides)
    if args.boxes != "gt":
        raise SystemExit("only --boxes gt is available in this version")
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model_weights(build_model(cfg), args.checkpoint).to(device)
    records = build_records(cfg, "val")
    out = Path(args.out) if args.out else Path(cfg.train.output_dir) / "results_gt_boxes.json"
    stats = evaluate_gt_boxes(model, cfg, records, device, out, vis_dir=args.vis, progress=True)
    print(f"wrote {out}")
    print(format_stats(stats))
    return 0


def cmd_eval_results(args: argparse.Namespace) -> int:
    from okspose.evaluation import evaluate_keypoints, format_stats

    stats = evaluate_keypoints(args.gt, args.results)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from okspose.engine.builders import build_model
    from okspose.models.complexity import measure_complexity

    cfg = load_config(args.config, args.overrides)
    w, h = cfg.data.input_size
    c = measure_complexity(build_model(cfg).eval(), (1, 3, h, w))
    print(f"Stacked Hourglass: {cfg.model.num_stacks} stack(s), {cfg.model.num_features} features, "
          f"depth {cfg.model.depth}, input {w}x{h}, heatmaps {cfg.data.heatmap_size[0]}x{cfg.data.heatmap_size[1]}")
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

    run_demo(Path(args.out), config=args.config, overrides=args.overrides)
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

    p = sub.add_parser("test", help="pose the val split and print the COCO keypoint stats", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    p.add_argument("--boxes", default="gt", choices=["gt"], help="person boxes to pose (gt: ground truth)")
    p.add_argument("--out", help="results JSON (default: OUTPUT_DIR/results_gt_boxes.json)")
    p.add_argument("--vis", help="folder for pictures of the predicted poses")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_test)

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
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=2")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    np.set_printoptions(precision=3, suppress=True)
    try:
        return args.func(args)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as err:
        print(f"okspose {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
