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


# --------------------------------------------------------------------------------------------------
# Small things a user trips on (issue 23 item 9)
# --------------------------------------------------------------------------------------------------

def test_version(capsys):
    from okspose import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"okspose {__version__}"


def test_every_option_of_make_synthetic_and_device_has_help_with_its_default():
    from okspose.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    options = {a.dest: a for a in commands["make-synthetic"]._actions}
    for name in ("train", "val", "seed", "width", "height", "max_people", "corrupt", "aic"):
        assert f"default {options[name].default:g}" in (options[name].help or ""), name
    for command, parser in commands.items():
        device = next((a for a in parser._actions if a.dest == "device"), None)
        assert device is None or "auto (default" in (device.help or ""), command


def test_a_predict_word_with_an_equals_sign_is_named_as_a_typo(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--checkpoint", "w.pth", "--whole-image", "--out", str(tmp_path), "a.jpg", "foo=1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "foo=1 is neither an existing file nor a config override" in err


@pytest.mark.parametrize("override, words", [
    ("data.val_images=", "data.val_images: needs a value (a str), got an empty one"),
    ("train.foo=1", "override 'train.foo=1': unknown key 'foo' in train"),
    ("trian.epochs=1", "override 'trian.epochs=1': unknown key 'trian' in the config"),
])
def test_config_mistakes_name_the_setting_and_where_it_came_from(override, words, capsys):
    assert main(["model-info", "coco_mini_tiny", override]) == 2
    err = capsys.readouterr().err
    assert words in err and "coco_mini_tiny.yaml.train" not in err and "expected str, got None" not in err


def test_a_gzipped_file_named_json_is_read(tmp_path, capsys):
    import gzip

    from conftest import COCO_MINI

    gt = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
    data = json.loads(gt.read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    packed = tmp_path / "results.json"
    packed.write_bytes(gzip.compress(json.dumps(results).encode()))
    assert main(["eval-results", "--gt", str(gt), "--results", str(packed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == 1.0


def test_a_crowdpose_file_without_its_schema_gets_the_hint(tmp_path, capsys):
    person = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 14,
              "keypoints": [10.0, 10.0, 2] * 14, "bbox": [0, 0, 20, 20]}
    gt = tmp_path / "crowdpose.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "crowdIndex": 0.1}], "annotations": [person],
                              "categories": [{"id": 1}]}))
    res = tmp_path / "res.json"
    res.write_text("[]")
    assert main(["eval-results", "--gt", str(gt), "--results", str(res)]) == 2
    assert "(for crowdpose14: eval-results --schema crowdpose14" in capsys.readouterr().err
