"""The ``okspose`` command line: argument parsing only. Each command's work lives in
``okspose.commands.<name>.run(args)``, imported after parsing, so ``--help`` and argument errors answer
without loading torch."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from okspose import __version__
from okspose.config import is_override, packaged_configs, split_overrides
from okspose.errors import OksposeError

EPILOG = ("Config values can be overridden anywhere on the command line, e.g.: train.epochs=10 model.num_stacks=2. "
          f"CONFIG is a YAML file or a packaged config: {', '.join(packaged_configs())}.")
DETECTORS = ["maskrcnn", "mobilenet", "synthetic", "yolox"]  # okspose.inference.boxes.make_detector's kinds


def _at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` (to ``high``), so a negative count is a usage error, not a
    traceback."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {f'{low} to {high}' if high else f'at least {low}'}, "
                                             f"got {value}")
        return value
    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the network runs: auto (default: CUDA when available, else the CPU), cpu or cuda")


def _add_config(p: argparse.ArgumentParser, required: bool = True) -> None:
    """CONFIG and ``key=value`` overrides; :func:`_take_positionals` sorts them out after parsing."""
    what = "YAML config, then config overrides (e.g. train.lr=1e-3)"
    if not required:
        what += "; CONFIG defaults to the settings stored in --checkpoint"
    p.add_argument("positionals", nargs="*", metavar="CONFIG [key=value ...]" if required
                   else "[CONFIG] [key=value ...]", help=what)
    p.set_defaults(positional_kind="config" if required else "optional config")


def _add_box_source(p: argparse.ArgumentParser, allow_gt: bool = False, whole_image: bool = False) -> None:
    """Where person boxes come from: ``--detections`` or ``--detector``, and ground truth (``--boxes gt``,
    the default when allowed) or, for predict, ``--whole-image``."""
    g = p.add_mutually_exclusive_group(required=not allow_gt)
    if allow_gt:
        g.add_argument("--boxes", choices=["gt"], help="pose the ground-truth person boxes (the default)")
    g.add_argument("--detections", metavar="FILE",
                   help="person boxes from a COCO results-format file (.json or .json.gz)")
    g.add_argument("--detector", choices=DETECTORS,
                   help="run a person detector: torchvision Mask R-CNN R50-FPN (Team OKS's detector), Faster "
                        "R-CNN MobileNetV3-Large FPN (lighter, for CPUs), the demo's synthetic-scenes one, or a "
                        "YOLOX ONNX export (--detector-weights FILE, e.g. ../shared/models/yolox_nano.onnx)")
    if whole_image:
        g.add_argument("--whole-image", action="store_true",
                       help="each picture is one person (box = the whole picture, score 1): for cropped pictures")
    p.add_argument("--detector-weights", metavar="PATH",
                   help="detector weights (Mask R-CNN: default torchvision's COCO weights from the torch cache; "
                        "YOLOX: its .onnx file)")


def _add_engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["auto", "torch", "onnxruntime", "onnxruntime-int8"],
                   help="what runs the pose network: auto (default: the fastest that keeps the answer here), "
                        "PyTorch, ONNX Runtime fp32 or INT8 (the onnx extra); the same as test.engine=...")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="okspose", description="Top-down multi-person 2D pose estimation on COCO keypoints (Team OKS).",
    )
    parser.add_argument("--version", action="version", version=f"okspose {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a pose network from a YAML config", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--resume", help="checkpoint.pth to continue from exactly")
    _add_device(p)
    p.set_defaults(module="train")

    p = sub.add_parser("test", help="pose the val split (GT boxes, a detections file or a detector), print COCO stats",
                       epilog=EPILOG)
    _add_config(p, required=False)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    _add_box_source(p, allow_gt=True)
    p.add_argument("--out", help="results JSON (default: OUTPUT_DIR/results_gt_boxes.json or results.json)")
    p.add_argument("--vis", metavar="DIR", help="also draw the predicted poses of the first images into DIR")
    _add_engine(p)
    _add_device(p)
    p.set_defaults(module="test")

    p = sub.add_parser("ablation", help="Team OKS's ablation tables: instance score, NMS steps, GT boxes, data "
                       "rows (markdown)", epilog=EPILOG)
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
    _add_device(p)
    p.set_defaults(module="ablation")

    p = sub.add_parser("eval-results", help="COCO keypoint AP/AR of a results file (pycocotools), or "
                       "CrowdPose's metric for a CrowdPose file")
    p.add_argument("--gt", required=True, help="COCO keypoint annotation file (.json or .json.gz)")
    p.add_argument("--results", required=True, help="COCO keypoint results file (.json or .json.gz)")
    p.add_argument("--json", action="store_true", help="print one JSON object (AP, AP50, ..., ARl)")
    p.add_argument("--schema", default="coco17", help="keypoint schema whose OKS sigmas score the results "
                   "(coco17, aic14, mpii16, crowdpose14)")
    p.add_argument("--area", choices=["file", "box"], default="file",
                   help="OKS scale of a ground-truth person: its 'area' (COCO), or box: 0.53 x its box, for files "
                   "without one. A CrowdPose file (images with 'crowdIndex') always takes the box and gets "
                   "CrowdPose's metric: AP/AR and AP of its easy, medium and hard images")
    p.set_defaults(module="eval_results")

    p = sub.add_parser("model-info", help="parameters and GFLOPs per person of a config's model", epilog=EPILOG)
    _add_config(p)
    p.set_defaults(module="model_info")

    p = sub.add_parser("make-synthetic", help="generate the synthetic COCO-format people scenes")
    p.add_argument("out", help="output folder (gets annotations/, train/, val/)")
    p.add_argument("--train", type=_at_least(0), default=400, metavar="N", help="training images (default 400)")
    p.add_argument("--val", type=_at_least(0), default=50, metavar="N", help="validation images (default 50)")
    p.add_argument("--seed", type=_at_least(0), default=0,
                   help="the scenes' seed: the same seed writes the same files (default 0)")
    p.add_argument("--width", type=_at_least(32), default=320, help="picture width in pixels (default 320)")
    p.add_argument("--height", type=_at_least(32), default=256, help="picture height in pixels (default 256)")
    p.add_argument("--max-people", type=_at_least(1, 254), default=3, metavar="N",
                   help="people per picture: 1 to N (default 3)")
    p.add_argument("--corrupt", type=_fraction, default=0.0, metavar="FRACTION",
                   help="give this fraction of train persons wrong keypoints (simulated false annotations; "
                        "default 0)")
    p.add_argument("--aic", type=_at_least(0), default=0, metavar="N",
                   help="also write N images of an external set in the AI Challenger layout to OUT/aic (default 0)")
    p.set_defaults(module="make_synthetic")

    p = sub.add_parser("demo", help="synthetic data -> train a small hourglass on CPU -> evaluate -> pictures; "
                                    "--real: real COCO persons and YOLOX-nano boxes")
    p.add_argument("--out", default="work/demo", help="working folder")
    p.add_argument("--config", default=None,
                   help="config to use instead of configs/demo_synthetic.yaml (--real: configs/demo_real.yaml)")
    p.add_argument("--no-detector", action="store_true", help="skip the detector: ground-truth boxes only")
    p.add_argument("--real", action="store_true",
                   help="train on the real coco-mini + coco128 train persons and pose their val pictures with "
                        "YOLOX-nano's boxes (from --shared; the backbone's ImageNet weights: okspose[pretrained])")
    p.add_argument("--shared", default="../shared", help="--real: the folder holding data/ and models/")
    p.add_argument("positionals", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=2")
    p.set_defaults(module="demo", positional_kind="overrides")

    p = sub.add_parser(
        "predict", help="pose people in images, folders and videos: COCO JSON and pictures",
        usage="%(prog)s [CONFIG] --checkpoint CKPT (--detections FILE | --detector {" + ",".join(DETECTORS) + "} "
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
    _add_box_source(p, whole_image=True)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="gets predictions.json (COCO annotations), results.json (COCO results) and vis/")
    p.add_argument("--no-vis", action="store_true", help="write the JSON files only, no pictures or videos")
    _add_engine(p)
    _add_device(p)
    p.set_defaults(module="predict")

    p = sub.add_parser("select-data", help="drop persons whose keypoints sit far from their box (Team OKS's "
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
    p.add_argument("--config", metavar="CONFIG",
                   help="training config whose data.input_size, data.padding and data.selection_* give the rule, "
                   "as data.selection=true applies it (default: coco_hg8_256, 256x256 input, padding 1.25)")
    p.add_argument("--aspect-ratio", type=float,
                   help="input width/height for the padded area (default: the config's; 0.75 is HRNet's 192x256)")
    p.add_argument("--padding", type=float, help="crop padding for the padded area (default: the config's)")
    p.add_argument("--literal", action="store_true", help="the slide's formula taken literally: s=1, raw box area")
    p.set_defaults(module="select_data")
    p = sub.add_parser("search", help="BlockQNN architecture search (Q-learning; sequential or on Ray)", epilog=EPILOG)
    _add_config(p)
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR (its state.json)")
    p.add_argument("--address", metavar="ADDR",
                   help="run the candidates on this Ray cluster ('auto' or HOST:PORT); implies the Ray executor")
    p.set_defaults(module="search")

    p = sub.add_parser("mine-hard", help="pose an external set's persons with a COCO model, keep the hardest by OKS "
                       "(Team OKS's AI Challenger mining): subset in the same layout, summary, histogram",
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
    _add_device(p)
    p.add_argument("positionals", nargs="*", metavar="key=value", help="config overrides, e.g. test.flip_test=true")
    p.set_defaults(module="mine_hard", positional_kind="overrides")

    p = sub.add_parser("reproduce", help="Team OKS's experiment table: naive -> + data selection -> + rescoring -> "
                       "+ OKS-NMS -> + external data (mined) -> + GT boxes, training every model (synthetic proxy, "
                       "or the real data sets with --data real)", epilog=EPILOG)
    p.add_argument("--out", default="work/reproduce",
                   help="working folder (gets SIZE/, or real/: data, runs, the table; rerun to continue)")
    p.add_argument("--data", choices=["synthetic", "real"], default="synthetic",
                   help="synthetic: the proxy on generated people (default); real: COCO + AI Challenger, every stage "
                        "cached and resumable (needs --coco-root, --aic-root, --detections)")
    g = p.add_argument_group("synthetic proxy")
    g.add_argument("--size", choices=["smoke", "full"], default="full",
                   help="full: the demo's network, 12-16 min per seed (measured on one core with native bf16; several "
                        "times that in fp32); smoke: tiny data, one epoch each (seconds)")
    g.add_argument("--seeds", type=int, metavar="N",
                   help="train every model N times (train.seed 0..N-1): AP as mean +- sd, gains with 95%% intervals "
                        "(default 3 for --size full, 1 for smoke)")
    g.add_argument("--external-ratio", nargs="+", metavar="R",
                   help="mined persons per COCO-like person kept by selection; a joint model and a table row per R "
                        "(default 0.33 1)")
    g.add_argument("--val-images", type=int, metavar="N",
                   help="synthetic val images the table is measured on (default: 60 for --size full, 4 for smoke); "
                        "a change re-evaluates the trained models, it retrains nothing")
    g = p.add_argument_group("real data (--data real)")
    g.add_argument("--config", default="coco_hg8_256", help="pose config of every model (default: HG-8, coco_hg8_256)")
    g.add_argument("--coco-root", type=Path, help="COCO 2017 folder; the config's annotation and image paths are "
                   "joined to it")
    g.add_argument("--aic-root", type=Path, help="AI Challenger keypoint train folder, original layout")
    g.add_argument("--aic-ann", default="keypoint_train_annotations_20170909.json",
                   help="annotation file in --aic-root (default: %(default)s)")
    g.add_argument("--aic-images", default="keypoint_train_images_20170902",
                   help="image folder in --aic-root (default: %(default)s)")
    g.add_argument("--detections", type=Path, help="person boxes on the COCO val images (COCO results format) for the "
                   "detector-box tables")
    g.add_argument("--mine-oks-thr", type=float, default=0.5, metavar="T",
                   help="mine the AI Challenger persons whose OKS is below T (default 0.5)")
    _add_device(g)
    p.add_argument("positionals", nargs="*", metavar="key=value", help="overrides of every model's config")
    p.set_defaults(module="reproduce", positional_kind="overrides")

    p = sub.add_parser("export", help="the folded pose network to ONNX (dynamic batch), checked against PyTorch",
                       epilog=EPILOG)
    _add_config(p, required=False)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pth or model_best.pth")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="ONNX file (default: the checkpoint's path with .onnx)")
    p.add_argument("--check-persons", type=int, default=16,
                   help="val persons whose crops compare ONNX Runtime with PyTorch (default 16)")
    p.add_argument("--int8", action="store_true",
                   help="write the INT8 graph (ONNX Runtime static quantization, first and last layers in fp32) "
                        "that test.engine=onnxruntime-int8 runs")
    p.add_argument("--calibration", type=int, metavar="N",
                   help="--int8: calibrate on the crops of the first N training persons (default "
                        "test.int8_calibration; test.int8_calibration_ann=FILE names another set)")
    p.set_defaults(module="export")
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


def _ratios(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """Parse reproduce's ``--external-ratio R ...`` as numbers and hand back the overrides that its open-ended
    list swallowed when they followed it."""
    words = getattr(args, "external_ratio", None) or []
    try:
        ratios = [float(w) for w in words if not is_override(w)]
    except ValueError:
        parser.error(f"{args.command}: --external-ratio takes numbers, got {' '.join(words)}")
    args.external_ratio = ratios or None
    return [w for w in words if is_override(w)]


def _take_positionals(args: argparse.Namespace, extras: list[str], parser: argparse.ArgumentParser) -> None:
    """Sort the command's words into ``config``, ``overrides`` (and predict's ``inputs``): argparse hands
    back whatever follows the options as ``extras``, so overrides are accepted anywhere."""
    kind = getattr(args, "positional_kind", None)
    words = [*getattr(args, "positionals", []), *extras, *_ratios(args, parser)]
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
        typo = next((w for w in rest if "=" in w and not Path(w).exists()), None)
        if typo:
            parser.error(f"{args.command}: {typo} is neither an existing file nor a config override "
                         "(overrides are section.key=value, e.g. test.flip_test=false)")
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
    try:
        return importlib.import_module(f"okspose.commands.{args.module}").run(args)
    except OksposeError as err:
        print(f"okspose {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
