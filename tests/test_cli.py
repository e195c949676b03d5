"""The command line front door: help, model-info, eval-results --json, make-synthetic."""

from __future__ import annotations

import json
import re

import pytest
from conftest import CONFIGS, REPO

from okspose.cli import main
from okspose.evaluation import STAT_NAMES


def test_help_lists_every_command(capsys):
    """Every module of okspose/commands is a command that --help lists on a row of its own, with its help
    text beside it, and no listed command lacks a module."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    modules = {p.stem.replace("_", "-") for p in (REPO / "okspose" / "commands").glob("*.py") if p.stem != "__init__"}
    rows = dict(re.findall(r"^    ([a-z][a-z-]*) +(\S.*)$", out, flags=re.MULTILINE))
    assert set(rows) == modules, sorted(set(rows) ^ modules)


def test_model_info_of_the_seed(capsys):
    assert main(["model-info", str(CONFIGS / "coco_hg8_256.yaml")]) == 0
    out = capsys.readouterr().out
    assert "8 stack(s)" in out and "parameters: 25.41 M" in out and "27.46 GMACs" in out


def test_eval_results_json(coco_mini, tmp_path, capsys):
    gt = coco_mini / "annotations/person_keypoints_val2017.json"
    anns = json.loads(gt.read_text())["annotations"]
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in anns if a["num_keypoints"] > 0 and not a["iscrowd"]]
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(results))
    assert main(["eval-results", "--gt", str(gt), "--results", str(res_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert list(stats) == list(STAT_NAMES) and stats["AP"] == 1.0


def test_eval_results_bad_file_is_a_clear_error(coco_mini, tmp_path, capsys):
    bad = tmp_path / "res.json"
    bad.write_text('[{"image_id": 1}]')
    gt = coco_mini / "annotations/person_keypoints_val2017.json"
    assert main(["eval-results", "--gt", str(gt), "--results", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "record 0" in err and "Traceback" not in err


def test_make_synthetic(tmp_path, capsys):
    assert main(["make-synthetic", str(tmp_path), "--train", "3", "--val", "2"]) == 0
    train = json.loads((tmp_path / "annotations/person_keypoints_train.json").read_text())
    assert len(train["images"]) == 3 and len(list((tmp_path / "val").glob("*.jpg"))) == 2
