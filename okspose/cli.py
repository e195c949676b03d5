"""The ``okspose`` command line: train, test, ablation, predict, eval-results, model-info, make-synthetic, demo,
select-data, mine-hard, reproduce, search."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from okspose.builders import load_run_config
from okspose.commands.boxes import BoxSource
from okspose.config import Config, packaged_configs, split_overrides
from okspose.errors import OksposeError

EPILOG = ("Config values can be overridden anywhere on the command line, e.g.: train.epochs=10 model.num_stacks=2. "
          f"CONFIG is a YAML file or a packaged config: {', '.join(packaged_configs())}.")


def _add_config(p: argparse.ArgumentParser, required: bool = True) -> None:
    """CONFIG and ``key=value`` overrides; :func:`_take_positionals` sorts them out after parsing."""
    what = "YAML config, then config overrides (e.g. train.lr=1e-3)"
    if not required:
        what += "; CONFIG defaults to the settings stored in --checkpoint"
    p.add_argument("positionals", nargs="*", metavar="CONFIG [key=value ...]" if required
                   else "[CONFIG] [key=value ...]", help=what)
    p.set_defaults(positional_kind="config" if required else "optional config")


def cmd_train(args: argparse.Namespace) -> int:
    from okspose.engine.train import train

    cfg = load_run_config(args.config, args.overrides)
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
    g.add_argument("--detector", choices=["maskrcnn", "mobilenet", "synthetic"],
                   help="run a person detector: torchvision Mask R-CNN R50-FPN (the seed's), Faster R-CNN "
                        "MobileNetV3-Large FPN (lighter, for CPUs), or the demo's synthetic-scenes one")
    p.add_argument("--detector-weights", metavar="PATH",
                   help="detector weights (Mask R-CNN: default torchvision's COCO weights from the torch cache)")


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["torch", "onnxruntime"],
                   help="what runs the pose network: PyTorch (default) or ONNX Runtime on the exported graph "
                        "(needs the onnx extra); the same as test.engine=...")


def _run_config(args: argparse.Namespace) -> Config:
    """The command's config from CONFIG, the checkpoint and the overrides, with ``--engine`` applied."""
    engine = [f"test.engine={args.engine}"] if getattr(args, "engine", None) else []
    return load_run_config(args.config, [*args.overrides, *engine], args.checkpoint)


def cmd_test(args: argparse.Namespace) -> int:
    from okspose.commands.test import run_test
    from okspose.engine.distributed import cleanup, init_distributed
    from okspose.evaluation import format_stats

    cfg = _run_config(args)
    source = _box_source(args)
    default = "results_gt_boxes.json" if source.kind == "gt" else "results.json"
    out = Path(args.out) if args.out else Path(cfg.train.output_dir) / default
    info = init_distributed(args.device)
    try:
        evaluation = run_test(cfg, args.checkpoint, source, out, info, vis_dir=args.vis)
    finally:
        cleanup(info)
    if evaluation is not None:
        print(f"{source.describe()}: wrote {out} ({evaluation.images} images)")
        print(format_stats(evaluation.stats))
        if evaluation.skip_line():
            print(evaluation.skip_line())
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from okspose.commands.ablation import run_ablation_tables
    from okspose.engine.distributed import cleanup, init_distributed

    cfg = _run_config(args)
    info = init_distributed(args.device)
    try:
        text = run_ablation_tables(cfg, args.checkpoint, _box_source(args), info, with_gt=not args.no_gt,
                                   rows=[_named_checkpoint(r) for r in args.row])
    finally:
        cleanup(info)
    if text is not None:
        print(text)
        if args.out:
            Path(args.out).write_text(text)
    return 0


