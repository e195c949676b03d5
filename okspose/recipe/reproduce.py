"""Team OKS's experiment table on the synthetic proxy, end to end (``okspose reproduce``), over several seeds.

naive -> + data selection -> + rescoring -> + OKS-NMS -> + external data (mined) -> + GT boxes, each row
one change on the row it is measured from, like Team OKS's table. What it builds, in ``OUT/<size>/``:

* ``data/``: the synthetic COCO-like set with 25 % of the train persons' keypoints made wrong (Team OKS's
  false annotations; the val set stays clean), and the external set in AI Challenger's original layout;
* for each seed k (``train.seed=k``; the data, the val set and the detector stay the same):
  ``runs/seed<k>/naive``: a model trained on the corrupted set as it is; ``selection``: the same with
  ``data.selection``; for each external ratio R, ``mined_<R>``: the hardest AIC-layout persons for the
  selection model, R times as many as the COCO-like persons selection keeps, and ``joint_<R>``: a model
  trained on the COCO-like set (with selection) plus those persons (the AIC set is not filtered), 2:1 by
  weight; ``runs/detector.pth``: the demo's synthetic person detector;
* ``reproduce.md`` (the table: each row's AP as mean +- standard deviation over the training seeds, each step's
  gain as the mean paired difference with its 95 % Student-t interval), ``reproduce.json`` (every run,
  the means and intervals, the stage times) and ``reproduce.png`` (the table as a chart with error bars
  beside Team OKS's column).

Every row is evaluated through the same path as ``okspose test`` / ``ablation`` (posing through the
inference layer, rescoring, NMS, pycocotools) on the synthetic val set. Each training and mining is a
cached stage (:mod:`okspose.recipe.stages`): a second run reuses what finished and continues what did not.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from okspose.checkpoints import Checkpoint
from okspose.config import Config, DatasetConfig, load_config
from okspose.data.build import build_records, dataset_records
from okspose.data.corruption import corrupt_coco_file
from okspose.data.synthetic import generate_synthetic_coco
from okspose.data.synthetic_aic import generate_synthetic_aic
from okspose.distributed import DistInfo
from okspose.fileio import read_json, save_figure, save_json, save_text, stamp_matches
from okspose.inference.boxes import BoxSource, pose_val
from okspose.inference.instances import gt_box_settings
from okspose.inference.poser import Poser
from okspose.inference.scoring import score_posed
from okspose.inference.synthetic_detector import train_synthetic_detector
from okspose.intervals import mean_sd, paired_interval
from okspose.keypoints import COCO17
from okspose.recipe.demo import DEMO_CONFIG
from okspose.recipe.mine import side_paths
from okspose.recipe.stages import MINED, StageClock, mining_stage, run_mining, run_training, training_stage

CORRUPT_FRACTION = 0.25  # of the COCO-like train persons given wrong keypoints
EXTERNAL_RATIOS = (0.33, 1.0)  # mined persons per COCO-like person kept by selection; one joint model each
MINED_WEIGHT = 0.5  # the mined persons' weight per unit of COCO-like weight: 2:1, Team OKS's mix


@dataclass(frozen=True)
class Size:
    train_images: int
    val_images: int
    aic_images: int
    overrides: tuple[str, ...]  # on top of the demo's config
    detector_steps: int
    detector_minutes: float
    seeds: int  # models of each kind trained, unless --seeds says otherwise


SIZES = {
    # Seconds: tiny pictures in, a tiny network, one epoch each; for the test suite.
    "smoke": Size(8, 4, 12, ("train.epochs=1", "train.lr_steps=[1]", "data.input_size=[64,64]",
                            "data.heatmap_size=[16,16]", "model.num_features=16", "train.batch_size=8"), 2, 0.2, 1),
    # The demo's network and schedule (1 stack, 64 features, 128x128, 7 epochs), ~2 min per model on 2 idle
    # cores with native bf16. 600 AIC-layout images (~2,000 persons) so that even ratio 1 mines under half.
    "full": Size(600, 60, 600, (), 1000, 4.0, 3),
}


@dataclass(frozen=True)
class Step:
    name: str
    model: str  # runs/seed<k>/<model>
    boxes: str  # "detector" or "gt"
    test: dict  # test settings of this row
    published: float  # Team OKS's AP (%) on COCO val for this step (their slides' experiment table)
    over: str | None  # the row this step's gain is measured from


_BOX = {"rescoring": "box", "iou_nms": True, "oks_nms": False}
_RESCORED = {**_BOX, "rescoring": "box*keypoint"}
_FULL = {**_RESCORED, "oks_nms": True}
PUBLISHED_NOTE = ("Team OKS columns: their AP and gain per step on COCO val with an 8-stack hourglass at 256x256 "
                  "(COCO 2017 keypoints challenge talk, experiment table); this table's models are small "
                  "networks trained on synthetic people, so compare the gains' signs and sizes, not the APs")


def joint_model(ratio: float) -> str:
    return f"joint_{ratio:g}"


def table_steps(ratios: tuple[float, ...] = EXTERNAL_RATIOS) -> list[Step]:
    """Team OKS's rows, the external-data row once per ratio (each measured from + OKS-NMS), and the
    ground-truth boxes on the last ratio's joint model."""
    steps = [Step("naive", "naive", "detector", _BOX, 70.3, None),
             Step("+ data selection", "selection", "detector", _BOX, 70.8, "naive"),
             Step("+ rescoring", "selection", "detector", _RESCORED, 71.5, "+ data selection"),
             Step("+ OKS-NMS", "selection", "detector", _FULL, 71.7, "+ rescoring")]
    steps += [Step(f"+ external data (mined {r:g}x)", joint_model(r), "detector", _FULL, 73.0, "+ OKS-NMS")
              for r in ratios]
    return [*steps, Step("+ GT boxes", steps[-1].model, "gt", _FULL, 75.5, steps[-1].name)]


