"""The COCO keypoint metric wrapper: exact scores on known inputs, and clear errors on bad ones."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import COCO_MINI, CONFIGS, SHARED_DATA

from okspose.errors import DataError
from okspose.evaluation import (
    STAT_NAMES,
    evaluate_keypoints,
    format_stats,
    load_coco,
    load_results,
)
from okspose.keypoints import AIC14, COCO17, CROWDPOSE14

DATA = SHARED_DATA
VAL_JSON = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
SAMPLES = SHARED_DATA / "samples" / "coco"

pytestmark = pytest.mark.skipif(not VAL_JSON.is_file(), reason=f"shared data not found at {DATA}")


@pytest.fixture(scope="module")
def coco_gt():
    return load_coco(VAL_JSON)


def perfect_results(coco_gt, img_ids=None) -> list[dict]:
    """GT keypoints as detections; COCOeval ignores crowd and keypoint-less GT, so those are skipped."""
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids or []))
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": list(a["keypoints"]),
         "score": 1.0}
        for a in anns if a["num_keypoints"] > 0 and not a["iscrowd"]
    ]


def test_perfect_results_score_exactly_one(coco_gt):
    stats = evaluate_keypoints(coco_gt, perfect_results(coco_gt))
    assert tuple(stats) == STAT_NAMES
    assert all(v == 1.0 for v in stats.values()), stats


def test_gt_path_and_results_file(coco_gt, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(perfect_results(coco_gt)))
    assert evaluate_keypoints(str(VAL_JSON), path)["AP"] == 1.0


def labelled_oks(gt: np.ndarray, dt: np.ndarray, area: float, sigmas) -> float:
    """COCO's OKS written out: mean over the labelled joints of exp(-d^2 / (2 area (2 sigma)^2))."""
    d2 = ((gt[:, :2] - dt[:, :2]) ** 2).sum(1)
    return float(np.exp(-d2 / (2.0 * area * (2.0 * np.asarray(sigmas)) ** 2))[gt[:, 2] > 0].mean())


