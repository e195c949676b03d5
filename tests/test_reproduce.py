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
import os
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from okspose.cli import main
from okspose.data.aic import load_aic_records
from okspose.data.mining import hardest, label_oks
from okspose.data.records import load_person_records
from okspose.keypoints import AIC14, COCO17
from okspose.recipe.reproduce import STEPS


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("reproduce")
    cwd = Path.cwd()
    os.chdir(root)  # a relative --out, as a user types it: the joint run's set paths must still resolve
    try:
        code, text = _run(["reproduce", "--out", "work", "--size", "smoke", "train.amp=none",
                           "test.engine=torch", "test.amp=none"])
    finally:
        os.chdir(cwd)
    assert code == 0, text
    return root / "work" / "smoke", text


def test_reproduce_smoke_prints_the_table_with_every_row(smoke) -> None:
    out, text = smoke
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| step | AP | gain") and lines[0].endswith("| Team OKS: AP | Team OKS: gain |")
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == [s.name for s in STEPS]
    # Team OKS's published column: AP per step and the gain over the row above (their experiment table).
    assert [line.split(" | ")[-2:] for line in lines[1:]] == [
        ["70.3", " |"], ["70.8", "+0.5 |"], ["71.5", "+0.7 |"], ["71.7", "+0.2 |"], ["73.0", "+1.3 |"],
        ["75.5", "+2.5 |"]]
    saved = json.loads((out / "reproduce.json").read_text())
    assert [r["step"] for r in saved["rows"]] == [s.name for s in STEPS]
    assert all(0.0 <= r["stats"]["AP"] <= 1.0 for r in saved["rows"])
    assert (out / "reproduce.md").read_text().count("\n| ") == len(STEPS) + 1
    # The joint model trained on both sets, in the configured 2:1 proportions.
    row = next(csv.DictReader((out / "runs" / "joint" / "log.csv").open()))
    counts = dict(item.split(":") for item in row["per_dataset"].split())
    assert list(counts) == ["coco", "aic_mined"]
    coco, aic = int(counts["coco"]), int(counts["aic_mined"])
    assert abs(coco - 2 * (coco + aic) / 3) <= 1


def test_mined_persons_are_the_hard_ones_and_the_subset_reloads(smoke) -> None:
    out, _ = smoke
    mined_file = out / "runs" / "mined" / "aic_mined.json"
    summary = json.loads((out / "runs" / "mined" / "aic_mined_summary.json").read_text())
    assert summary["layout"] == "aic" and summary["mined"] >= 1 and summary["rest"] >= 1
    assert summary["mean_oks_mined"] < summary["mean_oks_rest"]
    assert summary["shared_joints"] == list(AIC14.joints[:12])  # head top and neck are not COCO joints
    assert (out / "runs" / "mined" / "aic_mined_oks.png").stat().st_size > 1000
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
    code, text = _run(["mine-hard", "--checkpoint", str(out / "runs" / "naive" / "model_best.pth"), "--data",
                       str(val), "--images", str(out / "data" / "val"), "--out", str(tmp_path / "hard.json.gz"),
                       "--oks-thr", "0.3"])
    assert code == 0, text
    summary = json.loads((tmp_path / "hard_summary.json").read_text())
    assert summary["layout"] == "coco" and len(summary["shared_joints"]) == 17
    kept = load_person_records(tmp_path / "hard.json.gz", out / "data" / "val", COCO17)
    assert len(kept) == summary["mined"] and f"mined {summary['mined']} (OKS < 0.3" in text


def test_mine_hard_bad_input_is_one_line(smoke, tmp_path, capsys) -> None:
    out, _ = smoke
    ckpt = str(out / "runs" / "naive" / "model_best.pth")
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
                       "train.amp=none", "train.progress=false", "train.batch_size=16"])
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
    runs = out / "runs"
    code, text = _run(["ablation", "--checkpoint", str(runs / "selection" / "model_best.pth"), "--detections",
                       str(tmp_path / "dets.json"), "--no-gt", "--row", f"naive={runs / 'naive' / 'model_best.pth'}",
                       f"data.root={out / 'data'}"])
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
