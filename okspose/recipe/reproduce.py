"""Team OKS's experiment table on the synthetic proxy, end to end (``okspose reproduce``).

naive -> + data selection -> + rescoring -> + OKS-NMS -> + external data (mined) -> + GT boxes, each row
one change on the row above it, like Team OKS's table. What it builds, in ``OUT/<size>/``:

* ``data/``: the synthetic COCO-like set with 25 % of the train persons' keypoints made wrong (Team OKS's
  false annotations; the val set stays clean), and the external set in AI Challenger's original layout;
* ``runs/naive``: a model trained on the corrupted set as it is; ``runs/selection``: the same with
  ``data.selection``; ``runs/mined``: the AIC-layout persons the selection model finds hardest
  (``mine-hard``); ``runs/joint``: a model trained on the COCO-like set (with selection) plus the mined
  persons, mixed by weight; ``runs/detector.pth``: the demo's synthetic person detector;
* ``reproduce.md`` (the table) and ``reproduce.json`` (every row's stats and the stage times).

Every row is evaluated through the same path as ``okspose test`` / ``ablation`` (posing through the
inference layer, rescoring, NMS, pycocotools) on the synthetic val set. A second run reuses the data,
the finished models, the mined set and the detector.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from okspose.checkpoints import Checkpoint
from okspose.config import Config, load_config
from okspose.data.corruption import corrupt_coco_file
from okspose.data.synthetic import generate_synthetic_coco
from okspose.data.synthetic_aic import generate_synthetic_aic
from okspose.distributed import DistInfo
from okspose.engine.train import train
from okspose.fileio import save_json, save_text, stamp_matches
from okspose.inference.boxes import BoxSource, pose_val
from okspose.inference.instances import gt_box_settings
from okspose.inference.poser import Poser
from okspose.inference.scoring import score_posed
from okspose.inference.synthetic_detector import train_synthetic_detector
from okspose.recipe.demo import DEMO_CONFIG
from okspose.recipe.mine import format_summary, run_mine_hard

CORRUPT_FRACTION = 0.25  # of the COCO-like train persons given wrong keypoints
MINE_FRACTION = 0.5  # of the AIC-layout persons kept as hard examples
JOINT_WEIGHTS = (2.0, 1.0)  # COCO-like : mined AIC share of each joint-training epoch


@dataclass(frozen=True)
class Size:
    train_images: int
    val_images: int
    aic_images: int
    overrides: tuple[str, ...]  # on top of the demo's config
    detector_steps: int
    detector_minutes: float


SIZES = {
    # Seconds: tiny pictures in, a tiny network, one epoch each; for the test suite.
    "smoke": Size(8, 4, 6, ("train.epochs=1", "train.lr_steps=[1]", "data.input_size=[64,64]",
                            "data.heatmap_size=[16,16]", "model.num_features=16", "train.batch_size=8"), 2, 0.2),
    # ~25 min of an idle 2-core CPU: the demo's network and schedule (1 stack, 64 features, 128x128, 7 epochs).
    "full": Size(600, 60, 300, (), 1000, 4.0),
}


@dataclass(frozen=True)
class Step:
    name: str
    model: str  # runs/<model>
    boxes: str  # "detector" or "gt"
    test: dict  # test settings of this row
    published: float  # Team OKS's AP (%) on COCO val for this step (their slides' experiment table)


_BOX = {"rescoring": "box", "iou_nms": True, "oks_nms": False}
_RESCORED = {**_BOX, "rescoring": "box*keypoint"}
_FULL = {**_RESCORED, "oks_nms": True}
STEPS = (
    Step("naive", "naive", "detector", _BOX, 70.3),
    Step("+ data selection", "selection", "detector", _BOX, 70.8),
    Step("+ rescoring", "selection", "detector", _RESCORED, 71.5),
    Step("+ OKS-NMS", "selection", "detector", _FULL, 71.7),
    Step("+ external data (mined)", "joint", "detector", _FULL, 73.0),
    Step("+ GT boxes", "joint", "gt", _FULL, 75.5),
)
PUBLISHED_NOTE = ("Team OKS columns: their AP and gain per step on COCO val with an 8-stack hourglass at 256x256 "
                  "(COCO 2017 keypoints challenge talk, experiment table); this table's models are small "
                  "networks trained on synthetic people, so compare the gains' signs and sizes, not the APs")


def make_data(root: Path, size: Size, seed: int = 0) -> bool:
    """The corrupted COCO-like set and the AIC-layout set, unless the same are already there; True when
    they were (re)made."""
    stamp = root / "reproduce_data.json"
    want = {"train": size.train_images, "val": size.val_images, "aic": size.aic_images, "seed": seed,
            "corrupt": CORRUPT_FRACTION}
    if stamp_matches(stamp, want):
        print(f"data already in {root}")
        return False
    if root.exists():
        shutil.rmtree(root)
    train_ann = generate_synthetic_coco(root, "train", size.train_images, seed=seed)
    generate_synthetic_coco(root, "val", size.val_images, seed=seed + 1)
    corrupt_coco_file(train_ann, CORRUPT_FRACTION, seed=seed)
    generate_synthetic_aic(root / "aic", size.aic_images, seed=seed)
    save_json(want, stamp)
    return True


def run_config(out: Path, size: Size, name: str, overrides: list[str], extra: list[str] | None = None) -> Config:
    """The demo's config at ``size`` for the model ``runs/<name>``."""
    cfg = load_config(DEMO_CONFIG, [*size.overrides, "train.progress=false", *overrides, *(extra or [])])
    cfg.data.root = str(out / "data")
    cfg.train.output_dir = str(out / "runs" / name)
    return cfg