def test_one_shifted_person_scores_what_its_oks_says(coco_gt):
    """Every person predicted exactly except one large person, moved by a known offset to OKS 0.725 and
    scored lower than the rest: at the OKS thresholds 0.50-0.70 it is a hit, at 0.75-0.95 a miss (its
    ground truth unmatched, its detection a false positive ranked last). With N persons the 101-point
    precision is then 1 up to recall (N - 1) / N and 0 above it."""
    results = perfect_results(coco_gt)
    anns = [a for a in coco_gt.dataset["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    assert len(anns) == len(results)
    i = next(i for i, a in enumerate(anns) if a["area"] > 2 * 96**2 and a["num_keypoints"] >= 10)
    gt, area = np.array(anns[i]["keypoints"], float).reshape(17, 3), anns[i]["area"]
    direction = np.array([0.6, 0.8])
    lo, hi = 0.0, float(np.sqrt(area))  # the offset giving OKS 0.725, by bisection (OKS falls with it)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if labelled_oks(gt, gt[:, :2] + mid * direction, area, COCO17.sigmas) > 0.725 else (lo, mid)
    moved = gt.copy()
    moved[:, :2] += lo * direction
    assert labelled_oks(gt, moved, area, COCO17.sigmas) == pytest.approx(0.725, abs=1e-9)
    results[i] = {**results[i], "keypoints": moved.ravel().tolist(), "score": 0.5}

    n_all = len(anns)
    n_large = sum(a["area"] > 96**2 for a in anns)

    def ap(n: int) -> float:  # 101-point AP at a threshold the moved person fails
        assert abs(100 * (n - 1) / n - round(100 * (n - 1) / n)) > 1e-6  # no recall point on the edge
        return (np.floor(100 * (n - 1) / n) + 1) / 101
    hit = np.linspace(0.5, 0.95, 10) <= 0.725 + 1e-12  # 5 hits, 5 misses
    assert hit.sum() == 5
    expected = {
        "AP": np.mean(np.where(hit, 1.0, ap(n_all))), "AP50": 1.0, "AP75": ap(n_all), "APm": 1.0,
        "APl": np.mean(np.where(hit, 1.0, ap(n_large))),
        "AR": np.mean(np.where(hit, 1.0, (n_all - 1) / n_all)), "AR50": 1.0, "AR75": (n_all - 1) / n_all,
        "ARm": 1.0, "ARl": np.mean(np.where(hit, 1.0, (n_large - 1) / n_large)),
    }
    stats = evaluate_keypoints(coco_gt, results)
    assert stats == pytest.approx(expected, abs=1e-12), (stats, expected)
    # The same offset with every joint's sigma doubled is a hit at more thresholds: sigmas reach the metric.
    wide = labelled_oks(gt, moved, area, 2 * np.asarray(COCO17.sigmas))
    hit = np.linspace(0.5, 0.95, 10) <= wide
    assert 5 < hit.sum() < 10, wide
    stats = evaluate_keypoints(coco_gt, results, sigmas=tuple(2 * np.asarray(COCO17.sigmas)))
    assert stats["AP"] == pytest.approx(np.mean(np.where(hit, 1.0, ap(n_all))), abs=1e-12)


def _pycocotools(gt_file: Path, results: list[dict], img_ids: list[int] | None = None) -> list[float]:
    """pycocotools itself on a file and a copy of the results (loadRes mutates them): the reference."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "keypoints")
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats.tolist()


def noisy_results(coco_gt, with_box: bool) -> list[dict]:
    """Every labelled person found with jittered joints, plus a false positive beside each (half its size,
    lower score): unmatched detections are what a detection's area sorts into the area ranges."""
    rng = np.random.default_rng(4)
    out = []
    for a in coco_gt.dataset["annotations"]:
        if a["num_keypoints"] == 0 or a["iscrowd"]:
            continue
        k = np.array(a["keypoints"], float).reshape(-1, 3)
        k[:, :2] += rng.normal(scale=3.0, size=(len(k), 2))
        k[:, 2] = rng.uniform(0.2, 1.0, len(k))
        far = k.copy()
        far[:, :2] = k[:, :2] * 0.5 + [a["bbox"][0] + a["bbox"][2], 0]
        for kp, box, score in ((k, a["bbox"], rng.uniform(0.5, 1)), (far, [v * 0.5 for v in a["bbox"]], 0.3)):
            out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                        "score": float(score), **({"bbox": list(box)} if with_box else {})})
    return out


def test_scores_equal_pycocotools_with_and_without_bbox(coco_gt):
    """pycocotools takes a detection's area from its bbox when the results carry one (issue 23 item 2)."""
    for with_box in (False, True):
        results = noisy_results(coco_gt, with_box)
        ours = list(evaluate_keypoints(VAL_JSON, results).values())
        assert np.abs(np.subtract(ours, _pycocotools(VAL_JSON, results))).max() == 0, with_box
    assert ours != list(evaluate_keypoints(VAL_JSON, noisy_results(coco_gt, False)).values())  # the box counts


def test_a_box_in_the_first_record_only_is_refused(coco_gt):
    results = noisy_results(coco_gt, True)[:4]
    del results[2]["bbox"]
    with pytest.raises(DataError, match="record 2: bbox must be 4 finite numbers"):
        evaluate_keypoints(coco_gt, results)
    results[2]["bbox"] = [0, 0, float("nan"), 1]
    with pytest.raises(DataError, match="record 2: bbox must"):
        evaluate_keypoints(coco_gt, results)


