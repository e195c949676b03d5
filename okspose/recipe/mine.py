"""``okspose mine-hard``: pose an external set's persons in their labeled boxes with a COCO-trained model
(flip test as the checkpoint's ``test`` settings say), score each against its label over the shared
joints (OKS), keep the hardest, and write them in the layout the set came in, with a summary and a
histogram of OKS showing the cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from okspose.config import load_config
from okspose.data.mining import external_set_from_config, hardest, read_external_set, shared_joint_oks, subset_in_layout
from okspose.data.records import PersonRecords, SkipReport
from okspose.data.remap import joint_map
from okspose.distributed import DistInfo, barrier, gather_lists, shard
from okspose.errors import OksposeError
from okspose.fileio import save_figure, save_json, write_coco
from okspose.inference.poser import Poser
from okspose.keypoints import BOX_AREA_SCALE
from okspose.run_config import command_config


def side_paths(out: str | Path) -> tuple[Path, Path]:
    """``mined.json(.gz)`` -> (``mined_summary.json``, ``mined_oks.png``)."""
    out = Path(out)
    stem = out.name.removesuffix(".gz").removesuffix(".json")
    return out.with_name(f"{stem}_summary.json"), out.with_name(f"{stem}_oks.png")


def _is_annotation_file(data: str | Path) -> bool:
    return str(data).endswith((".json", ".json.gz"))


def plot_oks(oks: np.ndarray, mined: np.ndarray, cut: float, title: str, path: str | Path) -> Path:
    """Histogram of the judged persons' OKS, the mined ones in their own colour, the cut as a line."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    judged = ~np.isnan(oks)
    ax.hist([oks[mined], oks[judged & ~mined]], bins=bins, stacked=True, color=["tab:red", "tab:blue"],
            label=[f"mined ({int(mined.sum())})", f"rest ({int((judged & ~mined).sum())})"])
    ax.axvline(cut, color="k", ls="--", lw=1.5, label=f"cut {cut:.3f}")
    ax.set(xlabel="OKS of the COCO model's pose against the label (shared joints)", ylabel="persons", xlim=(0, 1))
    ax.set_title(title, fontsize=10)
    ax.legend()
    return save_figure(fig, path, dpi=110)


