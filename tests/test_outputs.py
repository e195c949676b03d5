"""Outputs are checked before any work (issue 23 item 4): a path that cannot be written is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONFIGS

from okspose.cli import main
from okspose.config import load_config
from okspose.errors import OksposeError
from okspose.fileio import check_writable, save_checkpoint, save_json_or_keep
from okspose.models.build import build_model

CONFIG = CONFIGS / "coco_mini_tiny.yaml"


def test_writable_paths_pass(tmp_path):
    assert check_writable(tmp_path / "new/sub/results.json", "results file") == tmp_path / "new/sub/results.json"
    (tmp_path / "old.json").write_text("{}")
    check_writable(tmp_path / "old.json", "results file")
    check_writable(tmp_path, "output folder")
    check_writable(tmp_path / "new/out", "output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # the probe leaves nothing behind


@pytest.mark.parametrize("target, kind, words", [
    ("file.txt", "output folder", "is an existing file"),
    ("folder", "results file", "is an existing folder"),
    ("file.txt/results.json", "results file", "file.txt is a file, not a folder"),
    ("file.txt/deeper/out", "output folder", "file.txt is a file, not a folder"),
])
def test_a_path_that_cannot_be_written_is_one_line(tmp_path, target, kind, words):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OksposeError, match=words) as err:
        check_writable(tmp_path / target, kind)
    assert kind in str(err.value) and "\n" not in str(err.value)


def test_a_folder_nobody_may_write_is_refused():
    """/proc refuses new files even to root, where a chmod'ed folder would not."""
    with pytest.raises(OksposeError, match="cannot write the results file in /proc"):
        check_writable("/proc/okspose/results.json", "results file")


def test_a_write_that_fails_at_the_end_keeps_the_data(tmp_path):
    with pytest.raises(OksposeError, match="cannot write the results file") as err:
        save_json_or_keep([{"a": 1}], "/proc/okspose/results.json", "results file")
    kept = Path(str(err.value).rsplit("kept in ", 1)[1])
    try:
        assert json.loads(kept.read_text()) == [{"a": 1}]
    finally:
        kept.unlink()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    cfg = load_config(CONFIG, ["model.num_features=16"])
    return save_checkpoint({"model": build_model(cfg).state_dict()}, tmp_path_factory.mktemp("w") / "w.pth")


def _one_line(capsys, *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and all(w in err for w in words), err


@pytest.fixture
def no_work(monkeypatch):
    """Posing or a training step before the checks is a failure."""
    monkeypatch.setattr("okspose.inference.scoring.pose_val", lambda *a, **k: pytest.fail("posed first"))
    monkeypatch.setattr("okspose.engine.train.train_one_epoch", lambda *a, **k: pytest.fail("trained first"))


@pytest.mark.parametrize("out, words", [
    ("/proc/okspose/r.json", ("cannot write the results file in /proc",)),
    ("FOLDER", ("the results file is an existing folder",)),
])
def test_test_checks_its_outputs_before_posing(coco_mini, tiny_checkpoint, tmp_path, capsys, no_work, out, words):
    out = out.replace("FOLDER", str(tmp_path))
    assert main(["test", str(CONFIG), f"data.root={coco_mini}", "model.num_features=16", "--checkpoint",
                 str(tiny_checkpoint), "--out", out]) == 2
    _one_line(capsys, *words)
    (tmp_path / "file").write_text("x")
    assert main(["test", str(CONFIG), f"data.root={coco_mini}", "model.num_features=16", "--checkpoint",
                 str(tiny_checkpoint), "--out", str(tmp_path / "r.json"), "--vis", str(tmp_path / "file")]) == 2
    _one_line(capsys, "pictures folder is an existing file")


def test_test_checks_what_the_metric_needs_before_posing(coco_mini, tiny_checkpoint, tmp_path, capsys, no_work):
    """A ground truth without 'area' (PoseTrack18's files) needs test.metric_area=box: said before posing."""
    data = json.loads((coco_mini / "annotations/person_keypoints_val2017.json").read_text())
    for a in data["annotations"]:
        del a["area"]
    gt = tmp_path / "no_area.json"
    gt.write_text(json.dumps(data))
    assert main(["test", str(CONFIG), f"data.root={coco_mini}", f"data.val_ann={gt}", "model.num_features=16",
                 "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "r.json")]) == 2
    _one_line(capsys, "lacks 'area'", "test.metric_area=box")


def test_train_and_make_synthetic_check_their_folders(coco_mini, tmp_path, capsys, no_work):
    (tmp_path / "file").write_text("x")
    assert main(["train", str(CONFIG), f"data.root={coco_mini}", f"train.output_dir={tmp_path / 'file'}"]) == 2
    _one_line(capsys, "train.output_dir folder is an existing file")
    assert main(["make-synthetic", str(tmp_path / "file"), "--train", "1", "--val", "1"]) == 2
    _one_line(capsys, "output folder is an existing file")
    assert main(["make-synthetic", str(tmp_path / "file/sub"), "--train", "1", "--val", "1"]) == 2
    _one_line(capsys, "is a file, not a folder")
