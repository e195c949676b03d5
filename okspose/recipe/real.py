"""Team OKS's recipe on the real data sets by one command (``okspose reproduce --data real``).

Stages, each cached and resumable (:mod:`okspose.recipe.stages`), in ``OUT/real/``:

1. ``runs/naive``: the pose config (HG-8 ``coco_hg8_256`` by default) trained on COCO as it is;
2. ``runs/selection``: the same with data selection (``data.selection=true``);
3. ``runs/mined``: the AI Challenger persons the selection model gets wrong (OKS below a cut over the
   shared joints, ``okspose mine-hard``), in AI Challenger's original layout;
4. ``runs/joint``: the selection model's config trained on COCO (selection on) plus the mined persons
   (not filtered), 2:1 by weight;
5. ``tables/ablation.md``: Team OKS's tables on COCO val with the detections file's boxes (instance score,
   NMS) and ground-truth boxes, and the data rows naive / + data selection / the joint model.

Stopped anywhere (even by SIGKILL), a second run with the same inputs reuses the finished stages and
continues the one it was in, a training from its last checkpoint. Under ``torchrun`` every process trains
(DDP), mines its share of the AIC pictures and poses its share of the val images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from okspose.checkpoints import Checkpoint
from okspose.config import Config, load_config
from okspose.distributed import DistInfo, cleanup, init_distributed
from okspose.errors import OksposeError
from okspose.fileio import save_json, save_text
from okspose.inference.ablation import run_ablation_tables
from okspose.inference.boxes import BoxSource
from okspose.recipe.reproduce import joint_config
from okspose.recipe.stages import (
    Stage,
    StageClock,
    file_identity,
    mining_stage,
    run_mining,
    run_stage,
    run_training,
    say,
    training_stage,
)

REAL_CONFIG = "coco_hg8_256"  # Team OKS's network: 8-stack hourglass, 256x256
TABLE = "ablation.md"


@dataclass(frozen=True)
class RealData:
    """Where the real data sets are: COCO 2017 (the config's annotation and image paths are joined to
    ``coco_root``), AI Challenger's keypoint train set in its original layout, and person detections on
    the COCO val images (COCO results format)."""

    coco_root: Path
    aic_root: Path
    detections: Path
    aic_ann: str = "keypoint_train_annotations_20170909.json"
    aic_images: str = "keypoint_train_images_20170902"

    def check(self) -> None:
        """Stop with one line when a path is missing, before anything is trained."""
        for what, path, ok in (("--coco-root", self.coco_root, self.coco_root.is_dir()),
                               ("AI Challenger annotations (--aic-root/--aic-ann)", self.aic_root / self.aic_ann,
                                (self.aic_root / self.aic_ann).is_file()),
                               ("AI Challenger images (--aic-root/--aic-images)", self.aic_root / self.aic_images,
                                (self.aic_root / self.aic_images).is_dir()),
                               ("--detections", self.detections, self.detections.is_file())):
            if not ok:
                raise OksposeError(f"{what}: not found: {path}")


def real_config(config: str | Path, data: RealData, overrides: list[str], out: Path, name: str,
                extra: list[str]) -> Config:
    """The pose config of the model ``runs/<name>`` on COCO at ``data.coco_root``; ``extra`` (the stage's own
    settings) wins over the user's overrides."""
    cfg = load_config(config, [*overrides, *extra])
    cfg.data.root = str(data.coco_root)
    cfg.train.output_dir = str(out / "runs" / name)
    foreign = [ds.name for ds in cfg.data.datasets if ds.format != "coco"]
    if foreign:
        raise OksposeError(f"{config}: data.datasets lists non-COCO sets {foreign}; the recipe trains on COCO-format "
                           "sets and adds the mined AI Challenger persons itself")
    return cfg


def run_real(out: str | Path, data: RealData, config: str | Path = REAL_CONFIG, overrides: list[str] | None = None,
             mine_oks_thr: float = 0.5, device: str = "auto") -> dict | None:
    """Every stage in ``out/real`` (reusing and continuing what is there); the first process returns the
    tables and the stage times, the others None."""
    data = RealData(data.coco_root.resolve(), data.aic_root.resolve(), data.detections.resolve(), data.aic_ann,
                    data.aic_images)
    data.check()
    info = init_distributed(device)
    try:
        return _run_real((Path(out) / "real").resolve(), data, config, list(overrides or []), mine_oks_thr, info)
    finally:
        cleanup(info)


def _run_real(out: Path, data: RealData, config: str | Path, overrides: list[str], mine_oks_thr: float,
              info: DistInfo) -> dict | None:
    clock = StageClock(say if info.is_main else lambda _: None)
    lap = clock.lap

    cfgs = {"naive": real_config(config, data, overrides, out, "naive", ["data.selection=false"]),
            "selection": real_config(config, data, overrides, out, "selection", ["data.selection=true"])}
    stages = {name: training_stage(f"train {name}", cfg) for name, cfg in cfgs.items()}
    ckpts = {}
    for name, cfg in cfgs.items():
        ckpts[name] = run_training(stages[name], cfg, info)
        lap(f"train {name}")
    images = data.aic_root / data.aic_images
    mine = mining_stage("mine AI Challenger", out / "runs" / "mined", stages["selection"], data.aic_root / data.aic_ann,
                        images, {"oks_thr": mine_oks_thr})
    mined = run_mining(mine, ckpts["selection"], info)
    lap("mine")
    cfgs["joint"] = joint_config(cfgs["selection"], mined, images, out / "runs" / "joint")
    stages["joint"] = training_stage("train joint", cfgs["joint"], {"mined": mine.inputs})
    ckpts["joint"] = run_training(stages["joint"], cfgs["joint"], info)
    lap("train joint")
    table = out / "tables" / TABLE
    tables = Stage("tables", table.parent, {"models": {k: s.inputs for k, s in stages.items()},
                                            "detections": file_identity(data.detections)}, (table,))

    def make_tables() -> None:
        rows = [("naive", Checkpoint.read(ckpts["naive"])), ("+ data selection", Checkpoint.read(ckpts["selection"]))]
        text = run_ablation_tables(cfgs["joint"], Checkpoint.read(ckpts["joint"]), BoxSource("detections",
                                   str(data.detections)), info, progress=False, rows=rows)
        if info.is_main:
            save_text(text, table)

    run_stage(tables, make_tables, info)
    lap("tables")
    times = clock.finish()
    if not info.is_main:
        return None
    text = (f"okspose reproduce --data real: Team OKS's stages with {config} on {data.coco_root}, AI Challenger "
            f"{data.aic_root / data.aic_ann} (mined: OKS < {mine_oks_thr:g}), detections {data.detections}. "
            f"Data table: naive, + data selection, and 'this checkpoint' = + external data (the joint model).\n\n"
            f"{table.read_text()}")
    save_text(text, out / "reproduce.md")
    save_json({"config": str(config), "overrides": overrides, "data": {k: str(v) for k, v in vars(data).items()},
               "mine_oks_thr": mine_oks_thr, "checkpoints": {k: str(v) for k, v in ckpts.items()},
               "mined": str(mined), "seconds": times}, out / "reproduce.json")
    return {"text": text, "seconds": times, "out": str(out)}