def make_data(root: Path, size: Size, val_images: int, seed: int = 0) -> bool:
    """The corrupted COCO-like train set and the AIC-layout set, unless the same are already there, and
    ``val_images`` val images; True when the training data were (re)made. The val set is stamped on its own:
    a bigger one re-evaluates the trained models instead of training them again (image k of a split is the
    same picture at every size)."""
    stamp, val_stamp = root / "reproduce_data.json", root / "reproduce_val.json"
    want = {"train": size.train_images, "aic": size.aic_images, "seed": seed, "corrupt": CORRUPT_FRACTION}
    made = not stamp_matches(stamp, want)
    if made:
        if root.exists():
            shutil.rmtree(root)
        train_ann = generate_synthetic_coco(root, "train", size.train_images, seed=seed)
        corrupt_coco_file(train_ann, CORRUPT_FRACTION, seed=seed)
        generate_synthetic_aic(root / "aic", size.aic_images, seed=seed)
        save_json(want, stamp)
    else:
        print(f"training data already in {root}")
    want_val = {"val": val_images, "seed": seed + 1}
    if made or not stamp_matches(val_stamp, want_val):
        shutil.rmtree(root / "val", ignore_errors=True)
        generate_synthetic_coco(root, "val", val_images, seed=seed + 1)
        save_json(want_val, val_stamp)
    return made


def run_config(out: Path, size: Size, name: str, overrides: list[str], extra: list[str] | None = None) -> Config:
    """The demo's config at ``size`` for the model ``runs/<name>``."""
    cfg = load_config(DEMO_CONFIG, [*size.overrides, "train.progress=false", *overrides, *(extra or [])])
    cfg.data.root = str(out / "data")
    cfg.train.output_dir = str(out / "runs" / name)
    return cfg


def coco_like_sets(cfg: Config) -> tuple[DatasetConfig, ...]:
    """The sets ``cfg`` trains on: its ``data.datasets``, or ``data.train_ann`` as one set named coco."""
    d = cfg.data
    return d.datasets or (DatasetConfig(name="coco", root=d.root, ann=d.train_ann, images=d.train_images),)


