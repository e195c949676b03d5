"""Team OKS's data steps end to end on synthetic data: ``okspose reproduce --size smoke`` (every model of
the table, trained for one epoch), hard-example mining on the AIC-layout set with the model it trained on
the COCO-like set, a joint ``okspose train`` run logging samples per data set, and the ablation's data rows.

One smoke run (module fixture) provides the data, the models and the mined set to the other tests.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from okspose.cli import main
from okspose.data.aic import load_aic_records
from okspose.data.mining import hardest, label_oks
from okspose.data.records import load_person_records
from okspose.data.selection import SelectionRule, select_records
from okspose.keypoints import AIC14, COCO17
from okspose.recipe.reproduce import format_table, summarize, table_steps


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


SEEDS = 2
RATIOS = (0.33, 1.0)
T975_1 = 12.706204736174698  # Student t, 97.5 % quantile, 1 degree of freedom (2 seeds)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("reproduce")
    cwd = Path.cwd()
    os.chdir(root)  # a relative --out, as a user types it: the joint run's set paths must still resolve
    try:
        code, text = _run(["reproduce", "--out", "work", "--size", "smoke", "--seeds", str(SEEDS), "train.amp=none",
                           "test.engine=torch", "test.amp=none"])
    finally:
        os.chdir(cwd)
    assert code == 0, text
    return root / "work" / "smoke", text


def _table(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]


def test_reproduce_smoke_prints_the_table_with_every_row(smoke) -> None:
    out, text = smoke
    lines = _table(text)
    assert lines[0] == ["step", "AP", "gain", "95% interval", "AP50", "AP75", "AR", "Team OKS: AP", "Team OKS: gain"]
    steps = table_steps(RATIOS)
    assert [line[0] for line in lines[1:]] == [s.name for s in steps] == [
        "naive", "+ data selection", "+ rescoring", "+ OKS-NMS", "+ external data (mined 0.33x)",
        "+ external data (mined 1x)", "+ GT boxes"]
    # Team OKS's published column: AP per step and the gain over the row it is measured from.
    assert [line[-2:] for line in lines[1:]] == [
        ["70.3", ""], ["70.8", "+0.5"], ["71.5", "+0.7"], ["71.7", "+0.2"], ["73.0", "+1.3"], ["73.0", "+1.3"],
        ["75.5", "+2.5"]]
    assert lines[6][2].endswith("(over + OKS-NMS)") and "(over" not in lines[5][2]  # 1x is measured from OKS-NMS
    assert (out / "reproduce.md").read_text().count("\n| ") == len(steps) + 1
    assert (out / "reproduce.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reproduce_writes_every_seed_the_means_and_the_intervals(smoke) -> None:
    """reproduce.json against a computation here: per-seed AP, mean, standard deviation, the paired gain and
    its 95 % interval (t quantile of 1 degree of freedom), and the table's cells from them."""
    out, text = smoke
    saved = json.loads((out / "reproduce.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["external_ratios"] == list(RATIOS)
    per_seed = {(run["seed"], row["step"]): 100 * row["stats"]["AP"] for run in saved["runs"] for row in run["rows"]}
    cells = {line[0]: line for line in _table(text)[1:]}
    for row in saved["rows"]:
        aps = [per_seed[(k, row["step"])] for k in range(SEEDS)]
        assert row["AP"] == pytest.approx(aps)
        assert row["AP_mean"] == pytest.approx(statistics.fmean(aps))
        assert row["AP_sd"] == pytest.approx(statistics.stdev(aps))
        assert cells[row["step"]][1] == f"{statistics.fmean(aps):.1f} ± {statistics.stdev(aps):.1f}"
        if row["over"] is None:
            continue
        diffs = [a - per_seed[(k, row["over"])] for k, a in enumerate(aps)]
        half = T975_1 * statistics.stdev(diffs) / math.sqrt(SEEDS)
        gain = row["gain"]
        assert gain["diffs"] == pytest.approx(diffs) and gain["mean"] == pytest.approx(statistics.fmean(diffs))
        assert (gain["low"], gain["high"]) == pytest.approx((statistics.fmean(diffs) - half,
                                                             statistics.fmean(diffs) + half))
        assert gain["resolved"] == (not gain["low"] <= 0 <= gain["high"])
        assert cells[row["step"]][3].endswith("not resolved") == (not gain["resolved"])
    # The seeds train different models (train.seed), not one model twice.
    weights = [torch.load(out / "runs" / f"seed{k}" / "naive" / "model_best.pth")["model"] for k in range(SEEDS)]
    assert any(not torch.equal(w, weights[1][name]) for name, w in weights[0].items())


def test_one_seed_gives_no_interval_and_says_so(smoke) -> None:
    out, _ = smoke
    saved = json.loads((out / "reproduce.json").read_text())
    first = [{row["step"]: row["stats"] for row in saved["runs"][0]["rows"]}]
    table = format_table(summarize(table_steps(RATIOS), first), seeds=1)
    rows = _table(table)[1:]
    assert rows[0][3] == "" and all(r[3] == "n/a (1 seed)" for r in rows[1:])
    assert all("±" not in r[1] for r in rows)


def test_summary_of_three_seeds_by_hand() -> None:
    """Known APs of 3 seeds: means, deviations, paired gains and their intervals (t_{0.975, 2} = 4.3027), a
    resolved and an unresolved step, and the table's cells."""
    steps = table_steps((1.0,))
    aps = {"naive": [40.0, 42.0, 41.0], "+ data selection": [41.0, 42.5, 42.5], "+ rescoring": [44.0, 45.5, 45.0],
           "+ OKS-NMS": [43.0, 46.0, 44.5], "+ external data (mined 1x)": [50.0, 52.0, 51.5],
           "+ GT boxes": [52.0, 53.0, 54.0]}
    runs = [{name: {"AP": v[k] / 100, "AP50": 0.5, "AP75": 0.25, "AR": 0.75} for name, v in aps.items()}
            for k in range(3)]
    rows = {r["step"]: r for r in summarize(steps, runs)}
    cells = {line[0]: line for line in _table(format_table(list(rows.values()), seeds=3))[1:]}
    for step in steps:
        row = rows[step.name]
        assert row["AP_mean"] == pytest.approx(statistics.fmean(aps[step.name]))
        assert row["AP_sd"] == pytest.approx(statistics.stdev(aps[step.name]))
        if step.over is None:
            continue
        diffs = [a - b for a, b in zip(aps[step.name], aps[step.over])]
        mean, half = statistics.fmean(diffs), 4.302652729911275 * statistics.stdev(diffs) / math.sqrt(3)
        assert (row["gain"]["mean"], row["gain"]["low"], row["gain"]["high"]) == pytest.approx(
            (mean, mean - half, mean + half))
        interval = f"[{mean - half:+.1f}, {mean + half:+.1f}]"
        assert cells[step.name][3] == (interval if abs(mean) > half else f"{interval} not resolved")
    assert rows["+ rescoring"]["gain"]["resolved"] and not rows["+ OKS-NMS"]["gain"]["resolved"]
    assert cells["+ data selection"][1:3] == ["42.0 ± 0.9", "+1.0"]


def test_more_val_images_re_evaluate_without_retraining(smoke) -> None:
    """--val-images 6 re-measures the same models (no training or mining starts) on a val set whose first
    images are the 4 the table was measured on; back at the default, every stat comes back the same."""
    out, _ = smoke
    work, val_ann = out.parent, out / "data" / "annotations" / "person_keypoints_val.json"
    before = json.loads((out / "reproduce.json").read_text())
    small = json.loads(val_ann.read_text())
    first = {p.name: p.read_bytes() for p in (out / "data" / "val").iterdir()}
    args = ["reproduce", "--out", str(work), "--size", "smoke", "--seeds", str(SEEDS), "train.amp=none",
            "test.engine=torch", "test.amp=none"]
    code, text = _run([*args, "--val-images", "6"])
    assert code == 0, text
    stages = [line for line in text.splitlines() if ": done before, reused" in line]
    assert len(stages) == SEEDS * (2 + 2 * len(RATIOS))  # naive, selection, and per ratio mining + joint model
    assert "starting" not in text and "continuing" not in text
    bigger = json.loads(val_ann.read_text())
    assert len(bigger["images"]) == 6 and bigger["images"][:4] == small["images"]
    assert all((out / "data" / "val" / name).read_bytes() == data for name, data in first.items())
    assert json.loads((out / "reproduce.json").read_text())["val_images"] == 6
    assert "val: 6 synthetic images" in text
    code, text = _run(args)
    assert code == 0, text
    assert json.loads((out / "reproduce.json").read_text())["runs"] == before["runs"]


def test_the_external_set_is_a_ratio_of_the_selected_coco_like_set(smoke) -> None:
    """The mined persons are R x the COCO-like persons selection keeps (the hardest fraction of the AIC-layout
    set); the joint model trains on both 2:1 and data selection filters only the COCO-like set."""
    out, _ = smoke
    data = out / "data"
    everyone = load_person_records(data / "annotations" / "person_keypoints_train.json", data / "train", COCO17)
    kept = select_records(everyone, SelectionRule(aspect_ratio=1.0))  # the smoke size's 64x64 input
    saved = json.loads((out / "reproduce.json").read_text())
    assert saved["coco_like_persons"] == len(kept) < len(everyone)
    for mined in saved["mined"]:
        folder = out / "runs" / "seed0" / f"mined_{mined['ratio']:g}"
        summary = json.loads((folder / "aic_mined_summary.json").read_text())
        assert mined["fraction"] == pytest.approx(min(1.0, mined["ratio"] * len(kept) / saved["external_persons"]))
        assert summary["mined"] == mined["persons"] == math.ceil(mined["fraction"] * summary["judged"])
        if mined["fraction"] < 1:
            assert abs(mined["persons"] - mined["ratio"] * len(kept)) <= 1
    assert saved["mined"][0]["persons"] < saved["mined"][1]["persons"] < saved["external_persons"]
    for ratio in RATIOS:
        row = next(csv.DictReader((out / "runs" / "seed1" / f"joint_{ratio:g}" / "log.csv").open()))
        counts = {k: int(v) for k, v in (item.split(":") for item in row["per_dataset"].split())}
        assert list(counts) == ["coco", "aic_mined"]
        assert abs(counts["coco"] - 2 * sum(counts.values()) / 3) <= 1
        assert row["selection_dropped"] == f"coco:{len(everyone) - len(kept)} aic_mined:0"


def test_mined_persons_are_the_hard_ones_and_the_subset_reloads(smoke) -> None:
    out, _ = smoke
    mined_file = out / "runs" / "seed0" / "mined_0.33" / "aic_mined.json"
    summary = json.loads((out / "runs" / "seed0" / "mined_0.33" / "aic_mined_summary.json").read_text())
    assert summary["layout"] == "aic" and summary["mined"] >= 1 and summary["rest"] >= 1
    assert summary["oks_scale"]["box_only"] == summary["persons"]  # AIC has no segmentation: 0.53 x box
    assert summary["mean_oks_mined"] < summary["mean_oks_rest"]
    assert summary["shared_joints"] == list(AIC14.joints[:12])  # head top and neck are not COCO joints
    assert (out / "runs" / "seed0" / "mined_0.33" / "aic_mined_oks.png").stat().st_size > 1000
    images = out / "data" / "aic" / "images"
    everyone = load_aic_records(out / "data" / "aic" / "keypoint_annotations.json", images)
    mined = load_aic_records(mined_file, images)  # the AIC reader takes the written subset
    assert len(mined) == summary["mined"]
    originals = {(p, tuple(b)): k.tobytes() for p, b, k in zip(everyone.image_paths, everyone.boxes.tolist(),
                                                                 everyone.keypoints)}
    for path, box, kp in zip(mined.image_paths, mined.boxes.tolist(), mined.keypoints):
        assert originals[(path, tuple(box))] == kp.tobytes()


def test_mine_hard_keeps_a_coco_file_in_coco_layout(smoke, tmp_path) -> None:
    out, _ = smoke
    val = out / "data" / "annotations" / "person_keypoints_val.json"
    code, text = _run(["mine-hard", "--checkpoint", str(out / "runs" / "seed0" / "naive" / "model_best.pth"), "--data",
                       str(val), "--images", str(out / "data" / "val"), "--out", str(tmp_path / "hard.json.gz"),
                       "--oks-thr", "0.3", "test.engine=torch", "test.amp=none"])
    assert code == 0, text
    summary = json.loads((tmp_path / "hard_summary.json").read_text())
    assert summary["layout"] == "coco" and len(summary["shared_joints"]) == 17
    kept = load_person_records(tmp_path / "hard.json.gz", out / "data" / "val", COCO17)
    assert len(kept) == summary["mined"] and f"mined {summary['mined']} (OKS < 0.3" in text
    # the synthetic people have segmentation areas: the file's, not the box-only scale
    assert summary["oks_scale"] == {"box_only": 0, "area": summary["persons"], "box_scale": 0.53}
    assert f"the file's 'area' for {summary['persons']}" in text


def test_mine_hard_bad_input_is_one_line(smoke, tmp_path, capsys) -> None:
    out, _ = smoke
    ckpt = str(out / "runs" / "seed0" / "naive" / "model_best.pth")
    bad = tmp_path / "bad.json"
    bad.write_text('{"something": 1}')
    for data in (str(tmp_path / "missing.json"), str(bad)):
        assert main(["mine-hard", "--checkpoint", ckpt, "--data", data, "--images", str(tmp_path), "--out",
                     str(tmp_path / "x.json"), "--fraction", "0.5"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("okspose mine-hard: error:") and "\n" not in err and data in err


def test_joint_training_logs_samples_per_data_set(smoke, tmp_path) -> None:
    out, _ = smoke
    data = out / "data"
    sets = (f"data.datasets=[{{name: coco, root: '{data}', ann: annotations/person_keypoints_train.json, "
            f"images: train, weight: 3}}, {{name: aic, format: aic, root: '{data / 'aic'}', "
            "ann: keypoint_annotations.json, images: images, weight: 1}]")
    code, text = _run(["train", "demo_synthetic", sets, f"train.output_dir={tmp_path / 'run'}", "train.epochs=1",
                       "data.input_size=[64,64]", "data.heatmap_size=[16,16]", "model.num_features=16",
                       "train.amp=none", "train.progress=false", "train.batch_size=16", "test.engine=torch",
                       "test.amp=none"])
    assert code == 0, text
    row = next(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    counts = {k: int(v) for k, v in (item.split(":") for item in row["per_dataset"].split())}
    total = counts["coco"] + counts["aic"]
    n_coco = len(load_person_records(data / "annotations" / "person_keypoints_train.json", data / "train", COCO17))
    n_aic = len(load_aic_records(data / "aic" / "keypoint_annotations.json", data / "aic" / "images"))
    assert total == n_coco + n_aic  # an epoch is as long as both sets together
    assert abs(counts["coco"] - 0.75 * total) <= 0.5 and list(counts) == ["coco", "aic"]
    assert f"per_dataset coco:{counts['coco']} aic:{counts['aic']}" in text  # the epoch line shows it too


def test_ablation_data_rows(smoke, tmp_path) -> None:
    out, _ = smoke
    val = json.loads((out / "data" / "annotations" / "person_keypoints_val.json").read_text())
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in val["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    runs = out / "runs" / "seed0"
    code, text = _run(["ablation", "--checkpoint", str(runs / "selection" / "model_best.pth"), "--detections",
                       str(tmp_path / "dets.json"), "--no-gt", "--row", f"naive={runs / 'naive' / 'model_best.pth'}",
                       f"data.root={out / 'data'}", "test.engine=torch", "test.amp=none"])
    assert code == 0, text
    data_table = text.split("**Data**")[1]
    assert [line.split(" | ")[0][2:] for line in data_table.splitlines() if line.startswith("| ")][1:] == [
        "naive", "this checkpoint"]
    assert main(["ablation", "--checkpoint", str(runs / "selection" / "model_best.pth"), "--detections",
                 str(tmp_path / "dets.json"), "--row", "naive"]) == 2


def test_label_oks_is_pycocotools_oks() -> None:
    rng = np.random.default_rng(0)
    labels = np.concatenate([rng.uniform(50, 150, (3, 17, 2)), rng.integers(0, 3, (3, 17, 1))], axis=2)
    pred = labels.copy()
    pred[..., :2] += rng.normal(0, 4, (3, 17, 2))
    areas = np.array([900.0, 2500.0, 6000.0])
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1} for i in range(3)], "categories": [{"id": 1}], "annotations": [
        {"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": labels[i].ravel().tolist(), "area": areas[i],
         "bbox": [0, 0, 10, 10], "iscrowd": 0, "num_keypoints": int((labels[i, :, 2] > 0).sum())} for i in range(3)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": i + 1, "category_id": 1, "keypoints": pred[i].ravel().tolist(), "score": 1.0}
                         for i in range(3)])
    ev = COCOeval(gt, dt, "keypoints")
    ev._prepare()  # computeOks reads the per-image ground truth and detections it indexes
    expected = [float(ev.computeOks(i + 1, 1)[0, 0]) for i in range(3)]
    np.testing.assert_allclose(label_oks(pred, labels, areas, np.array(COCO17.sigmas)), expected, rtol=1e-12)
    labels[1, :, 2] = 0
    assert np.isnan(label_oks(pred, labels, areas, np.array(COCO17.sigmas))[1])


def test_hardest_by_threshold_and_fraction() -> None:
    oks = np.array([0.9, 0.2, np.nan, 0.5, 0.1, 0.5])
    assert hardest(oks, oks_thr=0.5).tolist() == [False, True, False, False, True, False]
    assert hardest(oks, fraction=0.5).tolist() == [False, True, False, True, True, False]  # ceil(0.5 * 5) = 3
    assert hardest(oks, fraction=1.0).tolist() == [True, True, False, True, True, True]
    with pytest.raises(ValueError):
        hardest(oks)


# Each row of the table written out: (model, boxes, rescoring, IoU-NMS, OKS-NMS). Ground-truth boxes get no
# IoU-NMS (overlapping people are real).
ROW_SETTINGS = [
    ("naive", "detector", "box", True, False),
    ("selection", "detector", "box", True, False),
    ("selection", "detector", "box*keypoint", True, False),
    ("selection", "detector", "box*keypoint", True, True),
    ("joint_0.33", "detector", "box*keypoint", True, True),
    ("joint_1", "detector", "box*keypoint", True, True),
    ("joint_1", "gt", "box*keypoint", False, True),
]


def test_each_row_is_its_model_boxes_and_settings(smoke, monkeypatch) -> None:
    """One seed's rows scored again with score_posed recorded: each row poses its own model on its own boxes
    (posed again here), scores with its own settings, and its stats are pycocotools' on the results it kept,
    equal to what reproduce.json saved for that seed."""
    import okspose.recipe.reproduce as reproduce
    from okspose.checkpoints import Checkpoint
    from okspose.config import load_config
    from okspose.distributed import DistInfo
    from okspose.evaluation import evaluate_keypoints
    from okspose.inference.poser import Poser

    out, _ = smoke
    calls = []
    real = reproduce.score_posed

    def recording(posed, test, schema, gt, img_ids):
        scored = real(posed, test, schema, gt, img_ids)
        calls.append({"posed": posed, "test": test, "gt": gt, "img_ids": img_ids, "scored": scored})
        return scored

    monkeypatch.setattr(reproduce, "score_posed", recording)
    models = {m for m, *_ in ROW_SETTINGS}
    runs = out / "runs" / "seed0"
    cfgs = {m: load_config(runs / m / "config.yaml") for m in models}
    stats = reproduce.evaluate_seed(table_steps(RATIOS), cfgs, {m: runs / m / "checkpoint.pth" for m in models},
                                    out / "runs" / "detector.pth", DistInfo())
    saved = json.loads((out / "reproduce.json").read_text())["runs"][0]["rows"]
    assert len(calls) == len(saved) == len(ROW_SETTINGS)
    val_ann = out / "data" / "annotations" / "person_keypoints_val.json"
    all_images = sorted(img["id"] for img in json.loads(val_ann.read_text())["images"])
    gt_boxes = load_person_records(val_ann, out / "data" / "val", COCO17).boxes
    for call, row, step, (model, boxes, rescoring, iou, oks) in zip(calls, saved, table_steps(RATIOS), ROW_SETTINGS,
                                                                    strict=True):
        test, posed = call["test"], call["posed"]
        assert (step.model, step.boxes) == (model, boxes), step.name
        assert (test.rescoring, test.iou_nms, test.oks_nms) == (rescoring, iou, oks), step.name
        assert Path(call["gt"]) == val_ann and call["img_ids"] == all_images
        assert stats[step.name] == row["stats"] == evaluate_keypoints(val_ann, call["scored"].results,
                                                                       img_ids=all_images)
        if boxes == "gt":
            np.testing.assert_array_equal(posed.records.boxes, gt_boxes)
        else:
            np.testing.assert_array_equal(posed.records.boxes, calls[0]["posed"].records.boxes)  # one detector
        poser = Poser.from_checkpoint(cfgs[model], Checkpoint.read(runs / model / "checkpoint.pth"),
                                      torch.device("cpu"))
        np.testing.assert_allclose(poser.pose(posed.records).keypoints, posed.keypoints, rtol=0, atol=1e-9)
    # Rows on one model and the same boxes differ only in scoring: box score, x keypoint score, then OKS-NMS.
    selection = calls[1]["posed"]
    for scored, rescored in ((calls[1]["scored"], False), (calls[2]["scored"], True)):
        for i, score in zip(scored.index, scored.scores):
            joints = selection.keypoints[i, :, 2]
            kpt = joints[joints > 0.2].mean() if (joints > 0.2).any() else 0.0
            assert score == pytest.approx(selection.records.scores[i] * (kpt if rescored else 1.0), rel=1e-12)
    assert set(calls[3]["scored"].index) <= set(calls[2]["scored"].index)