def train_cached(cfg: Config) -> Path:
    """Train ``cfg`` (continuing a run that is there; a finished one is reused); returns its checkpoint."""
    ckpt = Path(cfg.train.output_dir) / "checkpoint.pth"
    train(cfg, resume=ckpt if ckpt.exists() else None, device="cpu")
    return ckpt


def joint_datasets(out: Path, mined: Path) -> str:
    """``data.datasets`` of the joint run: the COCO-like train set and the mined AIC-layout persons."""
    coco, aic = JOINT_WEIGHTS
    return (f"data.datasets=[{{name: coco, format: coco, root: '{out / 'data'}', "
            f"ann: annotations/person_keypoints_train.json, images: train, weight: {coco}}}, "
            f"{{name: aic_mined, format: aic, root: '{out / 'data' / 'aic'}', ann: '{mined}', images: images, "
            f"weight: {aic}}}]")


def format_table(rows: list[dict]) -> str:
    """Team OKS's layout: one step per row, its AP and gain over the row above, theirs beside it."""
    lines = ["| step | AP | gain | AP50 | AP75 | AR | Team OKS: AP | Team OKS: gain |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    previous = published = None
    for r in rows:
        s = r["stats"]
        gain = "" if previous is None else f"{100 * (s['AP'] - previous):+.1f}"
        theirs = "" if published is None else f"{r['published'] - published:+.1f}"
        lines.append(f"| {r['step']} | {100 * s['AP']:.1f} | {gain} | {100 * s['AP50']:.1f} | {100 * s['AP75']:.1f} "
                     f"| {100 * s['AR']:.1f} | {r['published']:.1f} | {theirs} |")
        previous, published = s["AP"], r["published"]
    return "\n".join(lines)


def run_reproduce(out: str | Path, size: str = "full", overrides: list[str] | None = None) -> dict:
    """Build everything the table needs in ``out/<size>`` (reusing what is there) and return the rows,
    the table and the stage times."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    sz, out, overrides = SIZES[size], (Path(out) / size).resolve(), list(overrides or [])  # joined to set roots
    times: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        times[stage] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()
        print(f"[reproduce] {stage}: {times[stage]:.0f} s", flush=True)

    if make_data(out / "data", sz) and (out / "runs").exists():
        shutil.rmtree(out / "runs")  # models of other data
    lap("data")
    cfgs = {"naive": run_config(out, sz, "naive", overrides),
            "selection": run_config(out, sz, "selection", overrides, ["data.selection=true"])}
    ckpts = {}
    for name, cfg in cfgs.items():
        ckpts[name] = train_cached(cfg)
        lap(f"train {name}")
    mined = out / "runs" / "mined" / "aic_mined.json"
    if not mined.is_file():
        summary = run_mine_hard(ckpts["selection"], out / "data" / "aic" / "keypoint_annotations.json", mined,
                                fraction=MINE_FRACTION)
        print(format_summary(summary))
    lap("mine")
    cfgs["joint"] = run_config(out, sz, "joint", overrides, ["data.selection=true", joint_datasets(out, mined)])
    ckpts["joint"] = train_cached(cfgs["joint"])
    lap("train joint")
    detector = train_synthetic_detector(out / "data", out / "runs" / "detector.pth", minutes=sz.detector_minutes,
                                        steps=sz.detector_steps, log_every=0)
    lap("detector")

    info = DistInfo()
    posers: dict[str, Poser] = {}  # one per model, for both box sources
    posed: dict[tuple[str, str], tuple] = {}
    rows = []
    for step in STEPS:
        cfg = cfgs[step.model]
        source = BoxSource("gt") if step.boxes == "gt" else BoxSource("synthetic", str(detector))
        key = (step.model, step.boxes)
        if key not in posed:
            if step.model not in posers:
                posers[step.model] = Poser.from_checkpoint(cfg, Checkpoint.read(ckpts[step.model]), info.device)
            posed[key] = pose_val(posers[step.model], cfg, source, info)[:2]
        test = dataclasses.replace(cfg.test, **step.test)
        test = gt_box_settings(test) if step.boxes == "gt" else test
        instances, ids = posed[key]
        stats = score_posed(instances, test, posers[step.model].schema, cfg.data_path("val_ann"), ids).evaluation.stats
        rows.append({"step": step.name, "model": step.model, "boxes": step.boxes, "test": step.test,
                     "stats": stats, "published": step.published})
    lap("evaluate")
    times["total"] = round(time.perf_counter() - start, 1)
    table = format_table(rows)
    text = (f"okspose reproduce --size {size}: synthetic proxy of Team OKS's table (val: {sz.val_images} synthetic "
            f"images; AP in %; gain over the row above)\n\n{table}\n\n{PUBLISHED_NOTE}\n")
    save_text(text, out / "reproduce.md")
    save_json({"size": size, "rows": rows, "seconds": times, "published_note": PUBLISHED_NOTE}, out / "reproduce.json")
    return {"rows": rows, "table": table, "text": text, "seconds": times, "out": str(out)}