def pose_sharded(poser: Poser, records: PersonRecords, info: DistInfo,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:meth:`Poser.keypoints_of` over ``records``, each rank posing the persons of its share of the images;
    every rank gets all the keypoints."""
    mine = np.flatnonzero(np.isin(records.image_ids, shard(np.unique(records.image_ids).tolist(), info)))
    keypoints, done, unreadable = poser.keypoints_of(records.subset(mine), progress and info.is_main)
    if not info.distributed:
        return keypoints, done, unreadable
    every_kp = np.zeros((len(records), *keypoints.shape[1:]), keypoints.dtype)
    every_done, every_unreadable = np.zeros(len(records), bool), []
    for index, kp, ok, bad in gather_lists([(mine, keypoints, done, unreadable)], info):
        every_kp[index], every_done[index] = kp, ok
        every_unreadable += bad
    return every_kp, every_done, every_unreadable


def run_mine_hard(checkpoint: str | Path, data: str | Path, out: str | Path, oks_thr: float | None = None,
                  fraction: float | None = None, images: str | Path | None = None, dataset: str = "",
                  overrides: list[str] | None = None, info: DistInfo | None = None,
                  progress: bool = False) -> dict:
    """Mine ``data`` (an annotation file, or a config whose ``data.datasets`` lists the set) with the model
    of ``checkpoint``; writes ``out`` (same layout as read), its summary and histogram; returns the summary.
    Under ``torchrun`` (``info``) every process poses its share and the first one writes the files."""
    if (oks_thr is None) == (fraction is None):
        raise OksposeError("give one of --oks-thr T and --fraction F")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise OksposeError(f"--fraction must be in (0, 1], got {fraction}")
    cfg, ckpt = command_config(None, overrides, checkpoint)
    if _is_annotation_file(data):
        ann, image_dir, schema = Path(data), Path(images) if images else Path(data).parent / "images", ""
    else:
        ann, image_dir, schema = external_set_from_config(load_config(data, overrides), dataset)
        image_dir = Path(images) if images else image_dir
    if not image_dir.is_dir():
        raise OksposeError(f"images folder not found: {image_dir} (give --images DIR)")
    report = SkipReport()
    ext = read_external_set(ann, image_dir, schema, cfg.data.on_error, report)
    if not len(ext.records):
        raise OksposeError(f"{ann}: no labeled persons to mine")
    info = info or DistInfo()
    poser = Poser.from_checkpoint(cfg, ckpt, info.device)
    model_schema = poser.schema
    keypoints, done, unreadable = pose_sharded(poser, ext.records, info, progress)
    oks = shared_joint_oks(keypoints, model_schema, ext.records.keypoints, ext.schema, ext.areas)
    oks[~done] = np.nan
    mined = hardest(oks, oks_thr, fraction)
    judged = ~np.isnan(oks)
    if not judged.any():
        raise OksposeError(f"{ann}: no person has a labeled joint that the model's schema "
                           f"{model_schema.name} shares, or every picture failed to read")
    rest = judged & ~mined
    cut = oks_thr if oks_thr is not None else float(oks[mined].max())
    src, _ = joint_map(ext.schema, model_schema)
    summary = {
        "source": str(ann), "layout": ext.layout, "schema": ext.schema.name, "checkpoint": str(checkpoint),
        "shared_joints": [ext.schema.joints[i] for i in src], "flip_test": cfg.test.flip_test,
        "rule": {"oks_thr": oks_thr} if oks_thr is not None else {"fraction": fraction}, "cut": cut,
        "persons": len(oks), "judged": int(judged.sum()), "mined": int(mined.sum()), "rest": int(rest.sum()),
        "oks_scale": {"box_only": int(ext.from_box.sum()), "area": int((~ext.from_box).sum()),
                      "box_scale": BOX_AREA_SCALE},
        "mean_oks_all": float(oks[judged].mean()),
        "mean_oks_mined": float(oks[mined].mean()) if mined.any() else None,
        "mean_oks_rest": float(oks[rest].mean()) if rest.any() else None,
        "unreadable_images": unreadable, "skipped_records": report.summary() if report.total else None,
        "out": str(out),
    }
    summary_path, plot_path = side_paths(out)
    if info.is_main:
        write_coco(subset_in_layout(ext, ext.records.ann_ids[mined]), out)
        save_json(summary, summary_path)
        plot_oks(oks, mined, cut, f"{ann.name}: {summary['mined']} of {summary['judged']} persons mined", plot_path)
    barrier(info)
    return {**summary, "summary": str(summary_path), "plot": str(plot_path)}


def format_summary(s: dict) -> str:
    """The summary as a few printed lines."""
    def mean(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    scale = s["oks_scale"]
    rule = f"OKS < {s['rule']['oks_thr']:g}" if "oks_thr" in s["rule"] else f"lowest {s['rule']['fraction']:.0%}"
    lines = [f"{s['source']} ({s['layout']} layout, {s['schema']}): {s['judged']} of {s['persons']} persons judged "
             f"over {len(s['shared_joints'])} shared joints",
             f"mined {s['mined']} ({rule}, cut {s['cut']:.3f}): mean OKS {mean(s['mean_oks_mined'])} vs the rest's "
             f"{mean(s['mean_oks_rest'])} ({s['rest']} persons); all {s['mean_oks_all']:.3f}",
             f"OKS scale: {scale['box_scale']:g} x box (no segmentation area) for {scale['box_only']} persons, the "
             f"file's 'area' for {scale['area']}"]
    if s["unreadable_images"]:
        lines.append(f"unreadable pictures (not judged): {len(s['unreadable_images'])}")
    lines.append(f"wrote {s['out']}, {s['summary']}, {s['plot']}")
    return "\n".join(lines)