def _named_checkpoint(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise OksposeError(f"--row {text!r}: expected NAME=CHECKPOINT")
    if not Path(path).is_file():
        raise OksposeError(f"--row {name}: checkpoint not found: {path}")
    return name, path


def cmd_eval_results(args: argparse.Namespace) -> int:
    from okspose.evaluation import evaluate_keypoints, format_stats
    from okspose.keypoints import get_schema

    stats = evaluate_keypoints(args.gt, args.results, sigmas=get_schema(args.schema).sigmas)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from okspose.builders import build_model
    from okspose.models.complexity import measure_complexity

    cfg = load_run_config(args.config, args.overrides)
    w, h = cfg.data.input_size
    m = cfg.model
    c = measure_complexity(build_model(cfg).eval(), (1, 3, h, w))
    joints, out_h, out_w = c.output_shape[1:]
    kind = f"BlockQNN block [{m.block_code}] in the hourglass" if m.name == "blockqnn" else "Stacked Hourglass"
    print(f"{kind}: {m.num_stacks} stack(s), {m.num_features} features, depth {m.depth}, "
          f"{m.modules_per_position} module(s) per position, input {w}x{h} -> heatmaps {out_w}x{out_h} "
          f"({joints} joints)")
    print(f"parameters: {c.params / 1e6:.2f} M")
    print(f"per person: {c.macs / 1e9:.2f} GMACs ({c.flops / 1e9:.2f} GFLOPs)")
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from okspose.data.synthetic import generate_synthetic_coco

    for split, n, offset in (("train", args.train, 0), ("val", args.val, 1)):
        path = generate_synthetic_coco(args.out, split, n, seed=args.seed * 2 + offset,
                                       image_size=(args.width, args.height), max_people=args.max_people)
        print(f"wrote {n} images: {path}")
        if split == "train" and args.corrupt:
            from okspose.data.corruption import corrupt_coco_file

            clean, record = corrupt_coco_file(path, args.corrupt, seed=args.seed)
            print(f"corrupted {args.corrupt:.0%} of the train persons' keypoints: clean labels {clean}, "
                  f"record {record}")
    if args.aic:
        from okspose.data.synthetic_aic import generate_synthetic_aic

        path = generate_synthetic_aic(Path(args.out) / "aic", args.aic, seed=args.seed)
        print(f"wrote {args.aic} AI Challenger-layout images: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from okspose.commands.demo import run_demo

    run_demo(Path(args.out), config=args.config, overrides=args.overrides, with_detector=not args.no_detector)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from okspose.commands.predict import collect_inputs, run_predict
    from okspose.engine.distributed import cleanup, init_distributed

    items, warnings = collect_inputs(args.inputs)  # a missing input stops here, before any work
    cfg = _run_config(args)
    if args.detector_weights and not args.detector:
        raise OksposeError("--detector-weights goes with --detector")
    if args.detections and not Path(args.detections).is_file():
        raise OksposeError(f"detections file not found: {args.detections}")
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


def cmd_select_data(args: argparse.Namespace) -> int:
    from okspose.commands.select_data import run_select_data
    from okspose.data.selection import SelectionRule

    base = SelectionRule.literal() if args.literal else SelectionRule()
    rule = SelectionRule(args.s if args.s is not None else base.s, args.area or base.area,
                         tuple(args.line) if args.line else base.line, args.aspect_ratio, args.padding)
    r = run_select_data(args.gt, args.out, rule, plot=args.plot, report=args.report, images=args.images)
    print(f"judged {r['persons']} persons: kept {r['kept']}, dropped {r['dropped']} "
          f"({100 * r['dropped'] / max(r['persons'], 1):.2f} %); {r['not_judged']} other annotations passed through")
    print(f"wrote {args.out}" + "".join(f", {p}" for p in (args.report, args.plot) if p))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from okspose.commands.search import run_search

    cfg = load_run_config(args.config, args.overrides)
    result = run_search(cfg, resume=args.resume, address=args.address)
    s = result.stats
    print(f"{s.finished} candidates in {s.seconds:.1f} s (driver overhead {s.overhead:.2f} s); "
          f"log, plots and state in {result.out_dir}")
    if result.best is not None:
        print(f"best block (reward {result.best.reward:.4f}, accuracy {result.best.accuracy:.4f}): {result.best.code}")
        print(f"train it: okspose train {result.out_dir / 'best_config.yaml'}")
    return 0


def cmd_mine_hard(args: argparse.Namespace) -> int:
    from okspose.commands.mine_hard import format_summary, run_mine_hard
    from okspose.engine.distributed import cleanup, init_distributed

    info = init_distributed(args.device)
    try:
        summary = run_mine_hard(args.checkpoint, args.data, args.out, args.oks_thr, args.fraction, args.images,
                                args.dataset, args.overrides, info.device)
    finally:
        cleanup(info)
    print(format_summary(summary))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from okspose.commands.reproduce import run_reproduce

    result = run_reproduce(args.out, args.size, args.overrides)
    print("\n" + result["text"])
    print(f"wall time {result['seconds']['total'] / 60:.1f} min; everything is in {result['out']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from okspose.commands.export import run_export

    cfg = _run_config(args)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".onnx")
    r = run_export(cfg, args.checkpoint, out, args.check_persons)
    print(f"wrote {r.out} ({r.megabytes:.1f} MiB, dynamic batch)")
    print(f"ONNX Runtime vs PyTorch fp32 on {r.inputs}: max |heatmap difference| {r.max_abs_diff:.2e} "
          f"(largest heatmap value {r.max_heatmap:.3f})")
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
    _add_config(p, required=False)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    _add_box_source(p, allow_gt=True)
    p.add_argument("--out", help="results JSON (default: OUTPUT_DIR/results_gt_boxes.json or results.json)")
    p.add_argument("--vis", metavar="DIR", help="also draw the predicted poses of the first images into DIR")
    _add_engine(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("ablation", help="the seed's tables: instance scoring, NMS steps, GT boxes (markdown)",
                       epilog=EPILOG)
    _add_config(p, required=False)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    _add_box_source(p, allow_gt=False)
    p.add_argument("--no-gt", action="store_true", help="leave out the ground-truth-box row")
    p.add_argument("--row", action="append", default=[], metavar="NAME=CKPT",
                   help="a data row: a checkpoint of the same network trained without a data step (e.g. "
                        "'naive=runs/naive/model_best.pth', 'no external data=runs/coco/model_best.pth'); "
                        "repeat it. The Data table lists these rows, then --checkpoint, with the test settings")
    _add_engine(p)
    p.add_argument("--out", help="also write the markdown to this file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser("eval-results", help="COCO keypoint AP/AR of a results file (pycocotools)")
    p.add_argument("--gt", required=True, help="COCO keypoint annotation file")
    p.add_argument("--results", required=True, help="COCO keypoint results file")
    p.add_argument("--json", action="store_true", help="print one JSON object (AP, AP50, ..., ARl)")
    p.add_argument("--schema", default="coco17", help="keypoint schema whose OKS sigmas score the results "
                   "(coco17, aic14, mpii16, crowdpose14)")
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
    p.add_argument("--corrupt", type=float, default=0.0, metavar="FRACTION",
                   help="give this fraction of train persons wrong keypoints (the seed's false annotations)")
    p.add_argument("--aic", type=int, default=0, metavar="N",
                   help="also write N images of an external set in the AI Challenger layout to OUT/aic")
    p.set_defaults(func=cmd_make_synthetic)

    p = sub.add_parser("demo", help="synthetic data -> train a small hourglass on CPU -> evaluate -> pictures")
    p.add_argument("--out", default="work/demo", help="working folder")
    p.add_argument("--config", default=None, help="config to use instead of configs/demo_synthetic.yaml")
    p.add_argument("--no-detector", action="store_true", help="skip the detector: ground-truth boxes only")
    p.add_argument("positionals", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=2")
    p.set_defaults(func=cmd_demo, positional_kind="overrides")

    p = sub.add_parser(
        "predict", help="pose people in images, folders and videos: COCO JSON and pictures",
        usage="%(prog)s [CONFIG] --checkpoint CKPT (--detections FILE | --detector {maskrcnn,mobilenet,synthetic} "
              "[--detector-weights PATH] | --whole-image) --out DIR PATH... [key=value ...]",
        description="Folders give the image and video files directly inside (not recursive). With --detections, "
                    "an image is matched to the file's image_id by the number its file name stem is "
                    "(000000000785.jpg -> 785); other images and video frames get no boxes. CONFIG (a .yaml "
                    "file or a packaged config name) is optional: the checkpoint carries its settings.",
        epilog=EPILOG)
    p.add_argument("positionals", nargs="+", metavar="[CONFIG] PATH... [key=value ...]",
                   help="images, folders of images, videos (.mp4 .avi .mov .mkv), config overrides")
    p.set_defaults(positional_kind="inputs")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--detections", metavar="FILE", help="person boxes from a COCO results-format file")
    g.add_argument("--detector", choices=["maskrcnn", "mobilenet", "synthetic"],
                   help="run a person detector: torchvision Mask R-CNN R50-FPN (the seed's), Faster R-CNN "
                        "MobileNetV3-Large FPN (lighter, for CPUs), or the demo's synthetic-scenes one")
    g.add_argument("--whole-image", action="store_true",
                   help="each picture is one person (box = the whole picture, score 1): for cropped pictures")
    p.add_argument("--detector-weights", metavar="PATH",
                   help="detector weights (Mask R-CNN: default torchvision's COCO weights from the torch cache)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="gets predictions.json (COCO annotations), results.json (COCO results) and vis/")
    p.add_argument("--no-vis", action="store_true", help="write the JSON files only, no pictures or videos")
    _add_engine(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("select-data", help="drop persons whose keypoints sit far from their box (the seed's "
                       "data selection): filtered COCO file, report, (ks, n) plot")
    p.add_argument("--gt", required=True, help="COCO keypoint annotation file (.json or .json.gz)")
    p.add_argument("--out", required=True, help="filtered COCO file (.json, or .json.gz to gzip it)")
    p.add_argument("--plot", metavar="PNG", help="(ks, n) histogram with the line, and dropped examples")
    p.add_argument("--report", metavar="FILE", help="JSON report: kept/dropped by number of labeled keypoints")
    p.add_argument("--images", metavar="DIR", help="the images of --gt: draw dropped persons in the plot")
    p.add_argument("--s", type=float, help="ks falloff s (default 0.2; 1 with --literal)")
    p.add_argument("--area", choices=["padded", "box"],
                   help="padded: box at the input aspect ratio x padding (default); box: raw box area")
    p.add_argument("--line", type=float, nargs=4, metavar=("KS0", "N0", "KS1", "N1"),
                   help="the line's two points (default 0.45 1 0.65 17)")
    p.add_argument("--aspect-ratio", type=float, default=0.75,
                   help="input width/height for the padded area (default 0.75: HRNet's 192x256)")
    p.add_argument("--padding", type=float, default=1.25, help="crop padding for the padded area")
    p.add_argument("--literal", action="store_true", help="the slide's formula taken literally: s=1, raw box area")
    p.set_defaults(func=cmd_select_data)
    p = sub.add_parser("search", help="BlockQNN architecture search (Q-learning; sequential or on Ray)", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR (its state.json)")
    p.add_argument("--address", metavar="ADDR",
                   help="run the candidates on this Ray cluster ('auto' or HOST:PORT); implies the Ray executor")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("mine-hard", help="pose an external set's persons with a COCO model, keep the hardest by OKS "
                       "(the seed's AI Challenger mining): subset in the same layout, summary, histogram",
                       description="OKS over the joints both schemas share, with COCO's sigmas and the box area "
                       "for AIC persons. Writes OUT, OUT_summary.json and OUT_oks.png (OUT's stem).", epilog=EPILOG)
    p.add_argument("--checkpoint", required=True, help="the COCO-trained model (checkpoint.pth or model_best.pth)")
    p.add_argument("--data", required=True, metavar="CONFIG_OR_FILE",
                   help="annotation file (AIC original layout or COCO; .json/.json.gz), or a config whose "
                        "data.datasets lists the external set")
    p.add_argument("--out", required=True, help="mined subset, in the layout --data was in (.json or .json.gz)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--oks-thr", type=float, metavar="T", help="mine the persons whose OKS is below T")
    g.add_argument("--fraction", type=float, metavar="F", help="mine the lowest-OKS fraction F of the persons")
    p.add_argument("--images", metavar="DIR", help="the pictures (default: images/ next to an annotation file, "
                   "or the set's folder in the config)")
    p.add_argument("--dataset", default="", metavar="NAME", help="with a config: the data.datasets entry to mine "
                   "(default: its only non-COCO-17 set)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("positionals", nargs="*", metavar="key=value", help="config overrides, e.g. test.flip_test=true")
    p.set_defaults(func=cmd_mine_hard, positional_kind="overrides")

    p = sub.add_parser("reproduce", help="the seed's experiment table on synthetic data: naive -> + data selection "
                       "-> + rescoring -> + OKS-NMS -> + external data (mined) -> + GT boxes, training every model")
    p.add_argument("--out", default="work/reproduce", help="working folder (gets SIZE/: data, runs, the table)")
    p.add_argument("--size", choices=["smoke", "full"], default="full",
                   help="full: ~9 min on 2 idle cores with native bf16 (~25 min in fp32); "
                        "smoke: tiny data, one epoch each (seconds)")
    p.add_argument("positionals", nargs="*", metavar="key=value", help="overrides of every model's config")
    p.set_defaults(func=cmd_reproduce, positional_kind="overrides")

    p = sub.add_parser("export", help="the folded pose network to ONNX (dynamic batch), checked against PyTorch",
                       epilog=EPILOG)
    _add_config(p, required=False)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="ONNX file (default: the checkpoint's path with .onnx)")
    p.add_argument("--check-persons", type=int, default=16,
                   help="val persons whose crops compare ONNX Runtime with PyTorch (default 16)")
    p.set_defaults(func=cmd_export)
    return parser


def _message(err: Exception) -> str:
    """The error's own words; an error re-raised from a DataLoader worker carries the worker's traceback,
    whose last line is the original ``module.Class: message``."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


def _names_config(token: str) -> bool:
    """Whether predict's first word is its CONFIG rather than an input."""
    path = Path(token)
    return path.suffix in (".yaml", ".yml") or (not path.exists() and path.name in packaged_configs())


def _take_positionals(args: argparse.Namespace, extras: list[str], parser: argparse.ArgumentParser) -> None:
    """Sort the command's words into ``config``, ``overrides`` (and predict's ``inputs``): argparse hands
    back whatever follows the options as ``extras``, so overrides are accepted anywhere."""
    kind = getattr(args, "positional_kind", None)
    words = [*getattr(args, "positionals", []), *extras]
    unknown = [w for w in words if w.startswith("-")]
    if unknown or (kind is None and words):
        parser.error(f"{args.command}: unrecognized arguments: {' '.join(unknown or words)}")
    if kind is None:
        return
    rest, args.overrides = split_overrides(words)
    if kind == "overrides":  # demo: its config is an option
        if rest:
            parser.error(f"{args.command}: not of the form section.key=value: {' '.join(rest)}")
        return
    args.config = None
    if kind == "inputs":
        if rest and _names_config(rest[0]):
            args.config = rest.pop(0)
        if not rest:
            parser.error(f"{args.command}: give at least one image, folder or video")
        args.inputs = rest
        return
    if len(rest) > 1:
        parser.error(f"{args.command}: unrecognized arguments: {' '.join(rest[1:])} (overrides are section.key=value)")
    args.config = rest[0] if rest else None
    if args.config is None and kind == "config":
        parser.error(f"{args.command}: the CONFIG argument is required")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    _take_positionals(args, extras, parser)
    np.set_printoptions(precision=3, suppress=True)
    try:
        return args.func(args)
    except OksposeError as err:
        print(f"okspose {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