def joint_config(cfg: Config, mined: Path, images: Path, output_dir: Path) -> Config:
    """``cfg`` training on its COCO-like sets plus the mined persons (AI Challenger's layout, pictures in
    ``images``), 2:1 by weight, into ``output_dir``."""
    sets = coco_like_sets(cfg)
    aic = DatasetConfig(name="aic_mined", format="aic", root=str(mined.parent), ann=mined.name, images=str(images),
                        weight=MINED_WEIGHT * sum(ds.weight for ds in sets))
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, datasets=(*sets, aic)),
                               train=dataclasses.replace(cfg.train, output_dir=str(output_dir)))


def mine_fraction(ratio: float, coco_like: int, external: int) -> float:
    """The hardest fraction of ``external`` persons that is ``ratio`` x ``coco_like`` persons (at most all)."""
    return min(1.0, ratio * coco_like / external)


def train_seed(out: Path, size: Size, overrides: list[str], seed: int, ratios: tuple[float, ...],
               fractions: dict[float, float], info: DistInfo,
               lap: Callable[[str], None]) -> tuple[dict[str, Config], dict[str, Path]]:
    """Every model of one seed (cached stages): naive, selection, and per ratio the mined set and the joint
    model. Returns each model's config and best checkpoint."""
    run = f"seed{seed}"
    seed_overrides = [*overrides, f"train.seed={seed}"]
    cfgs = {"naive": run_config(out, size, f"{run}/naive", seed_overrides),
            "selection": run_config(out, size, f"{run}/selection", seed_overrides, ["data.selection=true"])}
    stages = {name: training_stage(f"{run} train {name}", cfg) for name, cfg in cfgs.items()}
    ckpts = {}
    for name, cfg in cfgs.items():
        ckpts[name] = run_training(stages[name], cfg, info)
        lap(f"{run} train {name}")
    aic = out / "data" / "aic"
    for ratio in ratios:
        mine = mining_stage(f"{run} mine {ratio:g}x", out / "runs" / run / f"mined_{ratio:g}", stages["selection"],
                            aic / "keypoint_annotations.json", aic / "images", {"fraction": fractions[ratio]})
        mined = run_mining(mine, ckpts["selection"], info)
        lap(f"{run} mine {ratio:g}x")
        model = joint_model(ratio)
        cfgs[model] = joint_config(cfgs["selection"], mined, aic / "images", out / "runs" / run / model)
        ckpts[model] = run_training(training_stage(f"{run} train {model}", cfgs[model], {"mined": mine.inputs}),
                                    cfgs[model], info)
        lap(f"{run} train {model}")
    return cfgs, ckpts


def evaluate_seed(steps: list[Step], cfgs: dict[str, Config], ckpts: dict[str, Path], detector: Path,
                  info: DistInfo) -> dict[str, dict[str, float]]:
    """Every step's COCO stats for one seed's models; each model is posed once per box source."""
    posers: dict[str, Poser] = {}
    posed: dict[tuple[str, str], tuple] = {}
    stats = {}
    for step in steps:
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
        stats[step.name] = score_posed(instances, test, posers[step.model].schema, cfg.data_path("val_ann"),
                                       ids).evaluation.stats
    return stats


def summarize(steps: list[Step], runs: list[dict[str, dict[str, float]]]) -> list[dict]:
    """Each step over the training seeds: AP (%) per seed, mean and deviation, and the gain over its ``over`` row as
    the mean paired difference with its 95 % interval (None for one seed)."""
    published = {s.name: s.published for s in steps}
    rows = []
    for step in steps:
        aps = [100 * r[step.name]["AP"] for r in runs]
        mean, sd = mean_sd(aps)
        row = {"step": step.name, "over": step.over, "model": step.model, "boxes": step.boxes, "test": step.test,
               "AP": aps, "AP_mean": mean, "AP_sd": sd,
               "stats_mean": {k: float(np.mean([r[step.name][k] for r in runs])) for k in runs[0][step.name]},
               "published": step.published, "published_gain": None, "gain": None}
        if step.over is not None:
            before = [100 * r[step.over]["AP"] for r in runs]
            interval = paired_interval(aps, before)
            row["published_gain"] = round(step.published - published[step.over], 1)
            row["gain"] = {"diffs": [a - b for a, b in zip(aps, before)], "mean": float(np.mean(aps) - np.mean(before)),
                           "low": interval.low if interval else None, "high": interval.high if interval else None,
                           "resolved": interval.resolved if interval else None}
        rows.append(row)
    return rows