def test_ranges_without_ground_truth_give_minus_one(coco_gt, tmp_path):
    """-1 as pycocotools gives it, for empty results too (which its loadRes cannot load: 0 where the range
    has ground truth, as for any missed person)."""
    large = sorted({a["image_id"] for a in coco_gt.dataset["annotations"]} - {
        a["image_id"] for a in coco_gt.dataset["annotations"] if a["area"] <= 96**2})
    assert large
    medium = {"APm", "ARm"}
    expected = {n: -1.0 if n in medium else 0.0 for n in STAT_NAMES}
    assert evaluate_keypoints(coco_gt, [], img_ids=large) == expected
    everyone = evaluate_keypoints(coco_gt, [])
    assert everyone == dict.fromkeys(STAT_NAMES, 0.0)  # coco-mini val has persons in both ranges
    # A ground truth with no labelled person: -1 everywhere, with results or without.
    data = json.loads(VAL_JSON.read_text())
    unlabelled = dict(data, annotations=[dict(a, num_keypoints=0) for a in data["annotations"]])
    path = tmp_path / "unlabelled.json"
    path.write_text(json.dumps(unlabelled))
    results = perfect_results(coco_gt)
    assert list(evaluate_keypoints(path, results).values()) == _pycocotools(path, results) == [-1.0] * 10
    assert evaluate_keypoints(path, []) == dict.fromkeys(STAT_NAMES, -1.0)


