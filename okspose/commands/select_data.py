"""``okspose select-data``: apply the data-selection rule to a COCO file; write the kept persons, a
report (kept/dropped by number of labeled keypoints) and a picture of the (ks, n) distribution."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from okspose.config import load_config
from okspose.data.records import read_annotation_file, read_image
from okspose.data.selection import CocoSelection, SelectionRule, line_threshold, select_coco
from okspose.errors import DataError
from okspose.fileio import save_figure, save_json, write_coco
from okspose.keypoints import SCHEMAS, KeypointSchema
from okspose.visualize import draw_poses

MAX_EXAMPLES = 6
DEFAULT_CONFIG = "coco_hg8_256"  # the default training config: its geometry unless --config names another


def selection_report(sel: CocoSelection, rule: SelectionRule, source: str) -> dict:
    num_joints = sel.keypoints.shape[1]
    return {
        "source": source, "rule": rule.to_dict(), "persons": len(sel.keep), "kept": int(sel.keep.sum()),
        "dropped": int((~sel.keep).sum()), "not_judged": sel.not_judged, "by_n": sel.by_n(num_joints),
    }


def _schema_for(num_joints: int) -> KeypointSchema | None:
    return next((s for s in SCHEMAS.values() if s.num_joints == num_joints), None)


def _examples(data: dict, sel: CocoSelection, image_dir: Path, rule: SelectionRule) -> list[tuple]:
    """Up to MAX_EXAMPLES dropped persons whose images exist, the most clearly wrong first:
    (RGB picture with the pose and box drawn, box, ks, n, annotation id, c_box, c_kps)."""
    schema = _schema_for(sel.keypoints.shape[1])
    if schema is None:
        return []
    files = {img["id"]: img["file_name"] for img in data["images"]}
    dropped = np.flatnonzero(~sel.keep)
    margin = line_threshold(sel.n[dropped], rule) - sel.ks[dropped]
    out = []
    for p in dropped[np.argsort(-margin, kind="stable")]:
        ann = data["annotations"][sel.index[p]]
        path = image_dir / files[ann["image_id"]]
        if not path.is_file():
            continue
        kp = sel.keypoints[p].copy()
        kp[:, 2] = kp[:, 2] > 0
        bgr = cv2.cvtColor(read_image(str(path)), cv2.COLOR_RGB2BGR)
        drawn = draw_poses(bgr, kp[None], schema, boxes=sel.boxes[p][None], kpt_thr=0.5)
        labeled = kp[kp[:, 2] > 0, :2]
        box = sel.boxes[p]
        out.append((cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB), box, sel.ks[p], sel.n[p], ann.get("id"),
                    box[:2] + np.maximum(box[2:] - 1, 0) / 2, labeled.mean(0)))
        if len(out) == MAX_EXAMPLES:
            break
    return out


def plot_selection(sel: CocoSelection, rule: SelectionRule, path: str | Path, examples: list[tuple]) -> Path:
    """2D histogram of (ks, n) with the selection line, as on Team OKS's slide, and dropped examples."""
    num_joints = sel.keypoints.shape[1]
    cols = 3 if examples else 0
    fig = Figure(figsize=(7 + 3.2 * (cols > 0) * 2, 6), layout="constrained")
    grid = fig.add_gridspec(2, 1 + cols, width_ratios=[2.2] + [1] * cols)
    ax = fig.add_subplot(grid[:, 0])
    if len(sel.ks):
        _, _, _, mesh = ax.hist2d(sel.ks, sel.n, bins=[np.linspace(0, 1, 51), np.arange(0.5, num_joints + 1)],
                                  norm=LogNorm(), cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="persons")
    n_line = np.array([1.0, num_joints])
    ax.plot(line_threshold(n_line, rule), n_line, "r-", lw=2, label="selection line (drop left of it)")
    ax.set(xlim=(0, 1), ylim=(0.5, num_joints + 0.5), xlabel="ks (keypoint-box similarity)",
           ylabel="n (labeled keypoints)")
    dropped = int((~sel.keep).sum())
    ax.set_title(f"{len(sel.keep):,} persons: dropped {dropped:,} ({100 * dropped / max(len(sel.keep), 1):.2f} %)\n"
                 f"s={rule.s:g}, area={rule.area}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    for k, (image, box, ks, n, ann_id, c_box, c_kps) in enumerate(examples):
        ex = fig.add_subplot(grid[k // cols, 1 + k % cols])
        ex.imshow(image)
        ex.plot(*c_box, "w+", ms=10, mew=2)
        ex.plot(*c_kps, "rx", ms=10, mew=2)
        x, y, w, h = box
        pad, (ih, iw) = 0.6 * max(w, h), image.shape[:2]
        ex.set(xlim=(max(x - pad, 0), min(x + w + pad, iw)), ylim=(min(y + h + pad, ih), max(y - pad, 0)),
               xticks=[], yticks=[])
        ex.set_title(f"ann {ann_id}: ks {ks:.2f}, n {n}", fontsize=8)
    return save_figure(fig, path, dpi=110)


def run_select_data(gt: str | Path, out: str | Path, rule: SelectionRule, plot: str | Path | None = None,
                    report: str | Path | None = None, images: str | Path | None = None) -> dict:
    """Filter ``gt`` into ``out``; returns the report (also written to ``report`` when given)."""
    if images is not None and not Path(images).is_dir():
        raise DataError(f"images folder not found: {images}")
    data = read_annotation_file(gt)
    filtered, sel = select_coco(data, rule, str(gt))
    write_coco(filtered, out)
    summary = selection_report(sel, rule, str(gt))
    if report is not None:
        save_json(summary, report)
    if plot is not None:
        examples = _examples(data, sel, Path(images), rule) if images is not None else []
        plot_selection(sel, rule, plot, examples)
        summary["examples"] = len(examples)
    return summary


def command_rule(args: argparse.Namespace) -> tuple[SelectionRule, str]:
    """The rule ``data.selection=true`` applies with ``--config`` (default: the default training config),
    then ``--literal``, then the explicit options; and a line saying where its geometry came from."""
    name = args.config or DEFAULT_CONFIG
    data = load_config(name).data
    rule = SelectionRule.from_config(data)
    if args.literal:
        literal = SelectionRule.literal()
        rule = replace(rule, s=literal.s, area=literal.area)
    explicit = {"s": args.s, "area": args.area, "line": tuple(args.line) if args.line else None,
                "aspect_ratio": args.aspect_ratio, "padding": args.padding}
    rule = replace(rule, **{k: v for k, v in explicit.items() if v is not None})
    w, h = data.input_size
    aspect_from = name if args.aspect_ratio is None else "--aspect-ratio"
    padding_from = name if args.padding is None else "--padding"
    aspect = (f"{w}x{h} input (aspect {rule.aspect_ratio:.2f})" if args.aspect_ratio is None
              else f"aspect {rule.aspect_ratio:.2f}")
    padding = f"padding {rule.padding:g}"
    if aspect_from == padding_from:
        return rule, f"geometry: {aspect}, {padding} from {name}"
    return rule, f"geometry: {aspect} from {aspect_from}, {padding} from {padding_from}"


def run(args: argparse.Namespace) -> int:
    rule, geometry = command_rule(args)
    print(geometry)
    r = run_select_data(args.gt, args.out, rule, plot=args.plot, report=args.report, images=args.images)
    print(f"judged {r['persons']} persons: kept {r['kept']}, dropped {r['dropped']} "
          f"({100 * r['dropped'] / max(r['persons'], 1):.2f} %); {r['not_judged']} other annotations passed through")
    print(f"wrote {args.out}" + "".join(f", {p}" for p in (args.report, args.plot) if p))
    return 0