def _interval_cell(gain: dict | None, seeds: int) -> str:
    if gain is None:
        return ""
    if gain["low"] is None:
        return f"n/a ({seeds} seed)"
    cell = f"[{gain['low']:+.1f}, {gain['high']:+.1f}]"
    return cell if gain["resolved"] else f"{cell} not resolved"


def format_table(rows: list[dict], seeds: int) -> str:
    """Team OKS's layout: one step per row, its AP and gain, theirs beside it; a gain measured from a row other
    than the one above names that row."""
    lines = ["| step | AP | gain | 95% interval | AP50 | AP75 | AR | Team OKS: AP | Team OKS: gain |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    previous = None
    for r in rows:
        s = r["stats_mean"]
        ap = f"{r['AP_mean']:.1f}" if seeds == 1 else f"{r['AP_mean']:.1f} ± {r['AP_sd']:.1f}"
        gain = theirs = ""
        if r["gain"] is not None:
            gain = f"{r['gain']['mean']:+.1f}" + ("" if r["over"] == previous else f" (over {r['over']})")
            theirs = f"{r['published_gain']:+.1f}"
        lines.append(f"| {r['step']} | {ap} | {gain} | {_interval_cell(r['gain'], seeds)} | {100 * s['AP50']:.1f} "
                     f"| {100 * s['AP75']:.1f} | {100 * s['AR']:.1f} | {r['published']:.1f} | {theirs} |")
        previous = r["step"]
    return "\n".join(lines)


def plot_table(rows: list[dict], seeds: int, path: Path) -> Path:
    """The table as two bar charts: each row's AP (mean, +- one standard deviation) beside Team OKS's, and
    each step's gain (mean, 95 % interval) beside theirs."""
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    ap_ax, gain_ax = fig.subplots(1, 2)
    y, h = np.arange(len(rows)), 0.38
    names = [r["step"] for r in rows]
    sd = [0.0 if seeds == 1 else r["AP_sd"] for r in rows]
    ap_ax.barh(y - h / 2, [r["AP_mean"] for r in rows], h, xerr=sd, capsize=3, color="tab:blue",
               label=f"this proxy (mean ± sd, {seeds} seed{'s' * (seeds > 1)})")
    ap_ax.barh(y + h / 2, [r["published"] for r in rows], h, color="tab:gray", label="Team OKS, COCO val")
    ap_ax.set(yticks=y, yticklabels=names, xlabel="AP (%)", title="AP per row")
    gained = [r for r in rows if r["gain"] is not None]
    g = np.arange(len(gained))
    means = np.array([r["gain"]["mean"] for r in gained])
    if seeds > 1:
        err = np.array([[m - r["gain"]["low"] for r, m in zip(gained, means)],
                        [r["gain"]["high"] - m for r, m in zip(gained, means)]])
        ok = np.array([r["gain"]["resolved"] for r in gained], bool)
        for mask, color, label in ((ok, "tab:blue", "this proxy: mean, 95% interval without 0"),
                                   (~ok, "tab:orange", "this proxy: not resolved (interval contains 0)")):
            if mask.any():
                gain_ax.barh(g[mask] - h / 2, means[mask], h, xerr=err[:, mask], capsize=3, color=color, label=label)
    else:
        gain_ax.barh(g - h / 2, means, h, color="tab:blue", label="this proxy (1 seed: no interval)")
    gain_ax.barh(g + h / 2, [r["published_gain"] for r in gained], h, color="tab:gray", label="Team OKS")
    gain_ax.axvline(0, color="k", lw=0.8)
    gain_ax.set(yticks=g, yticklabels=[f"{r['step']} (over {r['over']})" for r in gained], xlabel="gain (AP points)",
                title="gain of each step")
    for ax in (ap_ax, gain_ax):
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return save_figure(fig, path)


def run_reproduce(out: str | Path, size: str = "full", overrides: list[str] | None = None, seeds: int | None = None,
                  ratios: tuple[float, ...] = EXTERNAL_RATIOS, val_images: int | None = None) -> dict:
    """Build everything the table needs in ``out/<size>`` (reusing what is there), for ``seeds`` seeds and
    ``val_images`` val images (the size's defaults when None) and one joint model per external ratio; return
    the rows, the table and the stage times."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    sz, out, overrides = SIZES[size], (Path(out) / size).resolve(), list(overrides or [])  # joined to set roots
    seeds, val_images = seeds or sz.seeds, val_images or sz.val_images
    ratios = tuple(ratios)
    clock = StageClock(lambda line: print(f"[reproduce] {line}", flush=True))
    lap = clock.lap

    if make_data(out / "data", sz, val_images) and (out / "runs").exists():
        shutil.rmtree(out / "runs")  # models of other data
    lap("data")
    info = DistInfo()
    coco_like = len(build_records(run_config(out, sz, "selection", overrides, ["data.selection=true"]), "train"))
    aic = out / "data" / "aic"
    external = len(dataset_records(DatasetConfig(format="aic", root=str(aic), ann="keypoint_annotations.json",
                                                 images="images"), COCO17))
    fractions = {r: mine_fraction(r, coco_like, external) for r in ratios}
    detector = train_synthetic_detector(out / "data", out / "runs" / "detector.pth", minutes=sz.detector_minutes,
                                        steps=sz.detector_steps, log_every=0)
    lap("detector")
    steps = table_steps(ratios)
    runs = []
    for seed in range(seeds):
        cfgs, ckpts = train_seed(out, sz, overrides, seed, ratios, fractions, info, lap)
        runs.append(evaluate_seed(steps, cfgs, ckpts, detector, info))
        lap(f"seed{seed} evaluate")
    times = clock.finish()
    rows = summarize(steps, runs)
    table = format_table(rows, seeds)
    mined = [{"ratio": r, "fraction": fractions[r], "persons": read_json(side_paths(
        out / "runs" / "seed0" / f"mined_{r:g}" / MINED)[0], "mining summary")["mined"]} for r in ratios]
    text = (f"okspose reproduce --size {size} --seeds {seeds}: synthetic proxy of Team OKS's table (val: "
            f"{val_images} synthetic images; AP in %)\n\n{table}\n\n{notes(seeds, coco_like, external, mined)}\n\n"
            f"{PUBLISHED_NOTE}\n")
    save_text(text, out / "reproduce.md")
    save_json({"size": size, "seeds": list(range(seeds)), "val_images": val_images, "external_ratios": list(ratios),
               "coco_like_persons": coco_like, "external_persons": external, "mined": mined,
               "runs": [{"seed": k, "rows": [{"step": s.name, "model": s.model, "boxes": s.boxes, "stats": run[s.name]}
                                             for s in steps]} for k, run in enumerate(runs)],
               "rows": rows, "seconds": times, "published_note": PUBLISHED_NOTE}, out / "reproduce.json")
    plot_table(rows, seeds, out / "reproduce.png")
    return {"rows": rows, "table": table, "text": text, "seconds": times, "out": str(out)}


def notes(seeds: int, coco_like: int, external: int, mined: list[dict]) -> str:
    """What the table's numbers are: seeds, intervals, and the mined set's size per ratio."""
    if seeds == 1:
        spread = ("One seed: no standard deviation and no interval (n/a); run --seeds 3 or more to know which "
                  "gains are more than noise.")
    else:
        spread = (f"AP: mean ± standard deviation over {seeds} seeds (train.seed 0..{seeds - 1}; the same data, val "
                  f"set and detector). Gain: the mean paired difference (same seed) over the row named, or the row "
                  f"above; 95% interval: Student t with {seeds - 1} degree{'s' * (seeds > 2)} of freedom; "
                  f"\"not resolved\": it contains 0.")
    sizes = ", ".join(f"{m['ratio']:g}x: {m['persons']} persons (the hardest {m['fraction']:.0%})" for m in mined)
    return (f"{spread}\nExternal data: mined persons = R x the {coco_like} COCO-like persons selection keeps, out of "
            f"{external} AIC-layout persons; {sizes}.")