def test_img_ids_restricts_evaluation(coco_gt):
    ids = sorted({a["image_id"] for a in perfect_results(coco_gt)})
    subset = ids[: len(ids) // 2]
    results = perfect_results(coco_gt, subset)  # nothing predicted for the other half
    assert evaluate_keypoints(coco_gt, results)["AP"] < 1.0
    assert evaluate_keypoints(coco_gt, results, img_ids=subset)["AP"] == 1.0
    assert evaluate_keypoints(coco_gt, results, img_ids=ids[len(ids) // 2:])["AP"] == 0.0


@pytest.mark.parametrize("img_ids, match", [([], "empty"), ([-5], "not in the ground truth")])
def test_bad_img_ids(coco_gt, img_ids, match):
    with pytest.raises(ValueError, match=match):
        evaluate_keypoints(coco_gt, perfect_results(coco_gt), img_ids=img_ids)


def test_quiet_unless_verbose(coco_gt, capsys):
    evaluate_keypoints(coco_gt, perfect_results(coco_gt))
    assert capsys.readouterr().out == ""
    evaluate_keypoints(coco_gt, perfect_results(coco_gt), verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_load_results_copies_and_keeps_what_pycocotools_reads(coco_gt):
    results = perfect_results(coco_gt)[:3]
    for r in results:
        r["note"] = "x"
    before = copy.deepcopy(results)
    assert all(set(r) == {"image_id", "category_id", "keypoints", "score"} for r in load_results(results, coco_gt))
    for r in results:
        r["bbox"] = [0, 0, 10, 10]
    before = copy.deepcopy(results)
    clean = load_results(results, coco_gt)
    assert results == before  # pycocotools' loadRes mutates its input; ours must not leak that
    assert all(set(r) == {"image_id", "category_id", "keypoints", "score", "bbox"} for r in clean)
    assert evaluate_keypoints(coco_gt, results, img_ids=[r["image_id"] for r in results])["AP"] > 0


def _corrupt(coco_gt, change) -> list[dict]:
    results = perfect_results(coco_gt)[:4]
    change(results[2])
    return results


MALFORMED = {
    "missing image_id": (lambda r: r.pop("image_id"), "record 2: missing 'image_id'"),
    "missing category_id": (lambda r: r.pop("category_id"), "record 2: missing 'category_id'"),
    "missing keypoints": (lambda r: r.pop("keypoints"), "record 2: missing 'keypoints'"),
    "missing score": (lambda r: r.pop("score"), "record 2: missing 'score'"),
    "short keypoints": (lambda r: r.update(keypoints=r["keypoints"][:-1]), "record 2: keypoints must"),
    "nested keypoints": (lambda r: r.update(keypoints=[r["keypoints"]]), "record 2: keypoints must"),
    "string keypoints": (lambda r: r.update(keypoints=["1"] * 51), "record 2: keypoints must"),
    "null keypoint": (lambda r: r["keypoints"].__setitem__(4, None), "record 2: keypoints must"),
    "nan keypoint": (lambda r: r["keypoints"].__setitem__(4, float("nan")), "record 2: .*NaN"),
    "inf keypoint": (lambda r: r["keypoints"].__setitem__(0, float("inf")), "record 2: .*infinite"),
    "nan score": (lambda r: r.update(score=float("nan")), "record 2: score"),
    "string score": (lambda r: r.update(score="0.9"), "record 2: score"),
    "unknown image": (lambda r: r.update(image_id=123456789), "record 2: image_id 123456789 is not"),
    "string image_id": (lambda r: r.update(image_id=str(r["image_id"])), "record 2: image_id must"),
    "unknown category": (lambda r: r.update(category_id=2), "record 2: category_id 2"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_results_name_the_problem(coco_gt, case):
    change, match = MALFORMED[case]
    with pytest.raises(DataError, match=match):
        evaluate_keypoints(coco_gt, _corrupt(coco_gt, change))


def test_malformed_record_not_a_dict(coco_gt):
    with pytest.raises(DataError, match="record 1: expected an object"):
        load_results([perfect_results(coco_gt)[0], [1, 2, 3]], coco_gt)


def test_malformed_results_file_names_the_file(coco_gt, tmp_path):
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match=f"{re.escape(str(path))}.*must be a list"):
        evaluate_keypoints(coco_gt, path)
    path.write_text("[{")
    with pytest.raises(DataError, match=f"{re.escape(str(path))}.*not valid JSON"):
        evaluate_keypoints(coco_gt, path)
    path.write_text(json.dumps(_corrupt(coco_gt, lambda r: r.pop("score"))))
    with pytest.raises(DataError, match=re.escape(f"{path}: record 2: missing 'score'")):
        evaluate_keypoints(coco_gt, path)
    with pytest.raises(DataError, match="nope.json"):
        evaluate_keypoints(coco_gt, tmp_path / "nope.json")


@pytest.mark.skipif(not (SAMPLES / "test_coco.json").is_file(), reason="sample data not found")
def test_box_detections_are_not_keypoint_results():
    """Real person detections (boxes, no keypoints) must be refused with a message, not a traceback."""
    gt = load_coco(SAMPLES / "test_coco.json")
    assert evaluate_keypoints(gt, perfect_results(gt))["AP"] == 1.0
    det_file = SAMPLES / "test_coco_det_AP_H_56.json"
    with pytest.raises(DataError, match=re.escape(f"{det_file}: record 0: missing 'keypoints'")):
        evaluate_keypoints(gt, det_file)


def test_missing_gt_file(tmp_path):
    with pytest.raises(DataError, match="missing_gt.json"):
        load_coco(tmp_path / "missing_gt.json")
    with pytest.raises(DataError, match="missing_gt.json"):
        evaluate_keypoints(tmp_path / "missing_gt.json", [])


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[]", "JSON object"),
    (json.dumps({"images": [], "categories": []}), "'annotations'"),
    (json.dumps({"images": [{"file_name": "a.jpg"}], "annotations": [], "categories": []}),
     r"images\[0\] has no integer 'id'"),
    (json.dumps({"images": [{"id": 1}], "categories": [{"id": 1}],
                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}),
     r"annotations\[0\] lacks 'keypoints'"),
])
def test_malformed_gt_file(tmp_path, content, match):
    path = tmp_path / "gt.json"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        load_coco(path)
    assert str(path) in str(err.value)


def test_format_stats_lists_all_names():
    stats = dict(zip(STAT_NAMES, np.linspace(0.1, 1.0, len(STAT_NAMES)), strict=True))
    stats["APm"] = -1.0
    table = format_stats(stats)
    lines = table.splitlines()
    assert len(lines) == 3
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(STAT_NAMES)
    values = [c.strip() for c in lines[2].strip("|").split("|")]
    assert values[0] == "0.100" and values[-1] == "1.000" and values[3] == "n/a"


# --------------------------------------------------------------------------------------------------
# Other schemas: the schema's sigmas score the results
# --------------------------------------------------------------------------------------------------

def fourteen_joint_gt(tmp_path, rng) -> tuple[Path, list[dict]]:
    """A small COCO-format file of 14-joint people (every joint labelled; the last one alone in image 4)."""
    anns = []
    for i, image_id in enumerate((1, 1, 2, 2, 3, 4)):
        x, y = rng.uniform(0, 400, 2)
        xy = np.array([x, y]) + rng.uniform(0, [80, 160], (14, 2))
        kp = np.concatenate([xy, np.full((14, 1), 2.0)], 1)
        anns.append({"id": i + 1, "image_id": image_id, "category_id": 1, "keypoints": kp.ravel().tolist(),
                     "num_keypoints": 14, "area": float(rng.uniform(3e3, 1e4)), "iscrowd": 0,
                     "bbox": [float(x), float(y), 80.0, 160.0]})
    gt = {"images": [{"id": i, "width": 640, "height": 480} for i in (1, 2, 3, 4)], "annotations": anns,
          "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "gt14.json"
    path.write_text(json.dumps(gt))
    return path, anns


def independent_oks(gt: np.ndarray, dt: np.ndarray, area: float, sigmas: tuple[float, ...]) -> float:
    """COCO's OKS for one labelled person, written out: mean over joints of exp(-d^2 / (2 area (2 sigma)^2))."""
    d2 = ((gt[:, :2] - dt[:, :2]) ** 2).sum(1)
    return float(np.mean(np.exp(-d2 / (2.0 * area * (2.0 * np.asarray(sigmas)) ** 2))))


def test_fourteen_joint_schema_scores_with_its_own_sigmas(tmp_path):
    rng = np.random.default_rng(0)
    path, anns = fourteen_joint_gt(tmp_path, rng)
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in anns]
    for schema in (CROWDPOSE14, AIC14):
        assert evaluate_keypoints(path, perfect, sigmas=schema.sigmas)["AP"] == 1.0
    # one person, one prediction off by a few pixels: AP is the share of OKS thresholds 0.50:0.95 it passes
    one = anns[-1]
    gt = np.array(one["keypoints"]).reshape(14, 3)
    dt = gt.copy()
    dt[:, :2] += rng.normal(0, 2.0, (14, 2))
    result = [{"image_id": one["image_id"], "category_id": 1, "keypoints": dt.ravel().tolist(), "score": 0.9}]
    aps = {}
    for schema in (CROWDPOSE14, AIC14):
        oks = independent_oks(gt, dt, one["area"], schema.sigmas)
        expected = np.mean([oks >= t for t in np.linspace(0.5, 0.95, 10)])
        aps[schema.name] = evaluate_keypoints(path, result, img_ids=[one["image_id"]], sigmas=schema.sigmas)["AP"]
        assert aps[schema.name] == pytest.approx(expected, abs=1e-12), (schema.name, oks)
    assert aps["crowdpose14"] > aps["aic14"]  # AIC's falloffs are 3-7x tighter


def test_keypoint_count_must_match_the_schema(tmp_path, coco_gt):
    path, anns = fourteen_joint_gt(tmp_path, np.random.default_rng(1))
    with pytest.raises(DataError, match=r"annotations\[0\]\): keypoints must be a list of 51 numbers"):
        evaluate_keypoints(path, [])  # 14-joint people scored with COCO-17's sigmas
    with pytest.raises(DataError, match="record 2: keypoints must be a flat list of 42 numbers"):
        evaluate_keypoints(path, [
            {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"] + [0.0] * 9 * (i == 2),
             "score": 1.0} for i, a in enumerate(anns)], sigmas=CROWDPOSE14.sigmas)
    with pytest.raises(DataError, match="42 numbers"):
        evaluate_keypoints(coco_gt, perfect_results(coco_gt), sigmas=AIC14.sigmas)  # 17-joint GT, 14 sigmas


def test_eval_results_command_takes_the_schema(tmp_path, capsys):
    from okspose.cli import main

    path, anns = fourteen_joint_gt(tmp_path, np.random.default_rng(2))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                                "score": 1.0} for a in anns]))
    assert main(["eval-results", "--gt", str(path), "--results", str(res), "--schema", "crowdpose14", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == 1.0
    assert main(["eval-results", "--gt", str(path), "--results", str(res), "--schema", "coco18"]) == 2
    assert "unknown keypoint schema 'coco18'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# File formats: .json.gz reads as .json does, as everywhere else in okspose
# --------------------------------------------------------------------------------------------------

def test_gzipped_gt_and_results_score_as_plain_json(coco_gt, tmp_path, capsys):
    from okspose.cli import main
    from okspose.fileio import write_coco

    rng = np.random.default_rng(3)
    results = perfect_results(coco_gt)
    for r in results:
        k = np.array(r["keypoints"], dtype=float).reshape(-1, 3)
        k[:, :2] += rng.normal(scale=4.0, size=(len(k), 2))
        r["keypoints"], r["score"] = k.ravel().tolist(), float(rng.uniform(0.1, 1.0))
    stats = {}
    for suffix in (".json", ".json.gz"):
        gt, res = tmp_path / f"gt{suffix}", tmp_path / f"res{suffix}"
        write_coco(coco_gt.dataset, gt)
        write_coco(results, res)
        assert main(["eval-results", "--gt", str(gt), "--results", str(res), "--json"]) == 0, capsys.readouterr().err
        stats[suffix] = json.loads(capsys.readouterr().out)
    assert stats[".json.gz"] == stats[".json"] and 0.3 < stats[".json"]["AP"] < 0.99


# --------------------------------------------------------------------------------------------------
# Ground truth that would give a wrong number: one line naming the file, the annotation and the field
# --------------------------------------------------------------------------------------------------

def _labelled(data: dict) -> dict:
    return next(a for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"])


BAD_GT = {  # a change to the first labelled person, and the field the message must name
    "nan area": (lambda a, d: a.update(area=float("nan")), "area must be a finite number"),
    "inf area": (lambda a, d: a.update(area=float("inf")), "area must be a finite number"),
    "string area": (lambda a, d: a.update(area="1000"), "area must be a finite number"),
    "negative area": (lambda a, d: a.update(area=-5.0), "area must be a finite number above 0"),
    "zero area": (lambda a, d: a.update(area=0), "area must be a finite number above 0"),
    "nan keypoint": (lambda a, d: a["keypoints"].__setitem__(next(
        3 * j for j in range(17) if a["keypoints"][3 * j + 2] > 0), float("nan")), "keypoints must be finite"),
    "string keypoints": (lambda a, d: a.update(keypoints=[str(v) for v in a["keypoints"]]), "keypoints must be finite"),
    "null iscrowd": (lambda a, d: a.update(iscrowd=None), "iscrowd must be 0 or 1"),
    "unlisted image": (lambda a, d: a.update(image_id=1), "image_id 1 is not among the images"),
    "string image_id": (lambda a, d: a.update(image_id=str(a["image_id"])), "image_id must be an integer"),
    "unknown category": (lambda a, d: a.update(category_id=7), "category_id 7 is not among the categories"),
    "duplicate id": (lambda a, d: a.update(id=d["annotations"][-1]["id"]), "is used by another annotation"),
    "joint count": (lambda a, d: a.update(keypoints=a["keypoints"][:-3]), "keypoints must be a list of 51"),
}


@pytest.mark.parametrize("case", list(BAD_GT))
def test_ground_truth_that_would_give_a_wrong_metric_is_refused(tmp_path, case):
    """Each of these gave a wrong AP (NaN areas: AP 1.000 for a network of AP 0), a traceback or a person
    dropped silently (issue 23 item 1)."""
    data = json.loads(VAL_JSON.read_text())
    ann = _labelled(data)
    change, words = BAD_GT[case]
    change(ann, data)
    ann_id = ann["id"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=re.escape(words)) as err:
        evaluate_keypoints(path, [])
    assert str(err.value).startswith(f"{path}: annotation {ann_id!r}") and "\n" not in str(err.value)


def test_an_ignored_person_with_unusable_values_is_a_counted_skip(tmp_path):
    """COCO's metric ignores a person without labelled joints, so its NaN area is dropped and counted, and
    the metric is pycocotools' on the file without it."""
    from okspose.data.records import SkipReport

    data = json.loads(VAL_JSON.read_text())
    ignored = next(a for a in data["annotations"] if a["num_keypoints"] == 0)
    ignored["area"] = float("nan")
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    report = SkipReport()
    results = noisy_results(load_coco(VAL_JSON), False)
    stats = evaluate_keypoints(path, results, report=report)
    assert report.total == 1 and f"annotation {ignored['id']}" in report.summary()
    without = tmp_path / "without.json"
    without.write_text(json.dumps(dict(data, annotations=[a for a in data["annotations"] if a is not ignored])))
    assert list(stats.values()) == _pycocotools(without, results)


def test_nan_areas_stop_eval_results_and_test_with_one_line(tmp_path, capsys, monkeypatch):
    """The demonstration of issue 23: every area NaN; both commands exit 2 with one line, test before posing."""
    from okspose.cli import main
    from okspose.config import load_config
    from okspose.fileio import save_checkpoint
    from okspose.models.build import build_model

    data = json.loads(VAL_JSON.read_text())
    for a in data["annotations"]:
        a["area"] = float("nan")
    gt = tmp_path / "nan.json"
    gt.write_text(json.dumps(data))
    res = tmp_path / "res.json"
    res.write_text(json.dumps(perfect_results(load_coco(VAL_JSON))))
    assert main(["eval-results", "--gt", str(gt), "--results", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(gt) in err and "area must be a finite number" in err
    config = CONFIGS / "coco_mini_tiny.yaml"
    ckpt = save_checkpoint({"model": build_model(load_config(config, ["model.num_features=16"])).state_dict()},
                           tmp_path / "w.pth")
    out = tmp_path / "out.json"
    monkeypatch.setattr("okspose.inference.scoring.pose_val", lambda *a, **k: pytest.fail("posed before the check"))
    assert main(["test", str(config), f"data.root={COCO_MINI}", f"data.val_ann={gt}", "model.num_features=16",
                 "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("okspose test: error:") and "area must be a finite number" in err
    assert not out.exists()


def test_train_checks_the_val_ground_truth_before_the_first_epoch(tmp_path, capsys, monkeypatch):
    """Training's validation scores through the same check, made before any training step."""
    from okspose.cli import main

    data = json.loads(VAL_JSON.read_text())
    _labelled(data)["area"] = float("nan")
    gt = tmp_path / "nan.json"
    gt.write_text(json.dumps(data))
    monkeypatch.setattr("okspose.engine.train.train_one_epoch", lambda *a, **k: pytest.fail("trained first"))
    assert main(["train", str(CONFIGS / "coco_mini_tiny.yaml"), f"data.root={COCO_MINI}", f"data.val_ann={gt}",
                 "train.eval_every=1", f"train.output_dir={tmp_path / 'run'}"]) == 2
    assert "area must be a finite number" in capsys.readouterr().err
